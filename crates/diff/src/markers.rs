//! The patch author's markers in a patched object: kpatch's `KPATCH_IGNORE_FUNCTION`,
//! `KPATCH_IGNORE_SECTION`, `KPATCH_FORCE_UNSAFE` and callback records, upstream's
//! `KLP_*_CALLBACK` pointers in `.discard.klp_callback_ptrs`, and klpforge's own
//! `KLPFORGE_STATE` declarations (`struct klp_state`, in `.klp_forge.states`).

use crate::HashSet;

use klpforge_elf::{SectionId, SymbolId};

use crate::analyze::{ObjInfo, SecKind, SymKind};
use crate::klp::StateRecord;
use crate::refs::{string_at, Target};
use crate::refusal::{refusal, Refusal};

/// The four livepatch callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackKind {
    /// Before the patch is enabled.
    PrePatch,
    /// After the patch is enabled.
    PostPatch,
    /// Before the patch is disabled.
    PreUnpatch,
    /// After the patch is disabled.
    PostUnpatch,
}

impl CallbackKind {
    /// All kinds, in `struct klp_callbacks` order.
    pub const ALL: [CallbackKind; 4] = [
        CallbackKind::PrePatch,
        CallbackKind::PostPatch,
        CallbackKind::PreUnpatch,
        CallbackKind::PostUnpatch,
    ];

    /// `pre_patch`, `post_patch`, ...
    pub fn name(self) -> &'static str {
        match self {
            CallbackKind::PrePatch => "pre_patch",
            CallbackKind::PostPatch => "post_patch",
            CallbackKind::PreUnpatch => "pre_unpatch",
            CallbackKind::PostUnpatch => "post_unpatch",
        }
    }
}

/// A system state the patch declares it handles (`KLPFORGE_STATE(id, version)`): the kernel's
/// `struct klp_state`, which cumulative patches hand over with `klp_get_prev_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct KlpState {
    /// The state's identifier (never 0: the kernel ends a patch's state list at id 0).
    pub id: u64,
    /// Its version: a later patch must declare at least the version of the patches it replaces.
    pub version: u32,
}

/// Functions and sections named by the author markers of a patched object.
pub(crate) struct Markers {
    /// Functions marked `KPATCH_IGNORE_FUNCTION`.
    pub(crate) ignored_functions: HashSet<SymbolId>,
    /// Sections marked `KPATCH_IGNORE_SECTION`.
    pub(crate) ignored_sections: HashSet<SectionId>,
    /// Functions marked `KPATCH_FORCE_UNSAFE`.
    pub(crate) forced: HashSet<SymbolId>,
    /// Callback functions, by kind.
    pub(crate) callbacks: Vec<(CallbackKind, SymbolId)>,
}

fn kpatch_callback_kind(section: &str) -> Option<CallbackKind> {
    Some(match section.strip_prefix(".kpatch.callbacks.")? {
        "pre_patch" => CallbackKind::PrePatch,
        "post_patch" => CallbackKind::PostPatch,
        "pre_unpatch" => CallbackKind::PreUnpatch,
        "post_unpatch" => CallbackKind::PostUnpatch,
        _ => return None,
    })
}

fn upstream_callback_kind(symbol: &str) -> Option<CallbackKind> {
    for kind in CallbackKind::ALL {
        if symbol.starts_with(&format!("__klp_{}_callback_", kind.name())) {
            return Some(kind);
        }
    }
    None
}

pub(crate) fn markers(p: &ObjInfo<'_, '_>) -> Markers {
    let mut m = Markers {
        ignored_functions: HashSet::default(),
        ignored_sections: HashSet::default(),
        forced: HashSet::default(),
        callbacks: Vec::new(),
    };
    for (sec, s) in p.obj.sections() {
        if p.sec(sec).kind != SecKind::Marker {
            continue;
        }
        let name = s.name_lossy().into_owned();
        for r in p.relocations(sec) {
            let target = r.target;
            let func = match target {
                Target::Symbol { sym, .. } if p.sym(sym).kind == SymKind::Function => Some(sym),
                _ => None,
            };
            match name.as_str() {
                ".kpatch.ignore.functions" => m.ignored_functions.extend(func),
                ".kpatch.force" => m.forced.extend(func),
                ".kpatch.ignore.sections" => {
                    if let Target::String {
                        sec: ssec, start, ..
                    } = target
                    {
                        let wanted = string_at(p.obj.section(ssec).bytes(), start.into()).to_vec();
                        if let Some(id) = p.section_named(&wanted) {
                            m.ignored_sections.insert(id);
                        }
                    }
                }
                ".discard.klp_callback_ptrs" => {
                    let holder = p.symbol_at(sec, r.offset() as i64);
                    let kind = holder.and_then(|h| upstream_callback_kind(p.sym(h).name));
                    if let (Some(kind), Some(f)) = (kind, func) {
                        m.callbacks.push((kind, f));
                    }
                }
                n => {
                    if let (Some(kind), Some(f)) = (kpatch_callback_kind(n), func) {
                        m.callbacks.push((kind, f));
                    }
                }
            }
        }
    }
    m.callbacks.sort();
    m.callbacks.dedup();
    m
}

/// The `KLPFORGE_STATE` records of `.klp_forge.states` (`u64 id`, `u32 version`, `u32` zero,
/// in the object's byte order), or the refusal that malformed or contradicting ones deserve.
pub(crate) fn declared_states(p: &ObjInfo<'_, '_>) -> Result<Vec<KlpState>, Refusal> {
    let Some(sec) = p.section_named(crate::klp::KLP_STATES_SECTION.as_bytes()) else {
        return Ok(Vec::new());
    };
    let bytes = p.obj.section(sec).bytes();
    let size = StateRecord::SIZE;
    let remedy =
        "declare states with KLPFORGE_STATE(id, version) of klpforge.h, one version per id";
    if bytes.len() % size != 0 {
        return Err(refusal(
            crate::klp::KLP_STATES_SECTION,
            format!(
                "{} bytes is not a whole number of {size}-byte state records",
                bytes.len()
            ),
            remedy,
        ));
    }
    let mut states: Vec<KlpState> = Vec::new();
    for rec in bytes.chunks_exact(size) {
        let StateRecord { id, version } =
            StateRecord::decode(rec, p.obj.header.endian).expect("a whole record");
        let state = KlpState { id, version };
        if state.id == 0 {
            return Err(refusal(
                crate::klp::KLP_STATES_SECTION,
                "a state with id 0: the kernel ends a patch's state list at id 0",
                remedy,
            ));
        }
        match states.iter().find(|s| s.id == state.id) {
            Some(s) if s.version != state.version => {
                return Err(refusal(
                    crate::klp::KLP_STATES_SECTION,
                    format!(
                        "state {:#x} declared with versions {} and {}",
                        state.id,
                        s.version.min(state.version),
                        s.version.max(state.version)
                    ),
                    remedy,
                ))
            }
            Some(_) => {}
            None => states.push(state),
        }
    }
    states.sort();
    Ok(states)
}
