//! Tests against real processes. They run in parallel threads of one test
//! process, so each uses its own temp files and FIFOs and changes no
//! process-wide signal state.

mod identity;
mod spawn;
mod support;
mod terminate;
