//! Test bed (in progress).
