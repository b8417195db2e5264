//! Our own child process, shareable between threads: waiting with a
//! deadline, reaping, signalling and terminating.

use std::fmt;
use std::os::fd::AsFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::Error;
use crate::pidfd::Pidfd;
use crate::procfs::ProcessIdentity;
use crate::signal::{Target, Termination};
use crate::sys::{self, WaitResult, is_esrch};

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
/// Every method takes `&self`, so an `Arc<Child>` can be waited on by one
/// thread while another signals or terminates it (what `std`'s `Child`,
/// whose `wait` and `kill` take `&mut self`, cannot do; the `shared_child`
/// crate solves the same problem). How that stays safe:
///
/// - A signal goes through the child's pidfd, opened right after the spawn
///   (so it refers to this process for sure). Once the child has been reaped
///   `pidfd_send_signal` fails with ESRCH, so a signal can never reach a
///   process that got the pid afterwards. Without pidfd support (before
///   Linux 5.3) the signal is sent by pid while holding the internal lock
///   under which the child is reaped, after checking it is not reaped yet.
/// - Reaping (`waitid` with `WNOHANG`, through the pidfd where the kernel
///   can) happens only under that lock, which also stores the exit status.
///   Whoever reaps, every caller then sees the same status, and no caller
///   gets a spurious "no child" error because another one reaped first.
/// - A wait never blocks while holding the lock: it sleeps in poll(2) on the
///   pidfd until the child has exited (or the deadline), then takes the lock
///   and reaps without blocking. A signaller is never stuck behind a
///   waiter, and any number of threads can wait at once. A waiter also looks
///   (under the lock) before it sleeps, so a child that exited long ago is
///   never reported running because another thread was waiting for it.
///
/// There is no unbounded wait: [`wait_timeout`](Self::wait_timeout) and
/// [`wait_deadline`](Self::wait_deadline) take a deadline.
///
/// Dropping it neither kills nor waits for the process: the process keeps
/// running, and if the caller keeps running too it stays our child until it
/// exits, when it remains a zombie until something reaps it (this `Child`,
/// [`try_reap`], or our own exit). Reaping it by pid elsewhere ([`try_reap`],
/// `waitpid(-1)`) defeats the protection against pid reuse of the pidless
/// fallback; this `Child` then reports [`ExitStatus::UNKNOWN`].
#[derive(Debug)]
pub struct Child {
    identity: ProcessIdentity,
    /// Opened right after spawn, so it refers to this process for sure.
    /// `None` where the kernel has no pidfd.
    pidfd: Option<Pidfd>,
    /// Set once reaped; the child is reaped only while this is locked.
    status: Mutex<Option<ExitStatus>>,
}

impl Child {
    pub(crate) fn new(identity: ProcessIdentity, pidfd: Option<Pidfd>) -> Self {
        Child {
            identity,
            pidfd,
            status: Mutex::new(None),
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

    /// The child's pidfd, `None` where the kernel has none: to put it in a
    /// [`Watch`](crate::watch::Watch) with other sources. It becomes
    /// readable when the child exits; reap it with [`try_wait`](Self::try_wait).
    pub fn pidfd(&self) -> Option<&Pidfd> {
        self.pidfd.as_ref()
    }

    /// The exit status if the child has exited (reaping it), `None` if it is
    /// still running. Does not block (the internal lock is only ever held
    /// for non-blocking calls). After the child has been reaped, keeps
    /// returning the same status.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>, Error> {
        let mut status = lock(&self.status);
        self.reap_locked(&mut status)
    }

    /// Waits up to `timeout` for the child to exit and reaps it. `None` when
    /// it is still running at the deadline. See
    /// [`wait_deadline`](Self::wait_deadline).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>, Error> {
        self.wait_deadline(sys::deadline_after(Instant::now(), timeout))
    }

