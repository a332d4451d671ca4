//! Pairing each symbol of the original build with its twin in the patched build.
//!
//! Symbols are matched within their scope: locals within twin FILE symbols (paired by name
//! and occurrence), globals by name. Within a scope, candidates share kind and stable name;
//! a unique candidate on each side pairs. Where several remain (`foo.constprop.0` and
//! `foo.constprop.1`), identical full names pair first, then identical checksums; anything
//! still ambiguous is an error naming the candidates, never a guess. `.cold` parts pair
//! through their parents. Function-scope statics (`count.3`) pair through the functions that
//! use them, so two statics named `count` in different functions never cross. Symbols that
//! must never be correlated (see [`crate::analyze`]) stay unpaired and are cloned fresh.

use crate::{HashMap, HashSet};
use std::collections::{BTreeMap, BTreeSet};

use klpforge_elf::{SectionId, SymbolId, SymbolPlace};

use crate::analyze::{ObjInfo, Reloc, SecKind, SymKind};
use crate::checksum::FullSums;
use crate::refs::Target;
use crate::stable_name::static_local_base;
pub use crate::twins::Twins;

/// Correlation failed: names cannot be paired without guessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguity {
    /// The stable name (compiler counters stripped).
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

/// FILE symbol -> its scope key (file name, unit number).
type ScopeKeys = HashMap<SymbolId, (String, usize)>;

/// The names that tell a unit (FILE scope) apart: `(false, name)` a symbol it defines,
/// `(true, name)` a function that refers to one of its symbols.
type UnitNames<'i> = BTreeSet<(bool, &'i str)>;

/// Scope keys of the FILE symbols of both objects: `(file name, n)`, where `n` numbers the
/// original's translation units of that name in order, and a patched unit gets the number of
/// the original unit whose symbol names it shares most (a unit new in the patched object gets
/// a number of its own). An `ld -r` object may hold several units of one file name, and a new
/// one must not shift the others' statics onto each other.
fn scope_keys(orig: &ObjInfo<'_, '_>, patched: &ObjInfo<'_, '_>) -> (ScopeKeys, ScopeKeys) {
    /// FILE symbols by name, in table order, with the names that tell their units apart:
    /// the local symbols each scope defines and the functions that refer to them (globals
    /// carry no scope in an `ld -r` object, but their references to the unit's statics do).
    fn units<'i>(info: &'i ObjInfo<'_, '_>) -> BTreeMap<String, Vec<(SymbolId, UnitNames<'i>)>> {
        let mut count: HashMap<&str, usize> = HashMap::default();
        for (id, _) in info.obj.symbols() {
            if info.sym(id).kind == SymKind::File {
                *count.entry(info.sym(id).name).or_default() += 1;
            }
        }
        let shared = |f: SymbolId| count.get(info.sym(f).name).is_some_and(|&n| n > 1);
        let mut names: HashMap<SymbolId, UnitNames<'_>> = HashMap::default();
        for (id, s) in info.obj.symbols() {
            let si = info.sym(id);
            if let (Some(f), Some(_)) = (si.file, s.section()) {
                if !si.never_correlate && shared(f) {
                    names
                        .entry(f)
                        .or_default()
                        .insert((false, info.stable_name(id)));
                }
            }
        }
        if count.values().any(|&n| n > 1) {
            for (sec, _) in info.obj.sections() {
                if info.sec(sec).kind != SecKind::Text {
                    continue;
                }
                for r in info.relocations(sec) {
                    let Target::Symbol { sym, .. } = r.target else {
                        continue;
                    };
                    let Some(f) = info.sym(sym).file.filter(|&f| shared(f)) else {
                        continue;
                    };
                    if let Some(user) = info.symbol_at(sec, r.offset() as i64) {
                        let name = info.stable_name(user);
                        names.entry(f).or_default().insert((true, name));
                    }
                }
            }
        }
        let mut out: BTreeMap<String, Vec<(SymbolId, UnitNames<'_>)>> = BTreeMap::new();
        for (id, _) in info.obj.symbols() {
            if info.sym(id).kind == SymKind::File {
                out.entry(info.sym(id).name.to_string())
                    .or_default()
                    .push((id, names.remove(&id).unwrap_or_default()));
            }
        }
        out
    }
    let (ou, pu) = crate::both(large(orig, patched), || units(orig), || units(patched));
    let mut of = HashMap::default();
    let mut pf = HashMap::default();
    for (name, list) in &ou {
        for (n, (id, _)) in list.iter().enumerate() {
            of.insert(*id, (name.clone(), n));
        }
    }
    for (name, plist) in &pu {
        let olist = ou.get(name).map_or(&[][..], Vec::as_slice);
        let mut taken = vec![false; olist.len()];
        let mut number: Vec<Option<usize>> = vec![None; plist.len()];
        if olist.len() == 1 && plist.len() == 1 {
            number[0] = Some(0);
        } else {
            // Shared names, best pairs first; ties keep table order.
            let mut pairs: Vec<(usize, usize, usize, usize)> = Vec::new();
            for (pi, (_, pn)) in plist.iter().enumerate() {
                for (oi, (_, on)) in olist.iter().enumerate() {
                    let shared = pn.intersection(on).count();
                    let union = pn.union(on).count();
                    if shared > 0 {
                        // Compare shared/union as fractions without floating point.
                        pairs.push((shared, union, oi, pi));
                    }
                }
            }
            pairs.sort_by(|a, b| {
                (b.0 * a.1)
                    .cmp(&(a.0 * b.1))
                    .then(a.2.cmp(&b.2))
                    .then(a.3.cmp(&b.3))
            });
            for (_, _, oi, pi) in pairs {
                if !taken[oi] && number[pi].is_none() {
                    taken[oi] = true;
                    number[pi] = Some(oi);
                }
            }
            // Units with nothing in common pair in order when both sides have the same count.
            if olist.len() == plist.len() {
                for (pi, n) in number.iter_mut().enumerate() {
                    if n.is_none() && !taken[pi] {
                        taken[pi] = true;
                        *n = Some(pi);
                    }
                }
            }
        }
        let mut fresh = olist.len();
        for (pi, (id, _)) in plist.iter().enumerate() {
            let n = number[pi].unwrap_or_else(|| {
                fresh += 1;
                fresh - 1
            });
            pf.insert(*id, (name.clone(), n));
        }
    }
    (of, pf)
}

