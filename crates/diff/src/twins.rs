//! The pairing of original and patched symbols that correlation decides and every later
//! phase reads.

use klpforge_elf::SymbolId;

/// The pairing of original and patched symbols.
#[derive(Debug, Clone, Default)]
pub struct Twins {
    /// Twin in the patched object, per original symbol arena slot.
    pub orig_to_patched: Vec<Option<SymbolId>>,
    /// Twin in the original object, per patched symbol arena slot.
    pub patched_to_orig: Vec<Option<SymbolId>>,
    /// Pairings worth telling the user about (a static that moved to another function).
    pub notes: Vec<String>,
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

    /// Pair original `o` with patched `p`.
    pub(crate) fn pair(&mut self, o: SymbolId, p: SymbolId) {
        self.orig_to_patched[o.index()] = Some(p);
        self.patched_to_orig[p.index()] = Some(o);
    }
}
