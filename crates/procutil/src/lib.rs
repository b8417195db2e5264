//! Detached child processes, process identity that survives PID reuse, and
//! bounded waits and signals (Linux; other Unix systems compile, but the
//! /proc based parts need Linux).
//!
//! - [`spawn_detached`] starts a program in its own session with a clean
//!   signal state, stdin from `/dev/null`, stdout and stderr to a file, and
//!   no inherited descriptors but 0, 1 and 2. The [`Child`] it returns can
//!   wait with a deadline and reap; if the caller exits instead, the child
//!   keeps running.
//! - [`ProcessIdentity`] is pid + start time + boot id: store it, and later
//!   (from any process) check [`is_alive`](ProcessIdentity::is_alive) or
//!   [`terminate`] without the risk of hitting a process that got the pid
//!   after the original was gone.
//! - [`terminate`] and [`signal_group`] act on the whole process group of a
//!   verified leader; [`wait_gone`] waits on a pidfd for a process that is
//!   not our child.
//! - [`cmdline`], [`resident_memory`] and [`environ_var`] read a process's
//!   details from /proc.
//!
//! ```
//! use std::time::Duration;
//! use procutil::{spawn_detached, signal_group, ProcessIdentity, SpawnSpec, Termination};
//!
//! # fn main() -> Result<(), procutil::Error> {
//! let mut child = spawn_detached(&SpawnSpec::new("sleep").arg("30"))?;
//! // The identity is what a later process would read from a state file.
//! let identity: ProcessIdentity = child.identity().clone();
//! assert!(identity.is_alive());
//! signal_group(&identity, 0)?; // verifies the identity, sends nothing
//! assert_eq!(child.wait_timeout(Duration::from_millis(10))?, None);
//!
//! // `sleep` exits on SIGTERM; the Child reaps it and keeps the status.
//! assert_eq!(child.terminate(Duration::from_secs(5))?, Termination::ExitedOnTerm);
//! let status = child.try_wait()?.expect("reaped by terminate");
//! assert_eq!(status.to_string(), "killed by signal 15");
//! assert!(!identity.is_alive());
//! # Ok(())
//! # }
//! ```

mod child;
mod error;
mod procfs;
mod signal;
mod spawn;
mod sys;

pub use child::{Child, ExitStatus, try_reap};
pub use error::Error;
pub use procfs::{
    ProcessIdentity, boot_id, cmdline, environ_var, process_group_members, resident_memory,
};
pub use signal::{Termination, signal_group, terminate, wait_gone};
pub use spawn::{Output, SpawnSpec, spawn_detached};

#[cfg(test)]
mod tests;
