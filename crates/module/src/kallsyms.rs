//! Symbol positions as the kernel's kallsyms resolves them.
//!
//! The livepatch core finds `.klp.sym.<obj>.<name>,<sympos>` by walking kallsyms: for vmlinux
//! the symbols of that name in ascending address order, for a module its symbol table order.
//! `sympos` 0 means "the name must be unique". [`SymbolIndex`] reads a linked image (vmlinux
//! or a `.ko`) and answers which symbols exist under a name, in that order.

use std::collections::HashMap;

use klpforge_elf::{ElfObject, SymbolPlace};

/// One kallsyms-visible symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KSym {
    /// Address (vmlinux) or symbol-table position (modules).
    pub key: u64,
    /// `STT_*` type.
    pub kind: u8,
    /// Whether it is a global (or weak) symbol.
    pub global: bool,
    /// Name of its section.
    pub section: String,
}

/// The kallsyms view of one linked image.
#[derive(Debug, Clone, Default)]
pub struct SymbolIndex {
    by_name: HashMap<String, Vec<KSym>>,
}

impl SymbolIndex {
    /// Index a linked image. For `ET_EXEC` images (vmlinux) symbols are ordered by address,
    /// otherwise (modules) by their position in the symbol table.
    pub fn new(obj: &ElfObject<'_>) -> SymbolIndex {
        let by_address = obj.header.e_type == 2;
        let mut by_name: HashMap<String, Vec<KSym>> = HashMap::new();
        for (pos, (_, s)) in obj.symbols().enumerate() {
            let SymbolPlace::Section(sec) = s.place else {
                continue;
            };
            if matches!(s.kind(), 3 | 4) {
                continue; // section and file symbols
            }
            let section = obj.section(sec);
            if !section.is_alloc() {
                continue;
            }
            let name = s.name_lossy();
            if name.is_empty() || name.starts_with(".L") || name.starts_with('$') {
                continue;
            }
            by_name.entry(name.into_owned()).or_default().push(KSym {
                key: if by_address { s.value } else { pos as u64 },
                kind: s.kind(),
                global: !s.is_local(),
                section: section.name_lossy().into_owned(),
            });
        }
        for list in by_name.values_mut() {
            list.sort_by_key(|k| k.key);
        }
        SymbolIndex { by_name }
    }

    /// The names exported by the image: those with a `__ksymtab_<name>` entry.
    pub fn exported_names(&self) -> Vec<String> {
        self.by_name
            .keys()
            .filter_map(|k| k.strip_prefix("__ksymtab_"))
            .map(str::to_string)
            .collect()
    }

    /// The symbols named `name`, in kallsyms order.
    pub fn lookup(&self, name: &str) -> &[KSym] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }
}
