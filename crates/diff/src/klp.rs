//! Livepatch relocations: which references must be resolved by the livepatch core at patch
//! time, the symbol names they use, and the intermediate encoding that survives `ld -r`.
//!
//! A reference from patched code to a symbol that exists in the running kernel but that the
//! module loader cannot resolve (a local symbol, an unexported global, an export of another
//! module) becomes a *klp relocation* against `.klp.sym.<objname>.<name>,<sympos>`. The module
//! linker would destroy the real livepatch format (`SHN_LIVEPATCH` symbols, `.klp.rela.*`
//! sections with `SHF_RELA_LIVEPATCH`), so the diff object carries each one in two parts that
//! `klpforge post-link` turns into the final form:
//!
//! * a *placeholder*: the original relocation, kept in place against the klp symbol, which is
//!   an undefined `STB_WEAK` symbol (so linkers and modpost accept it);
//! * a *record* in section [`KLP_RELOCS_SECTION`], 24 bytes per relocation:
//!   `u64 place` (an absolute relocation to the patched section's symbol plus the offset),
//!   `u64 symbol` (an absolute relocation to the klp symbol plus the original addend) and
//!   `u32 type` (the original relocation type), then 4 bytes of padding.
//!
//! post-link finds each record, deletes the placeholder at `place`, zeroes the bytes there,
//! and emits the relocation into `.klp.rela.<objname>.<section>`.
//!
//! The records of the `.klp_forge.*` metadata sections are typed here ([`RelocRecord`],
//! [`FuncRecord`], [`ObjectRecord`], [`StateRecord`]), for the differ that writes them and
//! the post-link and selection steps that read them back.

use klpforge_elf::{Endian, SymbolId};
use object::Endian as _;

/// The section holding klp relocation records ([`RelocRecord`]).
pub const KLP_RELOCS_SECTION: &str = ".klp_forge.relocs";
/// Size of one record.
pub const KLP_RELOC_RECORD_SIZE: usize = RelocRecord::SIZE;
/// The section holding one object record ([`ObjectRecord`]) per diff object: `name`, `funcs`,
/// `nr_funcs`, and the four callbacks (`pre_patch`, `post_patch`, `pre_unpatch`,
/// `post_unpatch`), each 8 bytes.
pub const KLP_OBJECTS_SECTION: &str = ".klp_forge.objects";
/// Size of one object record.
pub const KLP_OBJECT_RECORD_SIZE: usize = ObjectRecord::SIZE;
/// The section holding function records ([`FuncRecord`]): `old_name`, `new_func`, `sympos`,
/// each 8 bytes.
pub const KLP_FUNCS_SECTION: &str = ".klp_forge.funcs";
/// Size of one function record.
pub const KLP_FUNC_RECORD_SIZE: usize = FuncRecord::SIZE;
/// The section of the patch author's state declarations (`KLPFORGE_STATE` of `klpforge.h`), in
/// the patched object and, unchanged, in the diff object: records ([`StateRecord`]) of `u64 id`,
/// `u32 version` and `u32` zero. The module's init code hands them to the patch as its
/// `struct klp_state` array.
pub const KLP_STATES_SECTION: &str = ".klp_forge.states";
/// Size of one state record.
pub const KLP_STATE_RECORD_SIZE: usize = StateRecord::SIZE;
/// Functions the module's init code defines for the patch's own code (`klpforge.h`): references
/// to them stay undefined in a diff object, for the module link.
pub const MODULE_PROVIDED_SYMBOLS: &[&str] = &["klpforge_state"];
/// The string section of the metadata (object and function names).
pub const KLP_STRINGS_SECTION: &str = ".rodata.klp_forge.str1.1";

/// The maximum objname length the kernel accepts in a klp symbol name (`MODULE_NAME_LEN - 1`).
pub const MAX_OBJNAME: usize = 55;
/// The maximum symbol-name length in a klp symbol name (`KSYM_NAME_LEN - 1`).
pub const MAX_SYMNAME: usize = 511;

/// Where `sympos` values come from when the diff is not the last word: the linked image of
/// the patched object (vmlinux or the module), whose kallsyms order the kernel uses.
pub trait SymposSource: Send + Sync + std::fmt::Debug {
    /// The position of `name` among the image's symbols of that name (0 when unique). For a
    /// local symbol, `file` is its FILE symbol's name and `scope` the names of the functions
    /// defined in that translation unit, which identify it in the image.
    fn sympos(&self, name: &str, file: Option<&str>, scope: &[String]) -> Result<u64, String>;

    /// Whether the image defines a global symbol `name` (so a new reference to it from
    /// patched code can be resolved by the livepatch core even if the original object never
    /// referred to it).
    fn defines_global(&self, name: &str) -> bool {
        let _ = name;
        false
    }

    /// How the image binds the global `name`: whether the definition that won the link is
    /// weak or strong. `None` when the image has no such global (or the source cannot tell).
    fn global_binding(&self, name: &str) -> Option<Binding> {
        let _ = name;
        None
    }
}

