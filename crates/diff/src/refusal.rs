//! Refusals: changes a live patch cannot carry, each with the reason and the remedy.

/// A change that cannot be live-patched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// The symbol (or section) concerned.
    pub symbol: String,
    /// Why it cannot be patched.
    pub reason: String,
    /// What the patch author can do instead.
    pub remedy: String,
}

/// A refusal of `symbol`.
pub(crate) fn refusal(
    symbol: &str,
    reason: impl Into<String>,
    remedy: impl Into<String>,
) -> Refusal {
    Refusal {
        symbol: symbol.to_string(),
        reason: reason.into(),
        remedy: remedy.into(),
    }
}
