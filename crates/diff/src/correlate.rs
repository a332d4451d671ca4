//! Pairing each symbol of the original build with its twin in the patched build.
//!
//! Symbols are matched within their scope: locals within twin FILE symbols (paired by name
//! and occurrence), globals by name. Within a scope, candidates share kind and demangled name;
//! a unique candidate on each side pairs. Where several remain (`foo.constprop.0` and
//! `foo.constprop.1`), identical full names pair first, then identical checksums; anything
//! still ambiguous is an error naming the candidates, never a guess. `.cold` parts pair
//! through their parents. Function-scope statics (`count.3`) pair through the functions that
//! use them, so two statics named `count` in different functions never cross. Symbols that
//! must never be correlated (see [`crate::analyze`]) stay unpaired and are cloned fresh.

use std::collections::{BTreeMap, HashMap, HashSet};

use klpforge_elf::{SymbolId, SymbolPlace};

use crate::analyze::{ObjInfo, SymKind};
use crate::checksum::Checksums;
use crate::refs::{resolve, Target};

/// The pairing of original and patched symbols.
#[derive(Debug, Clone, Default)]
pub struct Twins {
    /// Twin in the patched object, per original symbol arena slot.
    pub orig_to_patched: Vec<Option<SymbolId>>,
    /// Twin in the original object, per patched symbol arena slot.
    pub patched_to_orig: Vec<Option<SymbolId>>,
}

impl Twins {
    /// The patched twin of an original symbol.
    pub fn of_orig(&self, id: SymbolId) -> Option<SymbolId> {
        self.orig_to_patched.get(id.index()).copied().flatten()
    }

    /// The original twin of a patched symbol.
    pub fn of_patched(&self, id: SymbolId) -> Option<SymbolId> {
        self.patched_to_orig.get(id.index()).copied().flatten()
    }

    fn pair(&mut self, o: SymbolId, p: SymbolId) {
        self.orig_to_patched[o.index()] = Some(p);
        self.patched_to_orig[p.index()] = Some(o);
    }
}

/// Correlation failed: names cannot be paired without guessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguity {
    /// The demangled name.
    pub name: String,
    /// The original candidates.
    pub orig: Vec<String>,
    /// The patched candidates.
    pub patched: Vec<String>,
}

impl std::fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot correlate '{}' unambiguously: original has {}, patched has {}",
            self.name,
            self.orig.join(", "),
            self.patched.join(", ")
        )
    }
}

/// Scope key of a symbol: its FILE (name and occurrence) for locals, `None` for globals.
fn scope_keys(info: &ObjInfo<'_, '_>) -> HashMap<SymbolId, (String, usize)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = HashMap::new();
    for (id, _) in info.obj.symbols() {
        if info.sym(id).kind == SymKind::File {
            let name = info.sym(id).name.clone();
            let n = seen.entry(name.clone()).or_default();
            out.insert(id, (name, *n));
            *n += 1;
        }
    }
    out
}

/// A FILE scope: the FILE symbol's name and occurrence, `None` for globals.
type Scope = Option<(String, usize)>;

type Key = (Scope, u8, String);

fn kind_code(kind: SymKind) -> u8 {
    match kind {
        SymKind::Function => 0,
        SymKind::Object => 1,
        SymKind::Section => 2,
        SymKind::File => 3,
        SymKind::Other => 4,
    }
}

fn group(
    info: &ObjInfo<'_, '_>,
    files: &HashMap<SymbolId, (String, usize)>,
) -> BTreeMap<Key, Vec<SymbolId>> {
    let mut out: BTreeMap<Key, Vec<SymbolId>> = BTreeMap::new();
    for (id, s) in info.obj.symbols() {
        let si = info.sym(id);
        if si.never_correlate || si.static_local || si.parent.is_some() {
            continue;
        }
        if matches!(si.kind, SymKind::File | SymKind::Section) {
            continue;
        }
        let scope = if s.is_local() {
            si.file.and_then(|f| files.get(&f).cloned())
        } else {
            None
        };
        // Undefined symbols have no counters: match them by full name.
        let name = if s.place == SymbolPlace::Undefined {
            si.name.clone()
        } else {
            si.demangled.clone()
        };
        let kind = if s.place == SymbolPlace::Undefined {
            9
        } else {
            kind_code(si.kind)
        };
        out.entry((scope, kind, name)).or_default().push(id);
    }
    out
}

