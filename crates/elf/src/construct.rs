//! Constructors for the sections and symbols tools add to an object: data sections,
//! relocation sections, undefined symbols, section and file symbols.

use std::borrow::Cow;

use object::elf;

use crate::model::{Info, Link, Relocation, Section, SectionData, SectionId, Symbol, SymbolPlace};

/// `st_info` of binding `bind` (`STB_*`) and type `kind` (`STT_*`).
pub const fn st_info(bind: u8, kind: u8) -> u8 {
    (bind << 4) | (kind & 0xf)
}

impl<'data> Section<'data> {
    /// A new section holding `bytes`, with no link or info.
    pub fn new_bytes(
        name: impl Into<Cow<'data, [u8]>>,
        sh_type: u32,
        sh_flags: u64,
        sh_addralign: u64,
        bytes: impl Into<Cow<'data, [u8]>>,
    ) -> Self {
        Section {
            name: name.into(),
            sh_type,
            sh_flags,
            sh_addr: 0,
            sh_addralign,
            sh_entsize: 0,
            link: Link::None,
            info: Info::None,
            data: SectionData::Bytes(bytes.into()),
        }
    }

    /// A new `SHT_PROGBITS` section holding `bytes`, with no link or info.
    pub fn progbits(
        name: impl Into<Cow<'data, [u8]>>,
        sh_flags: u64,
        sh_addralign: u64,
        sh_entsize: u64,
        bytes: impl Into<Cow<'data, [u8]>>,
    ) -> Self {
        Section {
            sh_entsize,
            ..Section::new_bytes(name, elf::SHT_PROGBITS.0, sh_flags, sh_addralign, bytes)
        }
    }

    /// A new `SHT_RELA` section of `entries` applying to `target` (`sh_info`: the flags
    /// should include `SHF_INFO_LINK`), its symbols in the table `link` names; 8-byte
    /// aligned, 24-byte entries.
    pub fn rela(
        name: impl Into<Cow<'data, [u8]>>,
        sh_flags: u64,
        link: Link,
        target: SectionId,
        entries: Vec<Relocation>,
    ) -> Self {
        Section {
            sh_entsize: 24,
            link,
            info: Info::Section(target),
            data: SectionData::Relocations {
                rela: true,
                entries: Cow::Owned(entries),
            },
            ..Section::new_bytes(name, elf::SHT_RELA.0, sh_flags, 8, Vec::<u8>::new())
        }
    }
}

impl<'data> Symbol<'data> {
    /// A symbol of `st_info` defined at `place` with value and size 0 and default visibility.
    pub fn at(name: impl Into<Cow<'data, [u8]>>, st_info: u8, place: SymbolPlace) -> Self {
        Symbol {
            name: name.into(),
            st_info,
            st_other: 0,
            place,
            value: 0,
            size: 0,
        }
    }

    /// An undefined symbol (`SHN_UNDEF`) of binding `bind` and type `kind`.
    pub fn undefined(name: impl Into<Cow<'data, [u8]>>, bind: u8, kind: u8) -> Self {
        Symbol::at(name, st_info(bind, kind), SymbolPlace::Undefined)
    }

    /// The section symbol (`STB_LOCAL`, `STT_SECTION`, unnamed) of `section`.
    pub fn section_symbol(section: SectionId) -> Self {
        let info = st_info(elf::STB_LOCAL.0, elf::STT_SECTION.0);
        Symbol::at(&b""[..], info, SymbolPlace::Section(section))
    }

    /// A `STT_FILE` symbol (`STB_LOCAL`, `SHN_ABS`) naming a source file.
    pub fn file(name: impl Into<Cow<'data, [u8]>>) -> Self {
        let info = st_info(elf::STB_LOCAL.0, elf::STT_FILE.0);
        Symbol::at(name, info, SymbolPlace::Absolute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_the_elf_fields() {
        let u = Symbol::undefined(&b"f"[..], elf::STB_WEAK.0, elf::STT_FUNC.0);
        assert_eq!(
            (u.bind(), u.kind(), u.place),
            (2, 2, SymbolPlace::Undefined)
        );
        let f = Symbol::file(&b"a.c"[..]);
        assert!(f.is_local() && f.kind() == elf::STT_FILE.0);
        let s = Section::progbits(&b".x"[..], 2, 8, 24, vec![0u8; 24]);
        assert_eq!((s.sh_type, s.sh_entsize, s.size()), (1, 24, 24));
    }
}
