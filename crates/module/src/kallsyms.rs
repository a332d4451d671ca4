//! Symbol positions as the kernel's kallsyms resolves them.
//!
//! The livepatch core finds `.klp.sym.<obj>.<name>,<sympos>` by walking kallsyms: for vmlinux
//! the symbols of that name in ascending address order, for a module its symbol table order.
//! `sympos` 0 means "the name must be unique". [`SymbolIndex`] reads a linked image (vmlinux
//! or a `.ko`) and answers which symbols exist under a name, in that order.

use std::collections::HashMap;

use crate::error::Result;
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
    /// Whether it is a weak symbol.
    pub weak: bool,
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
        let by_address = obj.header.e_type == object::elf::ET_EXEC.0;
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
                weak: s.bind() == object::elf::STB_WEAK.0,
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

/// The symbols of one translation unit in a linked image: a FILE symbol and the local
/// symbols that follow it.
#[derive(Debug, Clone)]
struct FileBlock {
    file: String,
    /// (name, address) of its local FUNC/OBJECT symbols.
    locals: Vec<(String, u64)>,
}

/// `sympos` from a linked image (vmlinux or a module), as `klpforge diff` needs it.
///
/// Locals are found through their translation unit: the image's FILE block with the same
/// file name whose functions include every function of the object being diffed (the way
/// kallsyms-based tools have always identified a unit). The position is then the rank, by
/// address (vmlinux) or symbol-table order (modules), among all symbols of that name.
#[derive(Debug, Clone)]
pub struct ImageSympos {
    index: SymbolIndex,
    blocks: Vec<FileBlock>,
    by_address: bool,
}

impl ImageSympos {
    /// The image's symbols by name, in kallsyms order.
    pub fn index(&self) -> &SymbolIndex {
        &self.index
    }

    /// Index a linked image.
    pub fn new(obj: &ElfObject<'_>) -> ImageSympos {
        let by_address = obj.header.e_type == object::elf::ET_EXEC.0;
        let mut blocks: Vec<FileBlock> = Vec::new();
        for (pos, (_, s)) in obj.symbols().enumerate() {
            if s.kind() == object::elf::STT_FILE.0 {
                blocks.push(FileBlock {
                    file: s.name_lossy().into_owned(),
                    locals: Vec::new(),
                });
                continue;
            }
            if !s.is_local() || !matches!(s.kind(), 1 | 2) || s.section().is_none() {
                continue;
            }
            if let Some(b) = blocks.last_mut() {
                let key = if by_address { s.value } else { pos as u64 };
                b.locals.push((s.name_lossy().into_owned(), key));
            }
        }
        ImageSympos {
            index: SymbolIndex::new(obj),
            blocks,
            by_address,
        }
    }
}

impl klpforge_diff::klp::SymposSource for ImageSympos {
    fn defines_global(&self, name: &str) -> bool {
        self.index.lookup(name).iter().any(|k| k.global)
    }

    fn global_binding(&self, name: &str) -> Option<klpforge_diff::klp::Binding> {
        let k = self.index.lookup(name).iter().find(|k| k.global)?;
        Some(if k.weak {
            klpforge_diff::klp::Binding::Weak
        } else {
            klpforge_diff::klp::Binding::Strong
        })
    }

    fn sympos(&self, name: &str, file: Option<&str>, scope: &[String]) -> Result<u64, String> {
        let all = self.index.lookup(name);
        let Some(file) = file else {
            // A global is the only global of its name, but statics of other units may share
            // it: kallsyms then needs its rank among all of them, like a local's.
            if all.len() <= 1 {
                return Ok(0);
            }
            let Some(at) = all.iter().position(|k| k.global) else {
                return Err(format!("no global symbol {name} in the image"));
            };
            return Ok(at as u64 + 1);
        };
        let matching: Vec<&FileBlock> = self
            .blocks
            .iter()
            .filter(|b| b.file == file)
            .filter(|b| scope.iter().all(|f| b.locals.iter().any(|(n, _)| n == f)))
            .collect();
        let block = match matching.len() {
            1 => matching[0],
            0 => {
                return Err(format!(
                    "no translation unit {file} in the image defines all of {}",
                    scope.join(", ")
                ))
            }
            n => {
                return Err(format!(
                    "{n} translation units named {file} in the image match; cannot tell which one holds {name}"
                ))
            }
        };
        let Some(&(_, key)) = block.locals.iter().find(|(n, _)| n == name) else {
            return Err(format!("{name} is not in the image's symbols of {file}"));
        };
        if all.len() <= 1 {
            return Ok(0);
        }
        let _ = self.by_address;
        Ok(all.iter().filter(|k| k.key < key).count() as u64 + 1)
    }
}
