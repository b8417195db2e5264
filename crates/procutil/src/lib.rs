//! Detached child processes, process identity that survives PID reuse, and bounded waits and signals.
//!
//! Not implemented yet: this crate is an empty placeholder in the workspace.
