//! The patch metadata of the diff object, for the module step: the klp relocation records
//! (`.klp_forge.relocs`), the object and function records (`.klp_forge.objects`,
//! `.klp_forge.funcs`, names in `.rodata.klp_forge.str1.1`), the author's state declarations
//! (`.klp_forge.states`), and what the module keeps of the patched object (`import_ns=`
//! entries of `.modinfo`, the `.note.GNU-stack` marking). The record formats are
//! [`crate::klp`]'s.

use std::collections::BTreeSet;

use klpforge_elf::{Relocation, Section, SectionId, SymbolId};
use object::elf;

use super::Cloner;
use crate::klp::{
    FuncRecord, ObjectRecord, RelocRecord, StateRecord, KLP_FUNCS_SECTION, KLP_OBJECTS_SECTION,
    KLP_RELOCS_SECTION, KLP_STATES_SECTION, KLP_STRINGS_SECTION,
};
use crate::select::Selection;

/// A klp relocation of the output, to be recorded in `.klp_forge.relocs`.
#[derive(Debug, Clone, Copy)]
pub(super) struct KlpRecord {
    /// The output section it applies to.
    pub(super) section: SectionId,
    /// Where in it.
    pub(super) offset: u64,
    /// The klp symbol.
    pub(super) symbol: SymbolId,
    /// The addend.
    pub(super) addend: i64,
    /// The relocation type.
    pub(super) r_type: u32,
}

impl Cloner<'_, '_, '_, '_, '_> {
    /// Write the metadata sections (after cloning, before the section contents are stored).
    pub(super) fn write_metadata(&mut self, sel: &Selection) {
        let endian = self.p.obj.header.endian;
        self.write_klp_records();
        // One object record, one function record per changed function.
        let strings = self.new_data_section(
            KLP_STRINGS_SECTION,
            elf::SHF_ALLOC.0 | elf::SHF_MERGE.0 | elf::SHF_STRINGS.0,
            1,
            1,
        );
        let funcs = self.new_data_section(
            KLP_FUNCS_SECTION,
            elf::SHF_ALLOC.0,
            8,
            FuncRecord::SIZE as u64,
        );
        let str_sym = self.section_symbol(strings);
        let funcs_sym = self.section_symbol(funcs);
        let mut nr_funcs = 0u64;
        for &(p, o) in &sel.changed {
            let Some(&c) = self.clone_of.get(&p) else {
                continue;
            };
            let old = self.o.sym(o).name;
            let sympos = self.sympos(o);
            let name_at = self.append_cstr(strings, old);
            let base = self.append_record(funcs, &FuncRecord { sympos }.encode(endian));
            self.abs_reloc(funcs, base + FuncRecord::OLD_NAME, str_sym, name_at as i64);
            self.abs_reloc(funcs, base + FuncRecord::NEW_FUNC, c, 0);
            nr_funcs += 1;
        }
        let objects = self.new_data_section(
            KLP_OBJECTS_SECTION,
            elf::SHF_ALLOC.0,
            8,
            ObjectRecord::SIZE as u64,
        );
        let name_at = self.append_cstr(strings, &self.opts.objname);
        let base = self.append_record(objects, &ObjectRecord { nr_funcs }.encode(endian));
        self.abs_reloc(objects, base + ObjectRecord::NAME, str_sym, name_at as i64);
        self.abs_reloc(objects, base + ObjectRecord::FUNCS, funcs_sym, 0);
        for &(kind, f) in &sel.callbacks {
            let Some(&c) = self.clone_of.get(&f) else {
                continue;
            };
            let slot = crate::CallbackKind::ALL
                .iter()
                .position(|&k| k == kind)
                .unwrap_or(0) as u64;
            self.abs_reloc(objects, base + ObjectRecord::callback(slot), c, 0);
        }
        // The author's state declarations, as they were.
        if !sel.states.is_empty() {
            let states = self.new_data_section(
                KLP_STATES_SECTION,
                elf::SHF_ALLOC.0,
                8,
                StateRecord::SIZE as u64,
            );
            for state in &sel.states {
                let record = StateRecord {
                    id: state.id,
                    version: state.version,
                };
                self.append_record(states, &record.encode(endian));
            }
        }
        self.import_namespaces();
        // Keep the object's stack marking (ld warns about an executable stack without it).
        if let Some(note) = self.p.section_named(b".note.GNU-stack") {
            let flags = self.p.obj.section(note).sh_flags;
            self.out.add_section(Section::progbits(
                &b".note.GNU-stack"[..],
                flags,
                1,
                0,
                Vec::new(),
            ));
        }
    }

    /// One `.klp_forge.relocs` record per klp relocation made, if there are any.
    fn write_klp_records(&mut self) {
        if self.klp_records.is_empty() {
            return;
        }
        let endian = self.p.obj.header.endian;
        let sec = self.new_data_section(
            KLP_RELOCS_SECTION,
            elf::SHF_ALLOC.0,
            8,
            RelocRecord::SIZE as u64,
        );
        for k in std::mem::take(&mut self.klp_records) {
            let record = RelocRecord { r_type: k.r_type };
            let base = self.append_record(sec, &record.encode(endian));
            let place = self.section_symbol(k.section);
            self.abs_reloc(sec, base + RelocRecord::PLACE, place, k.offset as i64);
            self.abs_reloc(sec, base + RelocRecord::SYMBOL, k.symbol, k.addend);
        }
    }

    /// Append a record (8-byte aligned) to metadata section `sec`; its offset there.
    fn append_record(&mut self, sec: SectionId, record: &[u8]) -> u64 {
        self.append(sec, Some(record), record.len() as u64, 8)
    }

    /// Append `s` and a NUL to string section `sec`; its offset there.
    fn append_cstr(&mut self, sec: SectionId, s: &str) -> u64 {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.append(sec, Some(&b), b.len() as u64, 1)
    }

    /// An absolute 64-bit relocation at `offset` of metadata section `sec`, to `symbol` plus
    /// `addend`.
    fn abs_reloc(&mut self, sec: SectionId, offset: u64, symbol: SymbolId, addend: i64) {
        let r_type = self.p.arch.abs64_reloc();
        self.push_reloc(
            sec,
            Relocation {
                offset,
                symbol: Some(symbol),
                r_type,
                addend,
            },
        );
    }

    /// Copy `import_ns=` entries of the patched `.modinfo`.
    fn import_namespaces(&mut self) {
        let Some(mi) = self.p.section_named(b".modinfo") else {
            return;
        };
        let sec = self.p.obj.section(mi);
        let mut data = Vec::new();
        let mut seen = BTreeSet::new();
        for entry in sec.bytes().split(|&b| b == 0) {
            // Built-in objects prefix their entries with the module name (`proc.import_ns=`).
            let text = String::from_utf8_lossy(entry);
            let Some(pos) = text.find("import_ns=") else {
                continue;
            };
            if pos > 0 && !text[..pos].ends_with('.') {
                continue;
            }
            let value = text[pos..].to_string();
            if seen.insert(value.clone()) {
                data.extend_from_slice(value.as_bytes());
                data.push(0);
            }
        }
        if data.is_empty() {
            return;
        }
        self.out.add_section(Section::progbits(
            &b".modinfo"[..],
            sec.sh_flags,
            1,
            0,
            data,
        ));
    }
}
