//! Signalling and terminating a process group after verifying its leader's
//! identity, and waiting for a process to be gone.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Error;
use crate::child::{self, ExitStatus};
use crate::pidfd::{Pidfd, open_if_there};
use crate::procfs::{GroupMember, Liveness, ProcessIdentity, read_stat, scan_group};
use crate::sys::{self, is_esrch};

/// How long to wait for processes to disappear after SIGKILL. They only
/// outlive it when stuck in the kernel (state D).
const KILL_WAIT: Duration = Duration::from_secs(10);

#[cfg(test)]
thread_local! {
    /// Runs once, at the start of the next sweep in this thread (after the
    /// leader has exited): lets a test change the world at that moment.
    pub(crate) static BEFORE_SWEEP: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(None) };
}

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
/// When no member is left, nothing more is sent. Children of ours, the leader
/// or group members, are reaped. (If the leader is a [`Child`](crate::Child)
/// of ours, prefer [`Child::terminate`](crate::Child::terminate): after this
/// function reaped it, the `Child` can only report [`ExitStatus::UNKNOWN`].)
///
/// The group is signalled through the leader's pidfd where the kernel can
/// address a group with it (Linux 6.9+). Elsewhere, unless the leader is a
/// `Child` not yet reaped (then `kill(-pgid)`), the leader and each member
/// are signalled one by one, each through a pidfd opened before checking
/// that it is in the group: a leader reaped by its own parent frees its
/// group id once no member is left, and a group that gets the id must not be
/// hit. See [`signal_group`] for what that costs.
///
/// Blocks for at most `grace` plus 10 s after SIGKILL (one wait shared by the
/// leader and its group), which only matters for a process stuck in the
/// kernel: [`Error::StillRunning`] or [`Error::GroupSurvivors`] then.
/// Refuses ([`Error::Protected`]) pid 1 and the caller's own process group,
/// and ([`Error::NotGroupLeader`]) a process that does not lead its group.
pub fn terminate(identity: &ProcessIdentity, grace: Duration) -> Result<Termination, Error> {
    let pidfd = open_if_there(identity.pid)?;
    let target = Target {
        identity,
        pidfd: pidfd.as_ref(),
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
///
/// Where the kernel cannot address a group through a pidfd (before Linux
/// 6.9), the leader (through its pidfd) and each other member (through a
/// pidfd opened before checking that it is in the group) are signalled one
/// by one, so that no other process is hit even if the leader exits and its
/// pid is reused meanwhile. Unlike `kill(-pgid)` that is not atomic: a
/// process a member forks meanwhile may not get the signal. Without pidfd
/// support at all (before Linux 5.3) each process is signalled by pid right
/// after that check.
pub fn signal_group(identity: &ProcessIdentity, signal: i32) -> Result<(), Error> {
    let pid = identity.pid;
    protect(pid)?;
    let pidfd = open_if_there(pid)?;
    let target = Target {
        identity,
        pidfd: pidfd.as_ref(),
        own_status: None,
    };
    match identity.check()? {
        Liveness::Alive(stat) if stat.pgrp != pid => Err(Error::NotGroupLeader {
            pid,
            pgid: stat.pgrp,
        }),
        Liveness::Alive(_) => match target.signal_group(signal)? {
            true => Ok(()),
            false => Err(Error::NoSuchProcess { pid }),
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
    let deadline = sys::deadline_after(Instant::now(), timeout);
    let pidfd = open_if_there(identity.pid)?;
    let target = Target {
        identity,
        pidfd: pidfd.as_ref(),
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
    target.reap_leader(deadline)?;
    Ok(true)
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
    pub pidfd: Option<&'a Pidfd>,
    /// For our own [`Child`](crate::Child): the lock under which it is
    /// reaped and where its exit status goes (`Some(status)` once reaped).
    /// Another thread may reap it at any time through the `Child`.
    pub own_status: Option<&'a Mutex<Option<ExitStatus>>>,
}

impl Target<'_> {
    fn pid(&self) -> u32 {
        self.identity.pid
    }

    fn own_already_reaped(&self) -> bool {
        self.own_status
            .is_some_and(|slot| child::lock(slot).is_some())
    }

    /// For our own child that another process reaped through its pid: the
    /// status is lost (unless a thread of ours reaped it meanwhile).
    fn own_reaped_elsewhere(&self) {
        if let Some(slot) = self.own_status {
            child::lock(slot).get_or_insert(ExitStatus::UNKNOWN);
        }
    }

    pub(crate) fn terminate(&self, grace: Duration) -> Result<Termination, Error> {
        let grace_deadline = sys::deadline_after(Instant::now(), grace);
        // SIGKILL goes out when the grace period ends (to the group, or to
        // what the leader left behind), so every wait after it ends here.
        let kill_deadline = sys::deadline_after(grace_deadline, KILL_WAIT);
        let pid = self.pid();
        protect(pid)?;

        if self.own_already_reaped() {
            // Reaped before this call, maybe long ago: the group may have
            // emptied and its id gone to another group since. Only a pidfd
            // that can address the group still names it for sure.
            if self.pidfd_addresses_group() {
                self.sweep_group(grace_deadline, kill_deadline, SweepFrom::Start)?;
            }
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
                // Exited but not reaped: the identity matched, so clean up
                // what it left. Its parent may reap it at any moment (unless
                // that is us, through a Child), so the sweep relies on the
                // zombie reserving the group id only when we hold it.
                self.sweep_group(grace_deadline, kill_deadline, SweepFrom::Start)?;
                self.reap_leader(kill_deadline)?;
                return Ok(Termination::AlreadyGone);
            }
            Liveness::Gone | Liveness::Mismatch(_) => {
                // Our child, reaped by another thread through the Child, or
                // by someone else through its pid (and the pid may be
                // another child of ours by now).
                self.own_reaped_elsewhere();
                return Ok(Termination::AlreadyGone);
            }
        }

        self.send_term()?;
        let outcome = if self.wait_leader_exit(grace_deadline)? {
            Termination::ExitedOnTerm
        } else {
            self.send(libc::SIGKILL)?;
            if !self.wait_leader_exit(kill_deadline)? {
                return Err(Error::StillRunning {
                    pid,
                    waited: KILL_WAIT,
                });
            }
            Termination::Killed
        };
        // The leader has exited. Our own child is reaped only after the
        // sweep, so that its zombie keeps the group id reserved meanwhile.
        self.sweep_group(grace_deadline, kill_deadline, SweepFrom::TermSent)?;
        self.reap_leader(kill_deadline)?;
        Ok(outcome)
    }

    /// Whether the pidfd can address the group (Linux 6.9+) and the group
    /// still has a process in it.
    fn pidfd_addresses_group(&self) -> bool {
        // Signal 0 sends nothing; ESRCH: no process left in the group.
        self.pidfd
            .is_some_and(|fd| matches!(fd.signal_group_raw(0), Ok(true)))
    }

    /// SIGTERM to the group, then SIGCONT so that stopped members can act on
    /// it (errors of the latter are ignored: it only helps).
    fn send_term(&self) -> Result<(), Error> {
        self.send(libc::SIGTERM)?;
        let _ = self.signal_group(libc::SIGCONT);
        Ok(())
    }

    /// Signals the group; nobody being there to receive it is fine.
    fn send(&self, signal: i32) -> Result<(), Error> {
        self.signal_group(signal).map(|_| ())
    }

    /// Sends `signal` to the group by the surest route there is, and returns
    /// whether any process was there to receive it:
    /// - through the leader's pidfd with the group flag (Linux 6.9+), which
    ///   names this very group even after the leader was reaped;
    /// - `kill(-pgid)` while we hold the leader, our child, unreaped: until
    ///   we reap it, neither its pid nor its group id can go to another
    ///   process, and reaping waits for the lock held meanwhile;
    /// - otherwise to the leader and each member one by one
    ///   ([`signal_each`](Self::signal_each)): once another parent has reaped
    ///   the leader and the last member is gone, the group id is free, and
    ///   `kill(-pgid)` could reach a group that was given it.
    fn signal_group(&self, signal: i32) -> Result<bool, Error> {
        let pgid = self.pid();
        let failed = |source| Error::Signal {
            pgid,
            signal,
            source,
        };
        if let Some(fd) = self.pidfd {
            match fd.signal_group_raw(signal) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(err) if is_esrch(&err) => return Ok(false),
                Err(err) => return Err(failed(err)),
            }
        }
        if let Some(slot) = self.own_status {
            let status = child::lock(slot);
            if status.is_none() {
                return delivered(sys::kill_group(pgid, signal)).map_err(failed);
            }
        }
        self.signal_each(signal)
    }

    /// Signals the leader and every other running member of its group one by
    /// one. The leader through its pidfd (opened before its identity was
    /// verified), without one by pid if it is still the identified process
    /// and running; every other member as [`signal_member`] does, and none
    /// when the group id has gone to another group
    /// ([`scan_own_group`](Self::scan_own_group)).
    ///
    /// Unlike a group signal this is not atomic: a process forked meanwhile
    /// is missed, which is why the SIGKILL phase of a sweep repeats it at
    /// every look until no member runs. Like `kill(-pgid)`, it succeeds when
    /// any process received the signal.
    fn signal_each(&self, signal: i32) -> Result<bool, Error> {
        let pgid = self.pid();
        let failed = |source| Error::Signal {
            pgid,
            signal,
            source,
        };
        let mut sent_any = match self.pidfd {
            Some(fd) => delivered(fd.send_raw(signal)).map_err(failed)?,
            None => match self.identity.check()? {
                Liveness::Alive(_) => delivered(sys::kill_process(pgid, signal)).map_err(failed)?,
                _ => false,
            },
        };
        let mut first_error = None;
        for member in self.scan_own_group()? {
            if member.pid == pgid || member.dead {
                continue;
            }
            match signal_member(member.pid, pgid, signal) {
                Ok(sent) => sent_any |= sent,
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) if !sent_any => Err(failed(err)),
            _ => Ok(sent_any),
        }
    }

    /// After the leader has exited: gives the remaining members what is left
    /// of the grace period after SIGTERM, then SIGKILL and until
    /// `kill_deadline` to be gone, reaping the members that are our children.
    /// Sends nothing once no member is left.
    fn sweep_group(
        &self,
        grace_deadline: Instant,
        kill_deadline: Instant,
        from: SweepFrom,
    ) -> Result<(), Error> {
        #[cfg(test)]
        if let Some(hook) = BEFORE_SWEEP.take() {
            hook();
        }
        if let Some(fd) = self.pidfd
            && fd.signal_group_raw(0).is_err_and(|err| is_esrch(&err))
        {
            // The kernel knows the group flag and the group is empty.
            return Ok(());
        }
        if from == SweepFrom::Start {
            self.send_term()?;
        }
        if self.wait_members(grace_deadline, false)?.is_empty() {
            return Ok(());
        }
        let survivors = self.wait_members(kill_deadline, true)?;
        if survivors.is_empty() {
            Ok(())
        } else {
            Err(Error::GroupSurvivors {
                pgid: self.pid(),
                pids: survivors,
                waited: KILL_WAIT,
            })
        }
    }

    /// Waits until no member of the group runs (zombies do not count) or the
    /// deadline passes, reaping members that are our children on the way
    /// (all but the leader, which [`reap_leader`](Self::reap_leader) reaps).
    /// With `kill`, SIGKILLs the group at every look while a member runs, so
    /// that signalling member by member also catches what a member forked
    /// just before it died. Returns the members still running at the
    /// deadline.
    fn wait_members(&self, deadline: Instant, kill: bool) -> Result<Vec<u32>, Error> {
        let pgid = self.pid();
        let mut step = sys::BACKOFF_START;
        loop {
            let (running, foreign_zombies) = self.reap_dead_members()?;
            if running.is_empty() {
                if foreign_zombies {
                    // Once nothing runs, every exit (and with it every handing
                    // over of orphaned zombies to us as their subreaper) is
                    // complete; one more pass reaps zombies that this scan saw
                    // under their old parent.
                    self.reap_dead_members()?;
                }
                return Ok(running);
            }
            if kill {
                self.send(libc::SIGKILL)?;
            }
            if Instant::now() >= deadline {
                return Ok(running);
            }
            let pidfds: Vec<Pidfd> = running
                .iter()
                .filter_map(|&pid| Pidfd::open(pid).ok().flatten())
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

    /// Every process in the leader's group, zombies included; none when the
    /// group id has been given to another group.
    ///
    /// The kernel gives a pid to a new process only once nothing uses it any
    /// more, neither as a process id nor as a group or session id. So while
    /// the group has a member, no other process can have the leader's pid;
    /// one that has it means that the group emptied and its id was reused.
    /// It is told apart from the leader by its start time or, within the
    /// same clock tick, by running while the leader's pidfd says the leader
    /// has exited. What this cannot see is a group that took the id and whose
    /// own leader is gone too, leaving members: that takes the original group
    /// to empty, the pid allocator (which hands out every other free pid
    /// before it comes back to one) to return to the id, and a whole process
    /// life, all between the leader's exit (or the previous scan) and this
    /// one.
    fn scan_own_group(&self) -> Result<Vec<GroupMember>, Error> {
        let pgid = self.pid();
        let members = scan_group(pgid)?;
        // Both looked at after the scan, so that a takeover before it shows;
        // the pidfd first, so that a running process seen after it is not
        // the leader if the leader had exited.
        let leader_exited = self.pidfd.is_some_and(|fd| fd.is_exited().unwrap_or(false));
        let taken_over = match read_stat(pgid) {
            Ok(stat) => {
                stat.start_time != self.identity.start_time || (leader_exited && !stat.is_dead())
            }
            Err(Error::NoSuchProcess { .. }) => false,
            Err(other) => return Err(other),
        };
        Ok(if taken_over { Vec::new() } else { members })
    }

    /// Reaps the zombies in the group that are our children, except the
    /// leader, and returns the members still running, and whether zombies of
    /// other parents were seen. Each zombie is reaped by its own pid: a
    /// zombie's pid cannot be reused until it is reaped.
    fn reap_dead_members(&self) -> Result<(Vec<u32>, bool), Error> {
        let own_pid = sys::own_pid();
        let mut running = Vec::new();
        let mut foreign_zombies = false;
        for member in self.scan_own_group()? {
            if !member.dead {
                running.push(member.pid);
            } else if member.pid == self.pid() {
                // The leader: reap_leader reaps it.
            } else if member.ppid == own_pid {
                let _ = sys::waitpid_nohang(member.pid);
            } else {
                foreign_zombies = true;
            }
        }
        Ok((running, foreign_zombies))
    }

    /// Whether the leader has exited (zombie or reaped). Never reaps: our own
    /// child's zombie keeps the group id reserved until
    /// [`reap_leader`](Self::reap_leader) (or another thread waiting on the
    /// `Child`) reaps it.
    fn leader_exited(&self) -> Result<bool, Error> {
        if self.own_already_reaped() {
            return Ok(true);
        }
        if let Some(fd) = self.pidfd {
            return fd.is_exited();
        }
        match self.identity.check()? {
            Liveness::Alive(_) => Ok(false),
            Liveness::Zombie => Ok(true),
            Liveness::Gone | Liveness::Mismatch(_) => {
                // Our child, reaped by another thread or by someone else.
                self.own_reaped_elsewhere();
                Ok(true)
            }
        }
    }

    /// Waits until the leader has exited or the deadline passes.
    pub(crate) fn wait_leader_exit(&self, deadline: Instant) -> Result<bool, Error> {
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
                    fd.wait_exited(deadline)?;
                }
                None => sys::backoff_sleep(&mut step, deadline),
            }
        }
    }

    /// Reaps the exited leader if it is our child. An exited child is
    /// waitable at once; retrying up to `deadline` only guards against
    /// surprises (a tracer that holds on to it).
    pub(crate) fn reap_leader(&self, deadline: Instant) -> Result<(), Error> {
        let pid = self.pid();
        match self.own_status {
            Some(slot) => {
                let mut step = sys::BACKOFF_START;
                loop {
                    {
                        let mut status = child::lock(slot);
                        if status.is_none() {
                            *status = child::reap_now(self.identity, self.pidfd)?;
                        }
                        if status.is_some() {
                            return Ok(());
                        }
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::StillRunning {
                            pid,
                            waited: KILL_WAIT,
                        });
                    }
                    // Not under the lock: other threads may wait meanwhile.
                    sys::backoff_sleep(&mut step, deadline);
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

/// Whether a signal reached a process: `Ok(false)` for ESRCH (nobody there).
fn delivered(sent: io::Result<()>) -> io::Result<bool> {
    match sent {
        Ok(()) => Ok(true),
        Err(err) if is_esrch(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Sends `signal` to process `pid` if it is a running member of group
/// `pgid`, and returns whether it did.
///
/// The membership is checked after a pidfd for `pid` is open. If the pid was
/// reused before the pidfd was opened, the check is about the new process,
/// which then has to be in the group itself; if after, the pidfd's process
/// has been reaped and the signal fails with ESRCH. Either way no process
/// outside the group is hit. Without pidfd support `kill(pid)` follows the
/// check, which narrows that window but cannot close it.
fn signal_member(pid: u32, pgid: u32, signal: i32) -> io::Result<bool> {
    let pidfd = match Pidfd::open(pid) {
        Ok(fd) => fd,
        Err(Error::NoSuchProcess { .. }) => return Ok(false),
        Err(Error::Pidfd { source, .. }) => return Err(source),
        Err(other) => return Err(io::Error::other(other.to_string())),
    };
    if !read_stat(pid).is_ok_and(|stat| stat.pgrp == pgid && !stat.is_dead()) {
        return Ok(false);
    }
    delivered(match &pidfd {
        Some(fd) => fd.send_raw(signal),
        None => sys::kill_process(pid, signal),
    })
}