/// Pair the candidates of one group; returns the leftover ambiguity, if any.
fn pair_group(
    twins: &mut Twins,
    (orig, oc): (&ObjInfo<'_, '_>, &Checksums),
    (patched, pc): (&ObjInfo<'_, '_>, &Checksums),
    name: &str,
    mut os: Vec<SymbolId>,
    mut ps: Vec<SymbolId>,
) -> Option<Ambiguity> {
    if os.len() == 1 && ps.len() == 1 {
        twins.pair(os[0], ps[0]);
        return None;
    }
    // Identical full names, unique on both sides.
    let count = |info: &ObjInfo<'_, '_>, list: &[SymbolId], n: &str| {
        list.iter().filter(|&&x| info.sym(x).name == n).count()
    };
    let mut i = 0;
    while i < os.len() {
        let n = orig.sym(os[i]).name.clone();
        if count(orig, &os, &n) == 1 && count(patched, &ps, &n) == 1 {
            let j = ps
                .iter()
                .position(|&p| patched.sym(p).name == n)
                .expect("counted");
            twins.pair(os[i], ps[j]);
            os.remove(i);
            ps.remove(j);
        } else {
            i += 1;
        }
    }
    // Identical checksums, unique on both sides.
    let mut i = 0;
    while i < os.len() {
        let c = oc.full[os[i].index()];
        let on = os.iter().filter(|x| oc.full[x.index()] == c).count();
        let matches: Vec<usize> = (0..ps.len())
            .filter(|&j| pc.full[ps[j].index()] == c)
            .collect();
        if c != 0 && on == 1 && matches.len() == 1 {
            twins.pair(os[i], ps[matches[0]]);
            os.remove(i);
            ps.remove(matches[0]);
        } else {
            i += 1;
        }
    }
    if os.len() == 1 && ps.len() == 1 {
        twins.pair(os[0], ps[0]);
        return None;
    }
    if os.is_empty() || ps.is_empty() {
        // What is left exists on one side only: removed or new symbols.
        return None;
    }
    Some(Ambiguity {
        name: name.to_string(),
        orig: os.iter().map(|&x| orig.sym(x).name.clone()).collect(),
        patched: ps.iter().map(|&x| patched.sym(x).name.clone()).collect(),
    })
}

/// The named symbols (functions or objects) that reference each static local, with `.cold`
/// parts counted as their parent.
fn static_users(info: &ObjInfo<'_, '_>) -> HashMap<SymbolId, Vec<SymbolId>> {
    let mut out: HashMap<SymbolId, Vec<SymbolId>> = HashMap::new();
    for (sec, _) in info.obj.sections() {
        if info.sec(sec).ranges.is_empty() {
            continue;
        }
        for r in info.relocations(sec) {
            let Target::Symbol { sym, .. } = resolve(info, sec, &r) else {
                continue;
            };
            if !info.sym(sym).static_local {
                continue;
            }
            let Some(user) = info.symbol_at(sec, r.offset as i64) else {
                continue;
            };
            let user = info.sym(user).parent.unwrap_or(user);
            if user == sym {
                continue;
            }
            let list = out.entry(sym).or_default();
            if !list.contains(&user) {
                list.push(user);
            }
        }
    }
    out
}

