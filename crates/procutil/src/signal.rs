//! Signalling and terminating a process group after verifying its leader's
//! identity, and waiting for a process to be gone.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::Error;
use crate::child::ExitStatus;
use crate::procfs::{Liveness, ProcessIdentity, scan_group};
use crate::sys::{self, WaitResult, is_esrch};

/// How long to wait for processes to disappear after SIGKILL. They only
/// outlive it when stuck in the kernel (state D).
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What [`terminate`] had to do.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Termination {
    /// The process had already exited (or its pid now belongs to another
    /// process); nothing was sent to it.
    AlreadyGone,
    /// It exited within the grace period after SIGTERM.
    ExitedOnTerm,
    /// It outlived the grace period and was killed with SIGKILL.
    Killed,
}

/// Terminates the process group led by the identified process: SIGTERM (and
/// SIGCONT, so that stopped members can act on it) to the group, up to
/// `grace` for the leader to exit, then SIGKILL to the group and a bounded
/// wait for the leader to be gone.
///
/// The identity is verified first. If the process is gone, or its pid now
/// belongs to another process (another start time or boot), nothing is
/// signalled and the result is [`Termination::AlreadyGone`]: the identified
/// process no longer exists. Use [`signal_group`] to tell a reused pid apart
/// ([`Error::IdentityMismatch`]).
///
/// Once the leader is gone, group members it left behind (grandchildren)
/// get what remains of `grace` and then SIGKILL too, and the call waits until
/// none of them runs any more; this happens only when the identity matched at
/// the start (also when the leader had already exited but was not reaped).
/// Children of ours, the leader or group members, are reaped. (If the
/// leader is a [`Child`](crate::Child) of ours, prefer
/// [`Child::terminate`](crate::Child::terminate): after this function reaped
/// it, the `Child` can only report [`ExitStatus::UNKNOWN`].)
///
/// Blocks for at most `grace` plus two bounded waits after SIGKILL (10 s
/// each), which only matter for a process stuck in the kernel:
/// [`Error::StillRunning`] or [`Error::GroupSurvivors`] then.
/// Refuses ([`Error::Protected`]) pid 1 and the caller's own process group,
/// and ([`Error::NotGroupLeader`]) a process that does not lead its group.
pub fn terminate(identity: &ProcessIdentity, grace: Duration) -> Result<Termination, Error> {
    let pidfd = open_pidfd(identity.pid)?;
    let mut target = Target {
        identity,
        pidfd: pidfd.as_ref().map(|fd| fd.as_fd()),
        own_status: None,
    };
    target.terminate(grace)
}

/// Sends `signal` to the process group led by the identified process, after
/// verifying that the leader is still that process and is running.
///
/// Fails with [`Error::NoSuchProcess`] when it has exited, with
/// [`Error::IdentityMismatch`] when its pid now belongs to another process,
/// and with [`Error::NotGroupLeader`] or [`Error::Protected`] as
/// [`terminate`] does; in all these cases nothing is signalled. Signal 0
/// checks that the group exists without sending anything.
pub fn signal_group(identity: &ProcessIdentity, signal: i32) -> Result<(), Error> {
    let pid = identity.pid;
    protect(pid)?;
    let pidfd = open_pidfd(pid)?;
    let target = Target {
        identity,
        pidfd: pidfd.as_ref().map(|fd| fd.as_fd()),
        own_status: None,
    };
    match identity.check()? {
        Liveness::Alive(stat) if stat.pgrp != pid => Err(Error::NotGroupLeader {
            pid,
            pgid: stat.pgrp,
        }),
        Liveness::Alive(_) => match target.signal_group(signal) {
            Ok(()) => Ok(()),
            Err(err) if is_esrch(&err) => Err(Error::NoSuchProcess { pid }),
            Err(source) => Err(Error::Signal {
                pgid: pid,
                signal,
                source,
            }),
        },
        Liveness::Zombie | Liveness::Gone => Err(Error::NoSuchProcess { pid }),
        Liveness::Mismatch(detail) => Err(Error::IdentityMismatch { pid, detail }),
    }
}

