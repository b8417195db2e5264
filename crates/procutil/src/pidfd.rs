//! The one pidfd type: a descriptor pinned to one process, to signal it and
//! wait for its exit without the risk of PID reuse.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

use crate::Error;
use crate::procfs::{Liveness, ProcessIdentity};
use crate::sys::{self, is_esrch};

/// A pidfd (Linux 5.3+): a descriptor that refers to one process for as
/// long as it is open, whatever happens to its pid.
///
/// A signal sent through it reaches that process or nobody: once the process
/// has been reaped, [`send_signal`](Self::send_signal) fails with
/// [`Error::NoSuchProcess`] even if its pid has gone to another process.
/// It becomes readable when the process exits, so it can sit in a poll set
/// ([`Watch::add_pidfd`](crate::watch::Watch::add_pidfd)) or be waited on
/// with a deadline ([`wait_exited`](Self::wait_exited)).
///
/// Opening one by pid ([`open`](Self::open)) is only as good as the pid: if
/// the process was reaped and its pid reused before the call, the pidfd
/// pins the new process. [`open_verified`](Self::open_verified) closes that
/// gap by checking a stored [`ProcessIdentity`] after the descriptor is
/// open. For our own unreaped child the pid is safe (nobody else can get it
/// until we reap it).
pub struct Pidfd {
    fd: OwnedFd,
    pid: u32,
}

impl fmt::Debug for Pidfd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pidfd")
            .field("pid", &self.pid)
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

impl Pidfd {
    /// Opens a pidfd for the process that has `pid` now.
    ///
    /// `Ok(None)` when the kernel has no pidfd support (before Linux 5.3,
    /// a seccomp filter that forbids it, or not Linux): the caller falls
    /// back to checking the pid. [`Error::NoSuchProcess`] when no process
    /// has that pid (or it names a thread, not a process).
    pub fn open(pid: u32) -> Result<Option<Pidfd>, Error> {
        match sys::pidfd_open(pid) {
            Ok(Some(fd)) => Ok(Some(Pidfd { fd, pid })),
            Ok(None) => Ok(None),
            Err(err) if is_esrch(&err) || err.raw_os_error() == Some(libc::EINVAL) => {
                Err(Error::NoSuchProcess { pid })
            }
            Err(source) => Err(Error::Pidfd { pid, source }),
        }
    }

    /// Opens a pidfd for the identified process, and then checks that the
    /// pid still belongs to it (same start time, same boot): the descriptor
    /// is pinned to that very process, not to one that got its pid.
    ///
    /// A process that has exited but is not reaped yet (a zombie) still
    /// counts: the pidfd is then already [exited](Self::is_exited).
    /// [`Error::NoSuchProcess`] when it is gone, [`Error::IdentityMismatch`]
    /// when its pid now belongs to another process. `Ok(None)` when the
    /// kernel has no pidfd support (the identity was still checked, so the
    /// process existed a moment ago; there is nothing to pin it with).
    pub fn open_verified(identity: &ProcessIdentity) -> Result<Option<Pidfd>, Error> {
        let pid = identity.pid;
        let pidfd = Pidfd::open(pid)?;
        // Checked after the open: if the pid was reused before it, the check
        // sees the new process and fails; if after, the pidfd's process had
        // already been the identified one when the descriptor was made.
        match identity.check()? {
            Liveness::Alive(_) | Liveness::Zombie => Ok(pidfd),
            Liveness::Gone => Err(Error::NoSuchProcess { pid }),
            Liveness::Mismatch(detail) => Err(Error::IdentityMismatch { pid, detail }),
        }
    }

    /// The pid the descriptor was opened for. Once the process is reaped,
    /// that pid may belong to another process: use it only for messages.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the process (signal 0 checks that it has not been
    /// reaped, sending nothing). [`Error::NoSuchProcess`] once it has been
    /// reaped, whoever has its pid now. A process that has exited but is not
    /// reaped yet accepts (and ignores) signals, as with `kill(2)`.
    pub fn send_signal(&self, signal: i32) -> Result<(), Error> {
        let pid = self.pid;
        self.send_raw(signal).map_err(|source| {
            if is_esrch(&source) {
                Error::NoSuchProcess { pid }
            } else {
                Error::SignalProcess {
                    pid,
                    signal,
                    source,
                }
            }
        })
    }

    /// Whether the process has exited (zombie or reaped). Does not block.
    pub fn is_exited(&self) -> Result<bool, Error> {
        self.wait_exited(Instant::now())
    }

    /// Waits until the process has exited or `deadline` passes, and returns
    /// whether it has exited. Blocks in poll(2) on the descriptor (no
    /// polling loop); never reaps.
    pub fn wait_exited(&self, deadline: Instant) -> Result<bool, Error> {
        sys::poll_readable(&[self.fd.as_fd()], deadline).map_err(|source| Error::Wait {
            pid: self.pid,
            source,
        })
    }

    /// `pidfd_send_signal` with the raw error, for the crate's own callers
    /// that sort ESRCH from other errors themselves.
    pub(crate) fn send_raw(&self, signal: i32) -> io::Result<()> {
        sys::pidfd_send_signal(self.fd.as_fd(), signal)
    }

    /// Signals the process group the process leads, through the pidfd
    /// (Linux 6.9+); `Ok(false)` where the kernel cannot.
    pub(crate) fn signal_group_raw(&self, signal: i32) -> io::Result<bool> {
        sys::pidfd_signal_group(self.fd.as_fd(), signal)
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Pidfd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A pidfd for `pid`, `None` when the process is gone or the kernel has no
/// pidfd: for callers that check the identity themselves afterwards.
pub(crate) fn open_if_there(pid: u32) -> Result<Option<Pidfd>, Error> {
    match Pidfd::open(pid) {
        Ok(pidfd) => Ok(pidfd),
        Err(Error::NoSuchProcess { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}
