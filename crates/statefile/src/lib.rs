//! The ocm state directory, atomic JSON records and advisory locks.
//!
//! Not implemented yet: this crate is an empty placeholder in the workspace.