/// The binding of a global definition in a linked image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `STB_WEAK`: a `__weak` default that nothing overrode.
    Weak,
    /// `STB_GLOBAL`: a strong definition.
    Strong,
}

/// The name of a klp symbol, checked against what the kernel's parser accepts.
pub fn klp_symbol_name(objname: &str, name: &str, sympos: u64) -> Result<String, String> {
    if objname.is_empty() || objname.len() > MAX_OBJNAME || objname.contains('.') {
        return Err(format!(
            "object name '{objname}' cannot be used in a klp symbol (1 to {MAX_OBJNAME} characters, no '.')"
        ));
    }
    if name.is_empty() || name.len() > MAX_SYMNAME || name.contains(',') {
        return Err(format!(
            "symbol name '{name}' cannot be used in a klp symbol (1 to {MAX_SYMNAME} characters, no ',')"
        ));
    }
    Ok(format!(".klp.sym.{objname}.{name},{sympos}"))
}

/// Split a klp symbol name into `(objname, name, sympos)`, as the kernel parses it.
pub fn parse_klp_symbol_name(full: &str) -> Option<(&str, &str, u64)> {
    let rest = full.strip_prefix(".klp.sym.")?;
    let (objname, rest) = rest.split_once('.')?;
    let (name, pos) = rest.rsplit_once(',')?;
    if objname.is_empty()
        || objname.len() > MAX_OBJNAME
        || name.is_empty()
        || name.len() > MAX_SYMNAME
    {
        return None;
    }
    Some((objname, name, pos.parse().ok()?))
}

/// How a linked image tells a symbol of the original object from same-named symbols of other
/// translation units (what [`SymposSource::sympos`] takes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageScope {
    /// The name of the local symbol's FILE symbol; `None` for a global.
    pub file: Option<String>,
    /// The functions its translation unit defines (allocated, outside `.discard*`), in table
    /// order; empty for a global.
    pub functions: Vec<String>,
}

/// `sympos` of `sym` among `candidates` ([`crate::sympos::sympos_candidates`]): its 1-based rank, 0 when the
/// name is unique (or `sym` is not among them).
pub fn object_sympos(candidates: &[SymbolId], sym: SymbolId) -> u64 {
    if candidates.len() <= 1 {
        return 0;
    }
    candidates
        .iter()
        .position(|&x| x == sym)
        .map_or(0, |i| i as u64 + 1)
}

/// One record of [`KLP_RELOCS_SECTION`]: `u64 place`, `u64 symbol`, `u32 type`, 4 bytes of
/// padding. The two pointers are zero bytes under absolute relocations (`place`: to the
/// patched section's symbol plus the offset; `symbol`: to the klp symbol plus the original
/// addend), so only the relocation type is stored in the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelocRecord {
    /// The original relocation type.
    pub r_type: u32,
}

impl RelocRecord {
    /// Size of one record.
    pub const SIZE: usize = 24;
    /// Offset of the `place` pointer (its relocation says where the klp relocation applies).
    pub const PLACE: u64 = 0;
    /// Offset of the `symbol` pointer (its relocation names the klp symbol and the addend).
    pub const SYMBOL: u64 = 8;
    /// Offset of the relocation type.
    const TYPE: usize = 16;

    /// The record's bytes in byte order `endian`.
    pub fn encode(&self, endian: Endian) -> [u8; Self::SIZE] {
        record(&[(Self::TYPE, &endian.to_object().write_u32(self.r_type))])
    }

    /// Read a record from the first [`Self::SIZE`] bytes of `bytes`; `None` if there are fewer.
    pub fn decode(bytes: &[u8], endian: Endian) -> Option<Self> {
        let b = bytes.get(..Self::SIZE)?;
        Some(RelocRecord {
            r_type: endian.to_object().read_u32(field(b, Self::TYPE)),
        })
    }
}

/// One record of [`KLP_FUNCS_SECTION`] (`struct klpforge_func` of the init code): `old_name`,
/// `new_func` and `sympos`, 8 bytes each. The two pointers are zero bytes under absolute
/// relocations (to the original's name in [`KLP_STRINGS_SECTION`], to the new function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuncRecord {
    /// The original function's `sympos`.
    pub sympos: u64,
}

impl FuncRecord {
    /// Size of one record.
    pub const SIZE: usize = 24;
    /// Offset of the `old_name` pointer.
    pub const OLD_NAME: u64 = 0;
    /// Offset of the `new_func` pointer.
    pub const NEW_FUNC: u64 = 8;
    /// Offset of `sympos`.
    const SYMPOS: usize = 16;

    /// The record's bytes in byte order `endian`.
    pub fn encode(&self, endian: Endian) -> [u8; Self::SIZE] {
        record(&[(Self::SYMPOS, &endian.to_object().write_u64(self.sympos))])
    }
}