/// Correlate `orig` with `patched`.
pub fn correlate(
    orig: &ObjInfo<'_, '_>,
    patched: &ObjInfo<'_, '_>,
    oc: &Checksums,
    pc: &Checksums,
) -> Result<Twins, Vec<Ambiguity>> {
    let mut twins = Twins {
        orig_to_patched: vec![None; orig.obj.symbol_arena_len()],
        patched_to_orig: vec![None; patched.obj.symbol_arena_len()],
    };
    let of = scope_keys(orig);
    let pf = scope_keys(patched);
    // FILE symbols pair by name and occurrence.
    let pf_by_key: HashMap<&(String, usize), SymbolId> =
        pf.iter().map(|(id, k)| (k, *id)).collect();
    for (id, key) in &of {
        if let Some(&p) = pf_by_key.get(key) {
            twins.pair(*id, p);
        }
    }
    let og = group(orig, &of);
    let mut pg = group(patched, &pf);
    let mut ambiguities = Vec::new();
    for (key, os) in og {
        let Some(ps) = pg.remove(&key) else { continue };
        if let Some(a) = pair_group(&mut twins, (orig, oc), (patched, pc), &key.2, os, ps) {
            ambiguities.push(a);
        }
    }
    // A symbol that changed scope (static ↔ global) pairs by exact name when unique.
    let unpaired_o: Vec<SymbolId> = orig
        .obj
        .symbols()
        .filter(|(id, s)| {
            twins.of_orig(*id).is_none()
                && s.section().is_some()
                && matches!(orig.sym(*id).kind, SymKind::Function | SymKind::Object)
                && !orig.sym(*id).never_correlate
                && !orig.sym(*id).static_local
                && orig.sym(*id).parent.is_none()
        })
        .map(|(id, _)| id)
        .collect();
    for o in unpaired_o {
        let name = &orig.sym(o).name;
        let cands: Vec<SymbolId> = patched
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&p| {
                twins.of_patched(p).is_none()
                    && patched.obj.symbol(p).section().is_some()
                    && patched.sym(p).kind == orig.sym(o).kind
            })
            .collect();
        if cands.len() == 1 && orig.by_name.get(name).map_or(0, Vec::len) == 1 {
            twins.pair(o, cands[0]);
        }
    }
    // `.cold` parts pair through their parents.
    for (o, _) in orig.obj.symbols() {
        let Some(op) = orig.sym(o).parent else {
            continue;
        };
        let Some(pp) = twins.of_orig(op) else {
            continue;
        };
        let want = &orig.sym(o).demangled;
        let cands: Vec<SymbolId> = patched
            .sym(pp)
            .children
            .iter()
            .copied()
            .filter(|&c| &patched.sym(c).demangled == want && twins.of_patched(c).is_none())
            .collect();
        if cands.len() == 1 {
            twins.pair(o, cands[0]);
        }
    }
    // Function-scope statics pair through their users.
    let ou = static_users(orig);
    let pu = static_users(patched);
    let mut by_base: HashMap<(Scope, String), Vec<SymbolId>> = HashMap::new();
    for (p, _) in patched.obj.symbols() {
        let si = patched.sym(p);
        if si.static_local {
            let scope = si.file.and_then(|f| pf.get(&f).cloned());
            by_base
                .entry((scope, si.demangled.clone()))
                .or_default()
                .push(p);
        }
    }
    let mut claimed: HashSet<SymbolId> = HashSet::new();
    for (o, _) in orig.obj.symbols() {
        let si = orig.sym(o);
        if !si.static_local {
            continue;
        }
        let scope = si.file.and_then(|f| of.get(&f).cloned());
        let cands = by_base
            .get(&(scope, si.demangled.clone()))
            .cloned()
            .unwrap_or_default();
        let users: Vec<SymbolId> = ou
            .get(&o)
            .into_iter()
            .flatten()
            .filter_map(|&u| twins.of_orig(u))
            .collect();
        let matching: Vec<SymbolId> = if users.is_empty() {
            // Used by nothing we can see: pair by name when unique.
            let unused: Vec<SymbolId> = cands
                .iter()
                .copied()
                .filter(|c| pu.get(c).is_none_or(Vec::is_empty))
                .collect();
            if unused.len() == 1 {
                unused
            } else {
                Vec::new()
            }
        } else {
            cands
                .iter()
                .copied()
                .filter(|c| {
                    pu.get(c)
                        .is_some_and(|us| us.iter().any(|u| users.contains(u)))
                })
                .collect()
        };
        match matching.len() {
            0 => {}
            1 if !claimed.contains(&matching[0]) => {
                claimed.insert(matching[0]);
                twins.pair(o, matching[0]);
            }
            _ => {
                // Several statics of the same name used by the same function: their
                // order of reference is the only evidence; require identical full names.
                let exact: Vec<SymbolId> = matching
                    .iter()
                    .copied()
                    .filter(|&c| patched.sym(c).name == si.name && !claimed.contains(&c))
                    .collect();
                if exact.len() == 1 {
                    claimed.insert(exact[0]);
                    twins.pair(o, exact[0]);
                } else {
                    ambiguities.push(Ambiguity {
                        name: si.demangled.clone(),
                        orig: vec![si.name.clone()],
                        patched: matching
                            .iter()
                            .map(|&c| patched.sym(c).name.clone())
                            .collect(),
                    });
                }
            }
        }
    }
    if ambiguities.is_empty() {
        Ok(twins)
    } else {
        Err(ambiguities)
    }
}