    /// Waits until the child has exited or `deadline` passes, and reaps it.
    /// `None` when it is still running at the deadline.
    ///
    /// Blocks in poll(2) on the child's pidfd (no polling loop), without
    /// holding the lock that [`signal`](Self::signal) and other waiters
    /// need; where there is no pidfd, checks with short sleeps.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<Option<ExitStatus>, Error> {
        let mut step = sys::BACKOFF_START;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match &self.pidfd {
                // Readable but not reapable (a tracer holds on to it): do
                // not spin on the readable descriptor.
                Some(fd) if fd.wait_exited(deadline)? => {
                    if let Some(status) = self.try_wait()? {
                        return Ok(Some(status));
                    }
                    sys::backoff_sleep(&mut step, deadline);
                }
                Some(_) => {}
                None => sys::backoff_sleep(&mut step, deadline),
            }
        }
    }

    /// Sends `signal` to the child alone (not its group). Signal 0 checks
    /// that it has not been reaped.
    ///
    /// Fails with [`Error::NoSuchProcess`] once the child has been reaped
    /// (by any thread): the signal never reaches a process that got its pid
    /// since. A child that has exited but is not reaped yet accepts the
    /// signal and ignores it, as with `kill(2)`. Never blocks on a waiter.
    pub fn signal(&self, signal: i32) -> Result<(), Error> {
        let pid = self.pid();
        if let Some(fd) = &self.pidfd {
            if lock(&self.status).is_some() {
                return Err(Error::NoSuchProcess { pid });
            }
            // Not under the lock: the pidfd cannot reach another process.
            return fd.send_signal(signal);
        }
        // No pidfd: the pid is ours only while the child is not reaped, and
        // it is reaped only under this lock, which is held until the signal
        // is sent. Reaping first tells an exited child from a running one.
        let mut status = lock(&self.status);
        if self.reap_locked(&mut status)?.is_some() {
            return Err(Error::NoSuchProcess { pid });
        }
        sys::kill_process(pid, signal).map_err(|source| {
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

    /// Sends SIGKILL to the child alone; see [`signal`](Self::signal).
    /// Use [`terminate`](Self::terminate) to end its whole group.
    pub fn kill(&self) -> Result<(), Error> {
        self.signal(libc::SIGKILL)
    }

    /// Terminates the child's whole process group like
    /// [`terminate`](crate::terminate) and reaps the child; its exit status
    /// is then available from [`try_wait`](Self::try_wait).
    ///
    /// Blocks for at most `grace` plus 10 s after SIGKILL. Until the child
    /// is reaped its group id cannot go to another group, so unlike
    /// [`terminate`](crate::terminate) this signals the group with
    /// `kill(-pgid)` (under the lock, after checking the child is not
    /// reaped) where the kernel's pidfd cannot address a group. Another
    /// thread may wait for the child meanwhile; if it reaps the child first,
    /// what the leader left in its group is signalled member by member.
    pub fn terminate(&self, grace: Duration) -> Result<Termination, Error> {
        let target = Target {
            identity: &self.identity,
            pidfd: self.pidfd.as_ref(),
            own_status: Some(&self.status),
        };
        target.terminate(grace)
    }

    /// Reaps the child if it has exited; `status` is the locked slot.
    fn reap_locked(&self, status: &mut Option<ExitStatus>) -> Result<Option<ExitStatus>, Error> {
        if status.is_none() {
            *status = reap_now(&self.identity, self.pidfd.as_ref())?;
        }
        Ok(*status)
    }
}

/// `waitid(WNOHANG)` on our child: `Some` once reaped (now, or by someone
/// else, then with an unknown status). Call only under the status lock.
pub(crate) fn reap_now(
    identity: &ProcessIdentity,
    pidfd: Option<&Pidfd>,
) -> Result<Option<ExitStatus>, Error> {
    let pid = identity.pid;
    let found = sys::waitid_nohang(pidfd.map(|fd| fd.as_fd()), pid)
        .map_err(|source| Error::Wait { pid, source })?;
    Ok(match found {
        WaitResult::Exited(status) => Some(status),
        WaitResult::Running => None,
        // Someone reaped it behind our back: gone, status unknown.
        WaitResult::NotChild => Some(ExitStatus::UNKNOWN),
    })
}

/// Locks a status slot. Nothing panics while holding it, but a poisoned lock
/// still holds a valid status.
pub(crate) fn lock(status: &Mutex<Option<ExitStatus>>) -> MutexGuard<'_, Option<ExitStatus>> {
    status
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
