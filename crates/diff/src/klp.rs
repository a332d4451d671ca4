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

/// The section holding klp relocation records.
pub const KLP_RELOCS_SECTION: &str = ".klp_forge.relocs";
/// Size of one record.
pub const KLP_RELOC_RECORD_SIZE: usize = 24;
/// The section holding one object record per diff object: `name`, `funcs`, `nr_funcs`, and the
/// four callbacks (`pre_patch`, `post_patch`, `pre_unpatch`, `post_unpatch`), each 8 bytes.
pub const KLP_OBJECTS_SECTION: &str = ".klp_forge.objects";
/// Size of one object record.
pub const KLP_OBJECT_RECORD_SIZE: usize = 56;
/// The section holding function records: `old_name`, `new_func`, `sympos`, each 8 bytes.
pub const KLP_FUNCS_SECTION: &str = ".klp_forge.funcs";
/// Size of one function record.
pub const KLP_FUNC_RECORD_SIZE: usize = 24;
/// The section of the patch author's state declarations (`KLPFORGE_STATE` of `klpforge.h`), in
/// the patched object and, unchanged, in the diff object: records of `u64 id`, `u32 version` and
/// `u32` zero. The module's init code hands them to the patch as its `struct klp_state` array.
pub const KLP_STATES_SECTION: &str = ".klp_forge.states";
/// Size of one state record.
pub const KLP_STATE_RECORD_SIZE: usize = 16;
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

#[cfg(test)]
mod tests {
    use super::*;

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
