//! Placeholder for the `klpforge-module` layer; see DESIGN.md. Filled by its own issue.