/// A FILE scope: the FILE symbol's name and occurrence, `None` for globals.
type Scope = Option<(String, usize)>;

/// Whether the pair is large enough to run a phase on both objects side by side.
fn large(orig: &ObjInfo<'_, '_>, patched: &ObjInfo<'_, '_>) -> bool {
    crate::side_by_side(orig.obj, patched.obj)
}

fn kind_code(kind: SymKind) -> u8 {
    match kind {
        SymKind::Function => 0,
        SymKind::Object => 1,
        SymKind::Section => 2,
        SymKind::File => 3,
        SymKind::Other => 4,
    }
}

/// A correlation group's key: the number of its FILE scope key ([`ScopeNumbers`], 0 for a
/// global), a kind code and the name, borrowed from the object. Keys compare as the scope
/// keys, kinds and names they stand for.
type GroupKey<'k> = (u32, u8, &'k str);

/// The FILE symbols of one object and the numbers of their scope keys, numbered in key order
/// across both objects from 1 (a kernel has a quarter of a million groups a side: a number
/// keeps each key at three words).
type ScopeNumbers = HashMap<SymbolId, u32>;

/// Number the scope keys of both objects ([`ScopeNumbers`]).
fn scope_numbers(of: &ScopeKeys, pf: &ScopeKeys) -> (ScopeNumbers, ScopeNumbers) {
    let mut keys: Vec<&(String, usize)> = of.values().chain(pf.values()).collect();
    keys.sort_unstable();
    keys.dedup();
    let number = |key: &(String, usize)| keys.binary_search(&key).map_or(0, |i| i as u32 + 1);
    let numbered = |files: &ScopeKeys| files.iter().map(|(&f, k)| (f, number(k))).collect();
    (numbered(of), numbered(pf))
}

