//! How each reference of copied code or data is handled ([`Decision`]), and the symbols the
//! resulting relocations use: clones, undefined symbols for the module loader, and the
//! `.klp.sym.*` symbols of klp relocations with their `sympos`.

use klpforge_elf::{Relocation, SectionId, Symbol, SymbolId, SymbolPlace};
use object::elf;

use super::metadata::KlpRecord;
use super::{Cloner, KlpReloc};
use crate::analyze::{Reloc, SecKind, SymKind};
use crate::klp::{self, klp_symbol_name, ImageScope, SymposSource};
use crate::refs::Target;
use crate::refusal::refusal;

/// How one reference is handled.
pub(super) enum Decision {
    /// Clone the patched symbol into the output and refer to the clone.
    Include,
    /// Refer to an undefined symbol of this name (resolved by the module loader).
    Undefined(String),
    /// A klp relocation to a symbol of the running kernel.
    Klp(KlpTarget),
}

/// The symbol of the running kernel a klp relocation refers to.
pub(super) struct KlpTarget {
    /// The object that defines it: `vmlinux` or a module name.
    pub(super) objname: String,
    /// Its name there (the original's).
    pub(super) name: String,
    /// Its position among same-named symbols (0 when unique).
    pub(super) sympos: u64,
    /// `STT_*` type of the klp symbol.
    pub(super) sym_type: u8,
}

/// The `STT_*` type of a klp symbol for a symbol of kind `kind`.
fn sym_type(kind: SymKind) -> u8 {
    match kind {
        SymKind::Function => elf::STT_FUNC.0,
        SymKind::Object => elf::STT_OBJECT.0,
        _ => elf::STT_NOTYPE.0,
    }
}