/// Waits up to `timeout` for the identified process to be gone and reaps it
/// if it is our child. `Ok(true)` when it is gone (also when it already was,
/// or its pid now belongs to another process), `Ok(false)` at the deadline.
///
/// Blocks on a pidfd (no polling loop); where the kernel has no pidfd, checks
/// with short sleeps. Waits for the process only, not its group.
pub fn wait_gone(identity: &ProcessIdentity, timeout: Duration) -> Result<bool, Error> {
    let deadline = Instant::now() + timeout;
    let pidfd = open_pidfd(identity.pid)?;
    let mut target = Target {
        identity,
        pidfd: pidfd.as_ref().map(|fd| fd.as_fd()),
        own_status: None,
    };
    // The pidfd (if any) was opened before this check, so when the check
    // matches, the pidfd refers to the identified process.
    match identity.check()? {
        Liveness::Gone | Liveness::Mismatch(_) => return Ok(true),
        Liveness::Zombie | Liveness::Alive(_) => {}
    }
    if !target.wait_leader_exit(deadline)? {
        return Ok(false);
    }
    target.reap_leader()?;
    Ok(true)
}

/// A pidfd for `pid`, `None` when the process is gone (the identity check
/// that follows reports that) or the kernel has no pidfd.
fn open_pidfd(pid: u32) -> Result<Option<OwnedFd>, Error> {
    match sys::pidfd_open(pid) {
        Ok(fd) => Ok(fd),
        Err(err) if is_esrch(&err) || err.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(source) => Err(Error::Wait { pid, source }),
    }
}

/// Signalling the group with the pid of init (kill(-1) means "everyone") or
/// our own group would be a disaster whatever the identity says.
fn protect(pid: u32) -> Result<(), Error> {
    if pid <= 1 || libc::pid_t::try_from(pid).is_err() {
        return Err(Error::Protected {
            pid,
            reason: "it is init or not a valid process id",
        });
    }
    if pid == sys::own_process_group() {
        return Err(Error::Protected {
            pid,
            reason: "it is the caller's own process group",
        });
    }
    Ok(())
}

/// Whether the group members still need SIGTERM when the sweep begins.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SweepFrom {
    /// The leader was found gone: nothing has been sent yet.
    Start,
    /// SIGTERM went to the whole group with the leader.
    TermSent,
}

/// A process group leader to terminate or wait for.
pub(crate) struct Target<'a> {
    pub identity: &'a ProcessIdentity,
    /// Opened before the identity was verified (or right after spawn), so it
    /// refers to the identified process if the check matched.
    pub pidfd: Option<BorrowedFd<'a>>,
    /// For our own [`Child`](crate::Child): where its exit status goes once
    /// reaped (`Some(status)` when already reaped).
    pub own_status: Option<&'a mut Option<ExitStatus>>,
}

