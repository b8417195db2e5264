//! One healthy OpenCode server per project: ensure, stop, status, list and supervision.
//!
//! Not implemented yet: this crate is an empty placeholder in the workspace.