fn group<'k>(info: &'k ObjInfo<'_, '_>, files: &ScopeNumbers) -> HashMap<GroupKey<'k>, Members> {
    let mut out: HashMap<GroupKey<'k>, Members> = HashMap::default();
    for (id, s) in info.obj.symbols() {
        let si = info.sym(id);
        if si.never_correlate || si.static_local || si.parent.is_some() {
            continue;
        }
        if matches!(si.kind, SymKind::File | SymKind::Section) {
            continue;
        }
        let scope = if s.is_local() {
            si.file.and_then(|f| files.get(&f)).copied().unwrap_or(0)
        } else {
            0
        };
        // Undefined symbols have no counters: match them by full name.
        let name = if s.place == SymbolPlace::Undefined {
            si.name
        } else {
            info.stable_name(id)
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

/// The symbols of one group, the first kept inline: almost every group of a kernel has one
/// symbol a side, and a vector each would be hundreds of thousands of allocations.
/// The others are boxed, the box absent when there are none (two words a group).
#[derive(Default)]
struct Members {
    first: Option<SymbolId>,
    // Boxed on purpose: a thin pointer keeps every group's entry small; few have a second.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<SymbolId>>>,
}

impl Members {
    fn push(&mut self, id: SymbolId) {
        if self.first.is_none() {
            self.first = Some(id);
        } else {
            self.rest.get_or_insert_default().push(id);
        }
    }

    /// The only member, if there is exactly one.
    fn single(&self) -> Option<SymbolId> {
        self.first.filter(|_| self.rest.is_none())
    }

    fn to_vec(&self) -> Vec<SymbolId> {
        self.first
            .into_iter()
            .chain(self.rest.iter().flat_map(|r| r.iter().copied()))
            .collect()
    }
}

/// Candidates of one name that evidence has not paired yet.
struct Pending {
    /// The stable name (compiler counters stripped).
    name: String,
    orig: Vec<SymbolId>,
    patched: Vec<SymbolId>,
}

/// The original and the patched symbols of the `pending` groups.
fn members(pending: &[Pending]) -> (HashSet<SymbolId>, HashSet<SymbolId>) {
    let side = |of: fn(&Pending) -> &Vec<SymbolId>| {
        pending.iter().flat_map(|g| of(g).iter().copied()).collect()
    };
    (side(|g| &g.orig), side(|g| &g.patched))
}

/// Pair what content alone decides in one group: a unique candidate on each side, then
/// identical checksums unique on both sides, then a last remaining candidate on each side.
/// What is left on both sides is returned for the evidence of their users.
fn pair_group(
    twins: &mut Twins,
    (orig_sums, patched_sums): (&dyn FullSums, &dyn FullSums),
    name: &str,
    mut os: Vec<SymbolId>,
    mut ps: Vec<SymbolId>,
) -> Option<Pending> {
    if os.len() == 1 && ps.len() == 1 {
        twins.pair(os[0], ps[0]);
        return None;
    }
    // Identical checksums, unique on both sides.
    let mut i = 0;
    while i < os.len() {
        let c = orig_sums.full(os[i]);
        let on = os.iter().filter(|x| orig_sums.full(**x) == c).count();
        let matches: Vec<usize> = (0..ps.len())
            .filter(|&j| patched_sums.full(ps[j]) == c)
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
    Some(Pending {
        name: name.to_string(),
        orig: os,
        patched: ps,
    })
}

/// The named symbols (functions or objects) that reference each symbol of `wanted` (the
/// candidates names did not pair: nothing else is asked about), with `.cold` parts counted
/// as their parent, and for each such user the targets of all its references in order (the
/// reference sites, for aligning unchanged users).
struct Users {
    of: HashMap<SymbolId, Vec<SymbolId>>,
    sites: HashMap<SymbolId, Vec<Option<(SymbolId, i64)>>>,
}

fn users(info: &ObjInfo<'_, '_>, wanted: &HashSet<SymbolId>) -> Users {
    let mut of: HashMap<SymbolId, Vec<SymbolId>> = HashMap::default();
    let mut sites: HashMap<SymbolId, Vec<Option<(SymbolId, i64)>>> = HashMap::default();
    if wanted.is_empty() {
        return Users { of, sites };
    }
    // The user of a reference: the function or object at its site, a `.cold` part counted as
    // its parent.
    let user_of = |sec: SectionId, r: &Reloc| {
        info.symbol_at(sec, r.offset() as i64)
            .map(|u| info.sym(u).parent.unwrap_or(u))
    };
    // (target, user) pairs already listed: a popular target has tens of thousands of users.
    let mut listed: HashSet<(SymbolId, SymbolId)> = HashSet::default();
    let mut needed: HashSet<SymbolId> = HashSet::default();
    for (sec, _) in info.obj.sections() {
        if info.ranges(sec).is_empty() {
            continue;
        }
        for r in info.relocations(sec) {
            let Target::Symbol { sym, .. } = r.target else {
                continue;
            };
            if !wanted.contains(&sym) {
                continue;
            }
            let Some(user) = user_of(sec, r) else {
                continue;
            };
            if user != sym && listed.insert((sym, user)) {
                of.entry(sym).or_default().push(user);
                needed.insert(user);
            }
        }
    }
    // The reference sites of the users found (only they are ever compared), in section order:
    // only the sections of their code (and their `.cold` parts) hold them.
    let mut code: Vec<SectionId> = needed
        .iter()
        .flat_map(|&u| std::iter::once(u).chain(info.children(u).iter().copied()))
        .filter_map(|s| info.obj.symbol(s).section())
        .collect();
    code.sort_unstable();
    code.dedup();
    for sec in code {
        for r in info.relocations(sec) {
            let Some(user) = user_of(sec, r).filter(|u| needed.contains(u)) else {
                continue;
            };
            let target = match r.target {
                Target::Symbol { sym, offset } => Some((sym, offset)),
                _ => None,
            };
            sites.entry(user).or_default().push(target);
        }
    }
    Users { of, sites }
}

/// Pair the candidates of `pending` groups by evidence: the reference sites of unchanged
/// users (the i-th reference of a user whose checksum did not change goes to the twin of
/// the i-th reference of its original), then the overlap of their user sets (mutual best
/// by Jaccard index, strictly). Repeats while anything pairs; returns what is left.
fn pair_by_evidence(
    twins: &mut Twins,
    (orig_sums, ou): (&dyn FullSums, &Users),
    (patched_sums, pu): (&dyn FullSums, &Users),
    mut pending: Vec<Pending>,
) -> Vec<Pending> {
    loop {
        let mut progress = false;
        for g in &mut pending {
            // Reference sites of unchanged users.
            let mut votes: BTreeMap<SymbolId, BTreeSet<SymbolId>> = BTreeMap::new();
            let mut voted_for: BTreeMap<SymbolId, BTreeSet<SymbolId>> = BTreeMap::new();
            for &o in &g.orig {
                for &u in ou.of.get(&o).into_iter().flatten() {
                    let Some(up) = twins.of_orig(u) else { continue };
                    if orig_sums.full(u) != patched_sums.full(up) {
                        continue;
                    }
                    let (Some(a), Some(b)) = (ou.sites.get(&u), pu.sites.get(&up)) else {
                        continue;
                    };
                    if a.len() != b.len() {
                        continue;
                    }
                    for (x, y) in a.iter().zip(b) {
                        if let (Some((xo, _)), Some((yp, _))) = (x, y) {
                            if *xo == o && g.patched.contains(yp) {
                                votes.entry(o).or_default().insert(*yp);
                                voted_for.entry(*yp).or_default().insert(o);
                            }
                        }
                    }
                }
            }
            for (o, ps) in &votes {
                if ps.len() != 1 {
                    continue;
                }
                let p = *ps.iter().next().expect("one");
                if voted_for.get(&p).is_some_and(|os| os.len() == 1)
                    && twins.of_orig(*o).is_none()
                    && twins.of_patched(p).is_none()
                {
                    twins.pair(*o, p);
                    progress = true;
                }
            }
            g.orig.retain(|&o| twins.of_orig(o).is_none());
            g.patched.retain(|&p| twins.of_patched(p).is_none());
            if g.orig.is_empty() || g.patched.is_empty() {
                continue;
            }
            // Overlap of user sets (users compared through their twins).
            let user_set = |info_users: &Users, sym: SymbolId, orig_side: bool| {
                info_users
                    .of
                    .get(&sym)
                    .into_iter()
                    .flatten()
                    .filter_map(|&u| {
                        if orig_side {
                            Some(u)
                        } else {
                            twins.of_patched(u)
                        }
                    })
                    .collect::<BTreeSet<SymbolId>>()
            };
            let os: Vec<BTreeSet<SymbolId>> =
                g.orig.iter().map(|&o| user_set(ou, o, true)).collect();
            let ps: Vec<BTreeSet<SymbolId>> =
                g.patched.iter().map(|&p| user_set(pu, p, false)).collect();
            let score = |a: &BTreeSet<SymbolId>, b: &BTreeSet<SymbolId>| -> (usize, usize) {
                let inter = a.intersection(b).count();
                (inter, a.union(b).count().max(1))
            };
            // Compare inter/union fractions exactly.
            let better = |x: (usize, usize), y: (usize, usize)| x.0 * y.1 > y.0 * x.1;
            let mut pairs = Vec::new();
            for (i, a) in os.iter().enumerate() {
                let scores: Vec<(usize, usize)> = ps.iter().map(|b| score(a, b)).collect();
                let Some(j) = (0..ps.len()).find(|&j| {
                    scores[j].0 > 0 && (0..ps.len()).all(|k| k == j || better(scores[j], scores[k]))
                }) else {
                    continue;
                };
                let back_best =
                    (0..os.len()).all(|k| k == i || better(scores[j], score(&os[k], &ps[j])));
                if back_best {
                    pairs.push((g.orig[i], g.patched[j]));
                }
            }
            for (o, p) in pairs {
                twins.pair(o, p);
                progress = true;
            }
            g.orig.retain(|&o| twins.of_orig(o).is_none());
            g.patched.retain(|&p| twins.of_patched(p).is_none());
            if g.orig.len() == 1 && g.patched.len() == 1 {
                twins.pair(g.orig[0], g.patched[0]);
                g.orig.clear();
                g.patched.clear();
                progress = true;
            }
        }
        pending.retain(|g| !g.orig.is_empty() && !g.patched.is_empty());
        if !progress || pending.is_empty() {
            return pending;
        }
    }
}

/// Correlate `orig` with `patched` (`orig_sums`/`patched_sums`: checksums by [`crate::checksum::Identity::Names`]).
pub fn correlate(
    orig: &ObjInfo<'_, '_>,
    patched: &ObjInfo<'_, '_>,
    orig_sums: &dyn FullSums,
    patched_sums: &dyn FullSums,
) -> Result<Twins, Vec<Ambiguity>> {
    let mut twins = Twins {
        orig_to_patched: vec![None; orig.obj.symbol_arena_len()],
        patched_to_orig: vec![None; patched.obj.symbol_arena_len()],
        notes: Vec::new(),
    };
    let (of, pf) = scope_keys(orig, patched);
    // FILE symbols pair by name and occurrence.
    let pf_by_key: HashMap<&(String, usize), SymbolId> =
        pf.iter().map(|(id, k)| (k, *id)).collect();
    for (id, key) in &of {
        if let Some(&p) = pf_by_key.get(key) {
            twins.pair(*id, p);
        }
    }
    let (on, pn) = scope_numbers(&of, &pf);
    let (og, pg) = crate::both(
        large(orig, patched),
        || group(orig, &on),
        || group(patched, &pn),
    );
    // Groups pair independently of each other (their symbols are disjoint); what is left
    // goes on in key order (what pairing by evidence and its messages follow), so only the
    // few groups left are sorted, not every name of a kernel.
    let mut left: Vec<(GroupKey<'_>, Pending)> = Vec::new();
    for (key, om) in &og {
        let Some(pm) = pg.get(key) else { continue };
        if let (Some(o), Some(p)) = (om.single(), pm.single()) {
            twins.pair(o, p);
            continue;
        }
        let (os, ps) = (om.to_vec(), pm.to_vec());
        if let Some(p) = pair_group(&mut twins, (orig_sums, patched_sums), key.2, os, ps) {
            left.push((*key, p));
        }
    }
    left.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut pending: Vec<Pending> = left.into_iter().map(|(_, p)| p).collect();
    // A symbol that changed scope (static ↔ global) pairs by exact name when unique.
    let (in_pending_o, in_pending_p) = members(&pending);
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
                && !in_pending_o.contains(id)
        })
        .map(|(id, _)| id)
        .collect();
    for o in unpaired_o {
        let name = &orig.sym(o).name;
        let cands: Vec<SymbolId> = patched
            .named(name)
            .iter()
            .copied()
            .filter(|&p| {
                twins.of_patched(p).is_none()
                    && patched.obj.symbol(p).section().is_some()
                    && patched.sym(p).kind == orig.sym(o).kind
                    && !patched.sym(p).static_local
                    && !in_pending_p.contains(&p)
            })
            .collect();
        if cands.len() == 1 && orig.named(name).len() == 1 {
            twins.pair(o, cands[0]);
        }
    }
    // Function-scope statics: grouped by scope and stable name, paired by evidence.
    let mut statics: BTreeMap<(Scope, String), (Vec<SymbolId>, Vec<SymbolId>)> = BTreeMap::new();
    let mut add_statics = |info: &ObjInfo<'_, '_>, files: &ScopeKeys, side: u8| {
        for (id, _) in info.obj.symbols() {
            let si = info.sym(id);
            if si.static_local {
                let scope = si.file.and_then(|f| files.get(&f).cloned());
                let e = statics
                    .entry((scope, info.stable_name(id).to_string()))
                    .or_default();
                if side == 0 {
                    e.0.push(id);
                } else {
                    e.1.push(id);
                }
            }
        }
    };
    add_statics(orig, &of, 0);
    add_statics(patched, &pf, 1);
    for ((_, name), (os, ps)) in statics {
        if os.is_empty() || ps.is_empty() {
            continue;
        }
        // Content decides only when unique on both sides (zeroed counters all look alike).
        pending.extend(pair_group(
            &mut twins,
            (orig_sums, patched_sums),
            &name,
            os,
            ps,
        ));
    }
    let (wanted_o, wanted_p) = members(&pending);
    let (ou, pu) = crate::both(
        large(orig, patched),
        || users(orig, &wanted_o),
        || users(patched, &wanted_p),
    );
    let mut left = pair_by_evidence(&mut twins, (orig_sums, &ou), (patched_sums, &pu), pending);
    // `.cold` parts pair through their parents.
    for (o, _) in orig.obj.symbols() {
        let Some(op) = orig.sym(o).parent else {
            continue;
        };
        let Some(pp) = twins.of_orig(op) else {
            continue;
        };
        let want = orig.stable_name(o);
        let cands: Vec<SymbolId> = patched
            .children(pp)
            .iter()
            .copied()
            .filter(|&c| patched.stable_name(c) == want && twins.of_patched(c).is_none())
            .collect();
        if cands.len() == 1 {
            twins.pair(o, cands[0]);
        }
    }
    pair_indistinguishable(&mut twins, (orig_sums, &ou), (patched_sums, &pu), &mut left);
    pair_moved_statics(&mut twins, (orig, &of), (patched, &pf), &mut left);
    let ambiguities: Vec<Ambiguity> = left
        .into_iter()
        .map(|g| Ambiguity {
            name: g.name,
            orig: g
                .orig
                .iter()
                .map(|&x| orig.sym(x).name.to_string())
                .collect(),
            patched: g
                .patched
                .iter()
                .map(|&x| patched.sym(x).name.to_string())
                .collect(),
        })
        .collect();
    if ambiguities.is_empty() {
        Ok(twins)
    } else {
        Err(ambiguities)
    }
}

/// A writable static that no longer pairs within its own class: a function-scope static whose
/// function was inlined, split into a `.constprop` clone or a new helper, or a file-scope
/// static moved into its only function. It is the same variable, and the patched code must
/// use the running kernel's copy, not a fresh one: pair it with the unpaired original static
/// of the same variable name in the same FILE scope when exactly one exists on each side.
fn pair_moved_statics(
    twins: &mut Twins,
    (orig, of): (&ObjInfo<'_, '_>, &HashMap<SymbolId, (String, usize)>),
    (patched, pf): (&ObjInfo<'_, '_>, &HashMap<SymbolId, (String, usize)>),
    left: &mut Vec<Pending>,
) {
    let candidates = |info: &ObjInfo<'_, '_>,
                      files: &HashMap<SymbolId, (String, usize)>,
                      side: usize,
                      twins: &Twins| {
        let mut out: BTreeMap<(Scope, String), Vec<SymbolId>> = BTreeMap::new();
        for (id, s) in info.obj.symbols() {
            let si = info.sym(id);
            let paired = if side == 0 {
                twins.of_orig(id).is_some()
            } else {
                twins.of_patched(id).is_some()
            };
            let writable = s
                .section()
                .is_some_and(|sec| matches!(info.sec(sec).kind, SecKind::Data | SecKind::Bss));
            if paired
                || !s.is_local()
                || si.kind != SymKind::Object
                || si.never_correlate
                || !writable
            {
                continue;
            }
            let scope = si.file.and_then(|f| files.get(&f).cloned());
            out.entry((scope, static_local_base(si.name).to_string()))
                .or_default()
                .push(id);
        }
        out
    };
    let orig_candidates = candidates(orig, of, 0, twins);
    let patched_candidates = candidates(patched, pf, 1, twins);
    for (key, os) in orig_candidates {
        let Some(ps) = patched_candidates.get(&key) else {
            continue;
        };
        if os.len() == 1 && ps.len() == 1 {
            let (o, p) = (os[0], ps[0]);
            // Leftover ambiguity about exactly these two is resolved by this pairing.
            for g in left.iter_mut() {
                g.orig.retain(|&x| x != o);
                g.patched.retain(|&x| x != p);
            }
            twins.pair(o, p);
            twins.notes.push(format!(
                "static {} is now {}: bound to the running kernel's copy",
                orig.sym(o).name,
                patched.sym(p).name
            ));
        }
    }
    left.retain(|g| !g.orig.is_empty() && !g.patched.is_empty());
}

/// Candidates that nothing refers to (kept only by `__used`, like tracepoint strings) and that
/// have identical content on both sides cannot be told apart by any code: pairing them in any
/// order binds equal things, so they pair in name order, class by class of equal checksums.
fn pair_indistinguishable(
    twins: &mut Twins,
    (orig_sums, ou): (&dyn FullSums, &Users),
    (patched_sums, pu): (&dyn FullSums, &Users),
    left: &mut Vec<Pending>,
) {
    for g in left.iter_mut() {
        if g.orig.iter().any(|o| ou.of.contains_key(o))
            || g.patched.iter().any(|p| pu.of.contains_key(p))
        {
            continue;
        }
        let classes: BTreeSet<u64> = g.orig.iter().map(|o| orig_sums.full(*o)).collect();
        for c in classes {
            let os: Vec<SymbolId> = g
                .orig
                .iter()
                .copied()
                .filter(|o| orig_sums.full(*o) == c)
                .collect();
            let ps: Vec<SymbolId> = g
                .patched
                .iter()
                .copied()
                .filter(|p| patched_sums.full(*p) == c)
                .collect();
            if os.len() == ps.len() {
                for (o, p) in os.into_iter().zip(ps) {
                    twins.pair(o, p);
                }
            }
        }
        g.orig.retain(|&o| twins.of_orig(o).is_none());
        g.patched.retain(|&p| twins.of_patched(p).is_none());
    }
    left.retain(|g| !g.orig.is_empty() && !g.patched.is_empty());
}