impl Target<'_> {
    fn pid(&self) -> u32 {
        self.identity.pid
    }

    fn own_already_reaped(&self) -> bool {
        matches!(&self.own_status, Some(slot) if slot.is_some())
    }

    pub(crate) fn terminate(&mut self, grace: Duration) -> Result<Termination, Error> {
        let start = Instant::now();
        let grace_deadline = start + grace;
        let pid = self.pid();
        protect(pid)?;

        if self.own_already_reaped() {
            // Reaped earlier: the pid may be reused, so only a pidfd (which
            // still names the original group) may address the group.
            self.sweep_group(grace_deadline, SweepFrom::Start, false)?;
            return Ok(Termination::AlreadyGone);
        }
        match self.identity.check()? {
            Liveness::Alive(stat) if stat.pgrp != pid => {
                return Err(Error::NotGroupLeader {
                    pid,
                    pgid: stat.pgrp,
                });
            }
            Liveness::Alive(_) => {}
            Liveness::Zombie => {
                // Exited but not reaped: the identity matched and the zombie
                // keeps the group id reserved, so clean up what it left.
                self.sweep_group(grace_deadline, SweepFrom::Start, true)?;
                self.reap_leader()?;
                return Ok(Termination::AlreadyGone);
            }
            Liveness::Gone | Liveness::Mismatch(_) => {
                if let Some(slot) = &mut self.own_status {
                    // Our child, reaped by someone else through its pid (and
                    // the pid may be another child of ours by now).
                    **slot = Some(ExitStatus::UNKNOWN);
                }
                return Ok(Termination::AlreadyGone);
            }
        }

        self.send_term()?;
        let outcome = if self.wait_leader_exit(grace_deadline)? {
            Termination::ExitedOnTerm
        } else {
            self.send(libc::SIGKILL)?;
            if !self.wait_leader_exit(Instant::now() + KILL_WAIT)? {
                return Err(Error::StillRunning {
                    pid,
                    waited: KILL_WAIT,
                });
            }
            Termination::Killed
        };
        // The leader has exited; sweep before reaping it, while its zombie
        // still keeps the group id from being reused.
        self.sweep_group(grace_deadline, SweepFrom::TermSent, true)?;
        self.reap_leader()?;
        Ok(outcome)
    }

    /// SIGTERM to the group, then SIGCONT so that stopped members can act on
    /// it (errors of the latter are ignored: it only helps).
    fn send_term(&self) -> Result<(), Error> {
        self.send(libc::SIGTERM)?;
        let _ = self.signal_group(libc::SIGCONT);
        Ok(())
    }

    /// Signals the group; the group being empty (ESRCH) is fine.
    fn send(&self, signal: i32) -> Result<(), Error> {
        match self.signal_group(signal) {
            Ok(()) => Ok(()),
            Err(err) if is_esrch(&err) => Ok(()),
            Err(source) => Err(Error::Signal {
                pgid: self.pid(),
                signal,
                source,
            }),
        }
    }

    /// Through the pidfd where the kernel can address the group with it
    /// (Linux 6.9+), which cannot hit a reused pid; else `kill(-pgid)`.
    fn signal_group(&self, signal: i32) -> io::Result<()> {
        if let Some(fd) = self.pidfd
            && sys::pidfd_signal_group(fd, signal)?
        {
            return Ok(());
        }
        sys::kill_group(self.pid(), signal)
    }

    /// After the leader has exited: gives the remaining members what is left
    /// of the grace period after SIGTERM, SIGKILLs the group, waits until no
    /// member runs and reaps the members that are our children.
    /// `kill_fallback` allows `kill(-pgid)` when the pidfd cannot address the
    /// group.
    fn sweep_group(
        &mut self,
        grace_deadline: Instant,
        from: SweepFrom,
        kill_fallback: bool,
    ) -> Result<(), Error> {
        let pgid = self.pid();
        let can_address_group = match self.pidfd {
            Some(fd) => match sys::pidfd_signal_group(fd, 0) {
                Ok(supported) => supported,
                // ESRCH: no process left in the group, not even a zombie.
                Err(err) if is_esrch(&err) => return Ok(()),
                Err(_) => false,
            },
            None => false,
        };
        if !can_address_group && !kill_fallback {
            return Ok(());
        }
        if from == SweepFrom::Start {
            self.send_term()?;
        }
        wait_members(pgid, grace_deadline)?;
        self.send(libc::SIGKILL)?;
        let survivors = wait_members(pgid, Instant::now() + KILL_WAIT)?;
        if survivors.is_empty() {
            Ok(())
        } else {
            Err(Error::GroupSurvivors {
                pgid,
                pids: survivors,
                waited: KILL_WAIT,
            })
        }
    }

    /// Whether the leader has exited (zombie or reaped). Does not reap when
    /// there is a pidfd, so that the zombie keeps the group id reserved.
    fn leader_exited(&mut self) -> Result<bool, Error> {
        let pid = self.pid();
        if self.own_already_reaped() {
            return Ok(true);
        }
        if let Some(fd) = self.pidfd {
            return sys::poll_readable(&[fd], Instant::now())
                .map_err(|source| Error::Wait { pid, source });
        }
        match &mut self.own_status {
            Some(slot) => {
                match sys::waitpid_nohang(pid).map_err(|source| Error::Wait { pid, source })? {
                    WaitResult::Exited(status) => {
                        **slot = Some(status);
                        Ok(true)
                    }
                    WaitResult::Running => Ok(false),
                    WaitResult::NotChild => {
                        **slot = Some(ExitStatus::UNKNOWN);
                        Ok(true)
                    }
                }
            }
            None => Ok(!matches!(self.identity.check()?, Liveness::Alive(_))),
        }
    }

    /// Waits until the leader has exited or the deadline passes.
    pub(crate) fn wait_leader_exit(&mut self, deadline: Instant) -> Result<bool, Error> {
        let pid = self.pid();
        let mut step = sys::BACKOFF_START;
        loop {
            if self.leader_exited()? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            match self.pidfd {
                Some(fd) => {
                    sys::poll_readable(&[fd], deadline)
                        .map_err(|source| Error::Wait { pid, source })?;
                }
                None => sys::backoff_sleep(&mut step, deadline),
            }
        }
    }

    /// Reaps the exited leader if it is our child.
    pub(crate) fn reap_leader(&mut self) -> Result<(), Error> {
        let pid = self.pid();
        match &mut self.own_status {
            Some(slot) => {
                if slot.is_some() {
                    return Ok(());
                }
                // Our exited child is waitable as soon as its pidfd is
                // readable; the loop only guards against surprises.
                let deadline = Instant::now() + KILL_WAIT;
                let mut step = sys::BACKOFF_START;
                loop {
                    match sys::waitpid_nohang(pid).map_err(|source| Error::Wait { pid, source })? {
                        WaitResult::Exited(status) => {
                            **slot = Some(status);
                            return Ok(());
                        }
                        WaitResult::NotChild => {
                            **slot = Some(ExitStatus::UNKNOWN);
                            return Ok(());
                        }
                        WaitResult::Running if Instant::now() >= deadline => {
                            return Err(Error::StillRunning {
                                pid,
                                waited: KILL_WAIT,
                            });
                        }
                        WaitResult::Running => sys::backoff_sleep(&mut step, deadline),
                    }
                }
            }
            None => {
                // Only a zombie that is still the identified process may be
                // reaped through its pid: a reused pid may be another child
                // of ours.
                if matches!(self.identity.check()?, Liveness::Zombie) {
                    let _ = sys::waitpid_nohang(pid);
                }
                Ok(())
            }
        }
    }
}

