//! Processes for ocm, the one crate that talks to the kernel about them:
//! detached children, process identity that survives PID reuse, pidfds,
//! bounded waits and signals, inotify watches, signal handling and `/proc`
//! (Linux; other Unix systems compile, but the /proc and pidfd based parts
//! need Linux).
//!
//! - [`spawn_detached`] starts a program in its own session with a clean
//!   signal state, stdin from `/dev/null`, stdout and stderr to a file, and
//!   no inherited descriptors but 0, 1 and 2. The [`Child`] it returns can
//!   be shared between threads (`Arc<Child>`): one waits with a deadline
//!   while another signals or terminates it; if the caller exits instead,
//!   the child keeps running.
//! - [`ProcessIdentity`] is pid + start time + boot id: store it, and later
//!   (from any process) check [`is_alive`](ProcessIdentity::is_alive) or
//!   [`terminate`] without the risk of hitting a process that got the pid
//!   after the original was gone.
//! - [`Pidfd`] pins one process (verified against an identity with
//!   [`Pidfd::open_verified`]) to signal it or wait for its exit.
//! - [`terminate`] and [`signal_group`] act on the whole process group of a
//!   verified leader; [`wait_gone`] waits on a pidfd for a process that is
//!   not our child.
//! - [`watch`] waits in one poll(2) for files and folders (inotify), process
//!   exits (pidfds) and other descriptors, with a deadline.
//! - [`signals`] ignores the terminal's interrupts
//!   ([`ignore_interrupts`](signals::ignore_interrupts)) or turns signals
//!   into bytes on a pipe ([`Signals`](signals::Signals)), so that callers
//!   need no `unsafe`.
//! - [`output_within`] runs a program to completion with its output
//!   captured, killing its process group at a deadline.
//! - [`cmdline`], [`resident_memory`], [`environ`] and [`environ_var`],
//!   [`session_id`], [`all_pids`] and [`listening_socket_holder`] read /proc.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use procutil::{spawn_detached, signal_group, ProcessIdentity, SpawnSpec, Termination};
//!
//! # fn main() -> Result<(), procutil::Error> {
//! let child = Arc::new(spawn_detached(&SpawnSpec::new("sleep").arg("30"))?);
//! // The identity is what a later process would read from a state file.
//! let identity: ProcessIdentity = child.identity().clone();
//! assert!(identity.is_alive());
//! signal_group(&identity, 0)?; // verifies the identity, sends nothing
//! assert_eq!(child.wait_timeout(Duration::from_millis(10))?, None);
//!
//! // One thread waits while another ends the group: `sleep` exits on
//! // SIGTERM; whichever reaps it, both see the same status.
//! let waiter = {
//!     let child = Arc::clone(&child);
//!     std::thread::spawn(move || child.wait_timeout(Duration::from_secs(10)))
//! };
//! assert_eq!(child.terminate(Duration::from_secs(5))?, Termination::ExitedOnTerm);
//! let status = child.try_wait()?.expect("reaped by terminate");
//! assert_eq!(status.to_string(), "killed by signal 15");
//! assert_eq!(waiter.join().expect("no panic")?, Some(status));
//! assert!(!identity.is_alive());
//! # Ok(())
//! # }
//! ```

mod child;
mod error;
mod pidfd;
mod procfs;
mod run;
mod signal;
pub mod signals;
mod spawn;
mod sys;
mod unix;
pub mod waker;
pub mod watch;

pub use child::{Child, ExitStatus, try_reap};
pub use error::Error;
pub use pidfd::Pidfd;
pub use procfs::{
    EXEC_SETTLE, Environ, ProcessIdentity, all_pids, boot_id, cmdline, cwd, environ, environ_var,
    is_session_leader, listening_socket_holder, parent_pid, process_group_id,
    process_group_members, resident_memory, session_id,
};
pub use run::{output_within, output_within_unless};
pub use signal::{Termination, signal_group, terminate, wait_gone};
pub use spawn::{Output, SpawnSpec, spawn_detached};
pub use unix::connect_unix_now;

#[cfg(test)]
mod tests;