/// One record of [`KLP_OBJECTS_SECTION`] (`struct klpforge_object` of the init code): `name`,
/// `funcs`, `nr_funcs` and four callbacks, 8 bytes each. The pointers are zero bytes under
/// absolute relocations (to the object name in [`KLP_STRINGS_SECTION`], to the first function
/// record, to each callback the patch defines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectRecord {
    /// How many function records follow `funcs`.
    pub nr_funcs: u64,
}

impl ObjectRecord {
    /// Size of one record.
    pub const SIZE: usize = 56;
    /// Offset of the `name` pointer.
    pub const NAME: u64 = 0;
    /// Offset of the `funcs` pointer.
    pub const FUNCS: u64 = 8;
    /// Offset of `nr_funcs`.
    const NR_FUNCS: usize = 16;
    /// Offset of the first callback pointer.
    const CALLBACKS: u64 = 24;

    /// Offset of the pointer to callback `slot` (0 to 3: `pre_patch`, `post_patch`,
    /// `pre_unpatch`, `post_unpatch`).
    pub fn callback(slot: u64) -> u64 {
        Self::CALLBACKS + 8 * slot
    }

    /// The record's bytes in byte order `endian`.
    pub fn encode(&self, endian: Endian) -> [u8; Self::SIZE] {
        record(&[(Self::NR_FUNCS, &endian.to_object().write_u64(self.nr_funcs))])
    }
}

/// One record of [`KLP_STATES_SECTION`]: `u64 id`, `u32 version`, `u32` zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateRecord {
    /// The state's id.
    pub id: u64,
    /// Its version.
    pub version: u32,
}

impl StateRecord {
    /// Size of one record.
    pub const SIZE: usize = 16;
    const ID: usize = 0;
    const VERSION: usize = 8;

    /// The record's bytes in byte order `endian`.
    pub fn encode(&self, endian: Endian) -> [u8; Self::SIZE] {
        let e = endian.to_object();
        record(&[
            (Self::ID, &e.write_u64(self.id)),
            (Self::VERSION, &e.write_u32(self.version)),
        ])
    }

    /// Read a record from the first [`Self::SIZE`] bytes of `bytes`; `None` if there are fewer.
    pub fn decode(bytes: &[u8], endian: Endian) -> Option<Self> {
        let b = bytes.get(..Self::SIZE)?;
        let e = endian.to_object();
        Some(StateRecord {
            id: e.read_u64(field(b, Self::ID)),
            version: e.read_u32(field(b, Self::VERSION)),
        })
    }
}

/// A record of `N` bytes, zero but for `fields` (offset, bytes).
fn record<const N: usize>(fields: &[(usize, &[u8])]) -> [u8; N] {
    let mut b = [0; N];
    for &(at, value) in fields {
        b[at..at + value.len()].copy_from_slice(value);
    }
    b
}

/// The `N` bytes at `at` of a record (checked by the caller to be long enough).
fn field<const N: usize>(record: &[u8], at: usize) -> [u8; N] {
    record[at..at + N]
        .try_into()
        .expect("record holds the field")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_both_byte_orders() {
        for endian in [Endian::Little, Endian::Big] {
            let r = RelocRecord { r_type: 0x1234 };
            let b = r.encode(endian);
            assert_eq!(b[..16], [0; 16]);
            assert_eq!(RelocRecord::decode(&b, endian), Some(r));
            assert_eq!(RelocRecord::decode(&b[..23], endian), None);
            let s = StateRecord {
                id: 0x0102_0304_0506_0708,
                version: 9,
            };
            assert_eq!(StateRecord::decode(&s.encode(endian), endian), Some(s));
        }
        assert_eq!(
            RelocRecord { r_type: 2 }.encode(Endian::Little)[16..],
            [2, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            FuncRecord { sympos: 1 }.encode(Endian::Big)[16..],
            [0, 0, 0, 0, 0, 0, 0, 1]
        );
        let o = ObjectRecord { nr_funcs: 3 }.encode(Endian::Little);
        assert_eq!((o[16], o.len()), (3, 56));
        assert_eq!(ObjectRecord::callback(3), 48);
    }

    #[test]
    fn names_round_trip_and_limits_hold() {
        let n = klp_symbol_name("vmlinux", "count.3", 2).unwrap();
        assert_eq!(n, ".klp.sym.vmlinux.count.3,2");
        assert_eq!(parse_klp_symbol_name(&n), Some(("vmlinux", "count.3", 2)));
        assert!(klp_symbol_name("a.b", "x", 0).is_err());
        assert!(klp_symbol_name("vmlinux", "a,b", 0).is_err());
        assert!(klp_symbol_name(&"m".repeat(56), "x", 0).is_err());
        assert!(parse_klp_symbol_name(".klp.sym.vmlinux.foo").is_none());
        assert!(parse_klp_symbol_name(".klp.sym.vmlinux.foo,x").is_none());
    }
}
