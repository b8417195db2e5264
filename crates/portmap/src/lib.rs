//! Per-project ports, loopback port probing and allocation, and the OpenCode listening line.
//!
//! Not implemented yet: this crate is an empty placeholder in the workspace.
