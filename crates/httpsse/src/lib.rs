//! A conformant Server-Sent Events parser and a blocking, reconnecting reader thread.
//!
//! Not implemented yet: this crate is an empty placeholder in the workspace.
