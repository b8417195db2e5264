//! A blocking, typed client of the OpenCode HTTP API.
//!
//! Not implemented yet: this crate is an empty placeholder in the workspace.
