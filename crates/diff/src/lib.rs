//! Placeholder for the `klpforge-diff` layer; see DESIGN.md. Filled by its own issue.
