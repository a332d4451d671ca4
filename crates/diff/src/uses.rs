//! Who refers to a piece of data, and how: what decides whether a copy of it in the module
//! serves every reader (changed read-only data, `fresh`; tables of addresses inside replaced
//! code, `code_bound`).

use klpforge_elf::{SectionId, SymbolId};

use crate::analyze::{ObjInfo, SecKind, SymKind};
use crate::refs::Target;

/// A piece of data: a named object, or an anonymous piece of a data section (no symbol
/// covers it; [`ObjInfo::piece_at`]: `[start, end)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Holder {
    Symbol(SymbolId),
    Piece(SectionId, u64, u64),
}

/// Where a reference to a holder is (`sec`, `offset`) and what it is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Use {
    pub(crate) sec: SectionId,
    pub(crate) offset: u64,
    pub(crate) from: Source,
}

/// What a reference to a holder comes from; the names are the referring symbol's, or its
/// section's where no symbol covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Run-time code of a function (its parent, for a `.cold` part).
    Function(SymbolId),
    /// Run-time code no function symbol covers.
    OtherCode(String),
    /// `__init`/`__exit` code.
    InitCode(String),
    /// Alternative replacement code.
    Replacement(String),
    /// Data, a special section's entries included (`special`: from one).
    Data { name: String, special: bool },
}

impl Source {
    /// Where such a reference takes the holder's address beyond run-time code, as the end of
    /// a sentence about it ("its address ..."); `None` for run-time code.
    pub(crate) fn beyond_code(&self) -> Option<String> {
        match self {
            Source::Function(_) | Source::OtherCode(_) => None,
            Source::InitCode(name) => Some(format!(
                "is taken by __init code ({name}), which may have stored it at boot"
            )),
            Source::Replacement(name) => {
                Some(format!("is used by alternative replacement code ({name})"))
            }
            Source::Data { name, .. } => Some(format!("is stored in data ({name})")),
        }
    }
}

/// Every reference to `holder` in `info` outside it, in section and table order (debug
/// information, markers, metadata and sections the diff does not read left out).
pub(crate) fn uses_of(info: &ObjInfo<'_, '_>, holder: Holder) -> Vec<Use> {
    let mut out = Vec::new();
    for (sec, _) in info.obj.sections() {
        let facts = info.sec(sec);
        if matches!(
            facts.kind,
            SecKind::Debug | SecKind::Meta | SecKind::Other | SecKind::Marker
        ) {
            continue;
        }
        for r in info.relocations(sec) {
            let hit = match (holder, r.target) {
                (Holder::Symbol(h), Target::Symbol { sym, .. }) => sym == h,
                (Holder::Piece(h, start, end), Target::Section { sec: t, offset })
                | (Holder::Piece(h, start, end), Target::Constant { sec: t, offset }) => {
                    t == h && (start as i64..(end as i64).max(start as i64 + 1)).contains(&offset)
                }
                _ => false,
            };
            if !hit {
                continue;
            }
            let at = info.symbol_at(sec, r.offset() as i64);
            let own = match holder {
                Holder::Symbol(h) => at == Some(h),
                Holder::Piece(h, start, end) => {
                    at.is_none() && sec == h && (start..end.max(start + 1)).contains(&r.offset())
                }
            };
            if own {
                continue;
            }
            let name = || {
                at.map_or_else(
                    || info.obj.section(sec).name_lossy().into_owned(),
                    |a| info.sym(a).name.to_string(),
                )
            };
            let from = match facts.kind {
                SecKind::Text if facts.init => Source::InitCode(name()),
                SecKind::Text => match at.filter(|&a| info.sym(a).kind == SymKind::Function) {
                    Some(f) => Source::Function(info.sym(f).parent.unwrap_or(f)),
                    None => Source::OtherCode(name()),
                },
                SecKind::SpecialAux => Source::Replacement(name()),
                kind => Source::Data {
                    name: name(),
                    special: kind == SecKind::Special,
                },
            };
            out.push(Use {
                sec,
                offset: r.offset(),
                from,
            });
        }
    }
    out
}
