//! Our own child process: waiting with a deadline, reaping, terminating.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::Error;
use crate::procfs::ProcessIdentity;
use crate::signal::{Target, Termination};
use crate::sys::{self, WaitResult};

/// How a process ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ExitStatus {
    /// The exit code, if it exited normally.
    pub code: Option<i32>,
    /// The signal that killed it, if a signal did.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Decodes a `waitpid` status.
    pub(crate) fn from_raw(status: libc::c_int) -> Self {
        if libc::WIFEXITED(status) {
            ExitStatus {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
            }
        } else if libc::WIFSIGNALED(status) {
            ExitStatus {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
            }
        } else {
            ExitStatus::UNKNOWN
        }
    }

    /// Neither code nor signal: the process was reaped by someone else (for
    /// example [`try_reap`] on the same pid), so its status is lost.
    pub const UNKNOWN: ExitStatus = ExitStatus {
        code: None,
        signal: None,
    };

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit status {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("exit status unknown"),
        }
    }
}

/// A child started by [`spawn_detached`](crate::spawn_detached).
///
/// Dropping it neither kills nor waits for the process: the process keeps
/// running, and if the caller keeps running too it stays our child until it
/// exits, when it remains a zombie until something reaps it (this `Child`,
/// [`try_reap`], or our own exit).
#[derive(Debug)]
pub struct Child {
    identity: ProcessIdentity,
    /// Opened right after spawn, so it refers to this process for sure.
    /// `None` where the kernel has no pidfd.
    pidfd: Option<OwnedFd>,
    /// Set once reaped.
    status: Option<ExitStatus>,
}

impl Child {
    pub(crate) fn new(identity: ProcessIdentity, pidfd: Option<OwnedFd>) -> Self {
        Child {
            identity,
            pidfd,
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.identity.pid
    }

    /// The identity, captured right after the spawn. Store it to find and
    /// signal the process safely from another process later.
    pub fn identity(&self) -> &ProcessIdentity {
        &self.identity
    }

    /// The exit status if the child has exited (reaping it), `None` if it is
    /// still running. Does not block. After the child has been reaped, keeps
    /// returning the same status.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let pid = self.identity.pid;
        match sys::waitpid_nohang(pid).map_err(|source| Error::Wait { pid, source })? {
            WaitResult::Exited(status) => self.status = Some(status),
            WaitResult::Running => {}
            // Someone reaped it behind our back: gone, status unknown.
            WaitResult::NotChild => self.status = Some(ExitStatus::UNKNOWN),
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the child to exit and reaps it. `None` when
    /// it is still running at the deadline. Blocks on the child's pidfd (no
    /// polling loop); where there is no pidfd, checks with short sleeps.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, Error> {
        let deadline = sys::deadline_after(Instant::now(), timeout);
        let pid = self.identity.pid;
        let mut step = sys::BACKOFF_START;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match &self.pidfd {
                Some(fd) => {
                    sys::poll_readable(&[fd.as_fd()], deadline)
                        .map_err(|source| Error::Wait { pid, source })?;
                }
                None => sys::backoff_sleep(&mut step, deadline),
            }
        }
    }

    /// Terminates the child's whole process group like
    /// [`terminate`](crate::terminate) and reaps the child; its exit status
    /// is then available from [`try_wait`](Self::try_wait).
    ///
    /// Blocks for at most `grace` plus 10 s after SIGKILL. Until the child
    /// is reaped its group id cannot go to another group, so unlike
    /// [`terminate`](crate::terminate) this signals the group with
    /// `kill(-pgid)` where the kernel's pidfd cannot address a group.
    pub fn terminate(&mut self, grace: Duration) -> Result<Termination, Error> {
        let mut target = Target {
            identity: &self.identity,
            pidfd: self.pidfd.as_ref().map(|fd| fd.as_fd()),
            own_status: Some(&mut self.status),
        };
        target.terminate(grace)
    }
}

/// Reaps `pid` if it is an exited child of ours (`waitpid(WNOHANG)`) and
/// returns its status; `None` when it is still running, not our child, or
/// already reaped. A [`Child`] for the same process then reports
/// [`ExitStatus::UNKNOWN`].
pub fn try_reap(pid: u32) -> Option<ExitStatus> {
    match sys::waitpid_nohang(pid) {
        Ok(WaitResult::Exited(status)) => Some(status),
        _ => None,
    }
}