impl Cloner<'_, '_, '_, '_, '_> {
    /// How the reference `r` of patched section `psec` to patched symbol `psym` is handled.
    pub(super) fn decide(&mut self, psec: SectionId, r: &Reloc, psym: SymbolId) -> Decision {
        let p = self.p;
        let s = p.obj.symbol(psym);
        let si = p.sym(psym);
        let objname = self.opts.objname.clone();
        if self.clone_of.contains_key(&psym) || self.changed.contains(&psym) {
            // A function pointer (not a call, not a code location in a special section, and
            // to the function's start) keeps pointing at the original, so pointers stored
            // in kernel data stay valid after the patch module is unloaded.
            let code_location = matches!(
                p.sec(psec).kind,
                SecKind::Special | SecKind::SpecialAux | SecKind::Marker | SecKind::Debug
            );
            let at_start = matches!(r.target, Target::Symbol { offset: 0, .. });
            if si.kind == SymKind::Function
                && self.changed.contains(&psym)
                && !code_location
                && at_start
                && !p.is_branch(psec, r.offset(), r.r_type)
            {
                if let Some(o) = self.twins.of_patched(psym) {
                    return Decision::Klp(KlpTarget {
                        objname,
                        name: self.o.sym(o).name.to_string(),
                        sympos: self.sympos(o),
                        sym_type: elf::STT_FUNC.0,
                    });
                }
            }
            return Decision::Include;
        }
        if s.place == SymbolPlace::Undefined {
            let name = si.name.to_string();
            // The module links its own copy (ppc64's register save/restore helpers).
            if self.p.arch.linked_into_every_module(&name) {
                return Decision::Undefined(name);
            }
            return match self.opts.symvers.lookup(&name) {
                Some(e) if e.owner == "vmlinux" => Decision::Undefined(name),
                Some(e) => Decision::Klp(KlpTarget {
                    objname: e.owner,
                    name,
                    sympos: 0,
                    sym_type: sym_type(si.kind),
                }),
                None => {
                    let existed = self
                        .o
                        .named(&name)
                        .iter()
                        .any(|&x| self.o.obj.symbol(x).place == SymbolPlace::Undefined);
                    let in_image = self
                        .opts
                        .sympos
                        .as_ref()
                        .is_some_and(|img| img.defines_global(&name));
                    if existed || in_image {
                        let sympos = self.global_sympos(&name);
                        Decision::Klp(KlpTarget {
                            objname,
                            name,
                            sympos,
                            sym_type: sym_type(si.kind),
                        })
                    } else if klp::MODULE_PROVIDED_SYMBOLS.contains(&name.as_str()) {
                        Decision::Undefined(name)
                    } else {
                        self.warnings.push(format!(
                            "new reference to {name}, which is not exported: assumed to be defined by another object of the patch module"
                        ));
                        Decision::Undefined(name)
                    }
                }
            };
        }
        // A global label of assembly code (`SYM_CODE_START`: no type, like
        // `__x86_return_thunk`) that the running kernel has: referred to by name, never
        // copied into the module.
        if si.kind == SymKind::Other && !s.is_local() && s.section().is_some() {
            let name = si.name.to_string();
            let in_orig = self.o.named(&name).iter().any(|&x| {
                let xs = self.o.obj.symbol(x);
                !xs.is_local() && xs.section().is_some()
            });
            if in_orig {
                // Exported (known from a real Module.symvers): the module loader resolves it;
                // otherwise the livepatch core does.
                let exported = self.opts.symvers.is_real()
                    && self
                        .opts
                        .symvers
                        .lookup(&name)
                        .is_some_and(|e| e.owner == "vmlinux");
                if exported {
                    return Decision::Undefined(name);
                }
                let sympos = self.global_sympos(&name);
                return Decision::Klp(KlpTarget {
                    objname,
                    name,
                    sympos,
                    sym_type: elf::STT_NOTYPE.0,
                });
            }
        }
        if si.never_correlate
            || !matches!(si.kind, SymKind::Function | SymKind::Object)
            || self.fresh.contains(&psym)
        {
            return Decision::Include;
        }
        let Some(o) = self.twins.of_patched(psym) else {
            return Decision::Include;
        };
        // Called somewhere as a function of the unit ([`unit_local_callees`]): the module
        // carries its own copy, which every reference then uses.
        if self.unit_local.contains(&psym) {
            return Decision::Include;
        }
        let oname = self.o.sym(o).name.to_string();
        if !s.is_local() && objname == "vmlinux" {
            if let Some(e) = self.opts.symvers.lookup(&oname) {
                if e.owner == "vmlinux" && self.opts.symvers.is_real() {
                    return Decision::Undefined(oname);
                }
            }
        }
        Decision::Klp(KlpTarget {
            objname,
            name: oname,
            sympos: self.sympos(o),
            sym_type: sym_type(si.kind),
        })
    }

    /// sympos of an original symbol: from the image when a source is given, else 1-based
    /// among same-named defined symbols of the original object, 0 if unique.
    pub(super) fn sympos(&mut self, osym: SymbolId) -> u64 {
        let o = self.o;
        let name = o.sym(osym).name.to_string();
        if let Some(source) = self.opts.sympos.as_deref() {
            return self.image_sympos(source, &name, &crate::sympos::image_scope(o, osym));
        }
        let candidates = self
            .sympos_cache
            .entry(name)
            .or_insert_with_key(|name| crate::sympos::sympos_candidates(o, name));
        klp::object_sympos(candidates, osym)
    }

    /// sympos of a global the original object only refers to: its rank among the image's
    /// symbols of that name (statics of other units may share it), 0 without an image.
    fn global_sympos(&mut self, name: &str) -> u64 {
        match self.opts.sympos.as_deref() {
            Some(source) => self.image_sympos(source, name, &ImageScope::default()),
            None => 0,
        }
    }

    /// sympos of `name` in the image `source`; 0, and a refusal, if the image cannot place it.
    fn image_sympos(&mut self, source: &dyn SymposSource, name: &str, scope: &ImageScope) -> u64 {
        match source.sympos(name, scope.file.as_deref(), &scope.functions) {
            Ok(pos) => pos,
            Err(e) => {
                self.refusals.push(refusal(
                    name,
                    format!("cannot find its position in the patched image: {e}"),
                    "give the vmlinux (or module) built from exactly this source and configuration",
                ));
                0
            }
        }
    }

    /// The undefined output symbol `name` (made once), bound like patched symbol `like`
    /// (weak if it is, else global) and of its type.
    pub(super) fn undefined_symbol(&mut self, name: &str, like: SymbolId) -> SymbolId {
        if let Some(&id) = self.undef.get(name) {
            return id;
        }
        let s = self.p.obj.symbol(like);
        let bind = if s.bind() == elf::STB_WEAK.0 {
            elf::STB_WEAK.0
        } else {
            elf::STB_GLOBAL.0
        };
        let id = self
            .out
            .add_symbol(Symbol::undefined(name.as_bytes().to_vec(), bind, s.kind()));
        self.undef.insert(name.to_string(), id);
        id
    }

    /// Make `reloc` (its offset, type and addend; no symbol yet) of output section `out` a
    /// klp relocation to `target`: a placeholder against the klp symbol, an undefined
    /// `STB_WEAK` symbol made once, plus a record for `.klp_forge.relocs` and the report.
    /// A name the kernel could not parse refuses the symbol instead.
    pub(super) fn klp_reference(&mut self, target: KlpTarget, reloc: Relocation, out: SectionId) {
        let full = match klp_symbol_name(&target.objname, &target.name, target.sympos) {
            Ok(n) => n,
            Err(e) => {
                self.refusals
                    .push(refusal(&target.name, e, "rename the symbol or the module"));
                return;
            }
        };
        let symbol = match self.klp_syms.get(&full) {
            Some(&k) => k,
            None => {
                let k = self.out.add_symbol(Symbol::undefined(
                    full.clone().into_bytes(),
                    elf::STB_WEAK.0,
                    target.sym_type,
                ));
                self.klp_syms.insert(full.clone(), k);
                k
            }
        };
        self.push_reloc(
            out,
            Relocation {
                symbol: Some(symbol),
                ..reloc
            },
        );
        self.klp_records.push(KlpRecord {
            section: out,
            offset: reloc.offset,
            symbol,
            addend: reloc.addend,
            r_type: reloc.r_type,
        });
        self.klp_report.push(KlpReloc {
            section: self.out.section(out).name_lossy().into_owned(),
            offset: reloc.offset,
            r#type: self.p.arch.reloc_name(reloc.r_type).into_owned(),
            symbol: full,
            addend: reloc.addend,
        });
    }
}

