//! Tests against real processes. They run in parallel threads of one test
//! process, so each uses its own temp files and FIFOs and changes no
//! process-wide signal state (but `signals`, which uses signals of its own).

mod identity;
mod shared;
mod signals;
mod spawn;
mod support;
mod terminate;
mod watch;