/// Waits until no member of group `pgid` runs (zombies do not count) or the
/// deadline passes, reaping members that are our children on the way (all but
/// the leader, which the caller reaps). Returns the members still running at
/// the deadline.
fn wait_members(pgid: u32, deadline: Instant) -> Result<Vec<u32>, Error> {
    let mut step = sys::BACKOFF_START;
    loop {
        let (running, foreign_zombies) = reap_dead_members(pgid)?;
        if running.is_empty() {
            if foreign_zombies {
                // Once nothing runs, every exit (and with it every handing
                // over of orphaned zombies to us as their subreaper) is
                // complete; one more pass reaps zombies that this scan saw
                // under their old parent.
                reap_dead_members(pgid)?;
            }
            return Ok(running);
        }
        if Instant::now() >= deadline {
            return Ok(running);
        }
        let pidfds: Vec<OwnedFd> = running
            .iter()
            .filter_map(|&pid| sys::pidfd_open(pid).ok().flatten())
            .collect();
        if pidfds.len() == running.len() {
            // Wakes when any member exits; then look again.
            let fds: Vec<BorrowedFd<'_>> = pidfds.iter().map(|fd| fd.as_fd()).collect();
            sys::poll_readable(&fds, deadline)
                .map_err(|source| Error::Wait { pid: pgid, source })?;
        } else {
            // No pidfd support, or a member exited while we looked.
            sys::backoff_sleep(&mut step, deadline);
        }
    }
}

/// Reaps the zombies in group `pgid` that are our children, except the
/// leader, and returns the members still running, and whether zombies of
/// other parents were seen. Each zombie is reaped by its own pid: a zombie's
/// pid cannot be reused until it is reaped.
fn reap_dead_members(pgid: u32) -> Result<(Vec<u32>, bool), Error> {
    let own_pid = sys::own_pid();
    let mut running = Vec::new();
    let mut foreign_zombies = false;
    for member in scan_group(pgid)? {
        if !member.dead {
            running.push(member.pid);
        } else if member.pid == pgid {
            // The leader: the caller reaps it.
        } else if member.ppid == own_pid {
            let _ = sys::waitpid_nohang(member.pid);
        } else {
            foreign_zombies = true;
        }
    }
    Ok((running, foreign_zombies))
}