/// The unchanged functions the module must carry because code it carries calls them as
/// functions of the same unit, which cannot reach the kernel's copy from a module
/// ([`klpforge_arch::Arch::call_can_leave_module`]: ppc64le's `bl` without the TOC-restoring
/// `nop`), transitively from `roots` (the changed and new functions). Computed before cloning,
/// so every reference to such a function (a sibling call too) goes to the module's copy
/// whatever order the references are met in.
pub(super) fn unit_local_callees(
    p: &crate::analyze::ObjInfo<'_, '_>,
    twins: &crate::correlate::Twins,
    roots: &[SymbolId],
) -> std::collections::BTreeSet<SymbolId> {
    let mut found = std::collections::BTreeSet::new();
    let mut work: Vec<SymbolId> = roots.to_vec();
    while let Some(f) = work.pop() {
        let mut parts = vec![f];
        parts.extend(p.children(f).iter().copied());
        for part in parts {
            let s = p.obj.symbol(part);
            let Some(sec) = s.section() else { continue };
            let bytes = p.obj.section(sec).bytes();
            for r in p.relocations_in(sec, s.value, s.value.saturating_add(s.size)) {
                let Target::Symbol { sym, .. } = r.target else {
                    continue;
                };
                let callee = p.obj.symbol(sym);
                if p.sym(sym).kind != SymKind::Function
                    || callee.section().is_none()
                    || roots.contains(&sym)
                    || twins.of_patched(sym).is_none()
                    || found.contains(&sym)
                    || !p.is_branch(sec, r.offset(), r.r_type)
                    || p.arch
                        .call_can_leave_module(bytes, r.offset() as usize, r.r_type)
                {
                    continue;
                }
                found.insert(sym);
                work.push(sym);
            }
        }
    }
    found
}
