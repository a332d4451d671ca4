//! Placeholder for the `klpforge-build` layer; see DESIGN.md. Filled by its own issue.
