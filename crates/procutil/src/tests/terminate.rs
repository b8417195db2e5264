//! terminate, signal_group and wait_gone against real process groups.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::support::*;
use crate::procfs::read_stat;
use crate::{
    Error, Pidfd, ProcessIdentity, SpawnSpec, Termination, process_group_members, signal_group,
    spawn_detached, terminate, wait_gone,
};

const WAIT: Duration = Duration::from_secs(30);

/// A leader that ignores SIGTERM, with a grandchild that inherits that.
const TERM_IGNORING_GROUP: &str = r#"trap "" TERM; sleep 1000 & echo $! > "$1"; wait"#;
/// A leader with a grandchild in its group.
const LEADER_AND_GRANDCHILD: &str = r#"sleep 1000 & echo $! > "$1"; wait"#;
/// A leader that exits at once and leaves a grandchild in its group.
const LEADER_LEAVING_A_GRANDCHILD: &str = r#"sleep 1000 & echo $! > "$1""#;
/// A leader whose grandchild ignores SIGTERM (and reports only once it does).
const GRANDCHILD_IGNORING_TERM: &str =
    r#"(trap "" TERM; exec sh -c 'echo $$ > "$1"; exec sleep 1000' inner "$1") & wait"#;
/// A shell whose child leads a session and group of its own: a group
/// leader that is not our child, reaped by the shell when it exits.
const SETSID_CHILD: &str = r#"setsid sh -c 'echo $$ > "$1"; exec sleep 1000' inner "$1" & wait"#;

/// Spawns `sh -c script` with a FIFO's path as `$1` (and `more_args` after
/// it), and returns it with the process whose pid the script writes to the
/// FIFO, which is SIGKILLed on drop if the test leaves it running.
fn spawn_reporting(script: &str, more_args: &[&str]) -> (ChildGuard, ProcessIdentity, KillOnDrop) {
    let fifo = Fifo::new();
    let spec = SpawnSpec::new("sh")
        .args(["-c", script, "sh"])
        .arg(fifo.path())
        .args(more_args);
    let child = ChildGuard(spawn_detached(&spec).unwrap());
    let reported = ProcessIdentity::of(fifo.read_pid()).unwrap();
    let cleanup = KillOnDrop(reported.clone());
    (child, reported, cleanup)
}

/// A leader that ignores SIGTERM and a grandchild that ignores it too (the
/// shell's `trap "" TERM` is inherited): both must die by SIGKILL.
#[test]
fn terminate_kills_a_term_ignoring_leader_and_its_grandchild() {
    setup();
    let (child, grandchild, _cleanup) = spawn_reporting(TERM_IGNORING_GROUP, &[]);
    let leader = child.pid();

    // Preconditions that make the test mean something.
    assert_eq!(read_stat(grandchild.pid).unwrap().pgrp, leader);
    assert_ne!(
        signal_mask(&leader.to_string(), "SigIgn") & signal_bit(libc::SIGTERM),
        0,
        "the leader ignores SIGTERM"
    );
    let mut members = process_group_members(leader).unwrap();
    members.sort_unstable();
    let mut expected = vec![leader, grandchild.pid];
    expected.sort_unstable();
    assert_eq!(members, expected);

    let outcome = child.terminate(Duration::from_millis(200)).unwrap();
    assert_eq!(outcome, Termination::Killed);
    let status = child.try_wait().unwrap().unwrap();
    assert_eq!(status.signal, Some(libc::SIGKILL), "{status}");
    assert!(!grandchild.is_alive(), "the grandchild survived");
    assert!(process_group_members(leader).unwrap().is_empty());
    assert_no_zombie(child.identity());
    assert_no_zombie(&grandchild);
}

/// The leader exits on SIGTERM but leaves a grandchild that ignores it: the
/// sweep after the leader is gone must kill the grandchild. Uses the free
/// function, as a process that did not spawn the leader would.
#[test]
fn terminate_sweeps_a_grandchild_the_leader_left_behind() {
    setup();
    let (child, grandchild, _cleanup) = spawn_reporting(GRANDCHILD_IGNORING_TERM, &[]);
    let leader = child.identity().clone();
    assert_eq!(read_stat(grandchild.pid).unwrap().pgrp, leader.pid);
    assert_ne!(
        signal_mask(&grandchild.pid.to_string(), "SigIgn") & signal_bit(libc::SIGTERM),
        0,
        "precondition: the grandchild ignores SIGTERM"
    );

    let outcome = terminate(&leader, Duration::from_secs(2)).unwrap();
    assert_eq!(outcome, Termination::ExitedOnTerm);
    assert!(!leader.is_alive());
    assert!(!grandchild.is_alive(), "the grandchild survived the sweep");
    assert_no_zombie(&leader);
    assert_no_zombie(&grandchild);
    // The free function reaped our child, so the Child no longer knows how
    // it ended.
    assert_eq!(child.try_wait().unwrap(), Some(crate::ExitStatus::UNKNOWN));
}

/// An identity whose start time (or boot) differs from the process that now
/// has the pid must not lead to any signal. The target is stopped first, so
/// that any signal sent to it would stay pending and show in /proc.
#[test]
fn a_pid_with_another_start_time_is_never_signalled() {
    setup();
    let child = ChildGuard(spawn_detached(&SpawnSpec::new("sleep").arg("1000")).unwrap());
    let real = child.identity().clone();
    let pid = real.pid.to_string();

    signal_group(&real, libc::SIGSTOP).unwrap();
    let mut status = 0;
    // SAFETY: waits for our own child to stop (SIGSTOP cannot be ignored).
    let rc = unsafe { libc::waitpid(raw(real.pid), &mut status, libc::WUNTRACED) };
    assert_eq!(rc, raw(real.pid));
    assert!(libc::WIFSTOPPED(status));

    let forged_start = ProcessIdentity {
        start_time: real.start_time + 1,
        ..real.clone()
    };
    let forged_boot = ProcessIdentity {
        boot_id: "00000000-0000-0000-0000-000000000000".to_string(),
        ..real.clone()
    };
    for forged in [&forged_start, &forged_boot] {
        let err = signal_group(forged, libc::SIGTERM).unwrap_err();
        assert!(matches!(err, Error::IdentityMismatch { .. }), "{err:?}");
        assert!(err.is_gone());
        assert!(err.to_string().contains(&pid), "{err}");
        assert_eq!(
            terminate(forged, Duration::ZERO).unwrap(),
            Termination::AlreadyGone
        );
        assert!(wait_gone(forged, Duration::ZERO).unwrap());
    }

    // Still there, still stopped, and nothing pending.
    assert!(real.is_alive());
    assert_eq!(read_stat(real.pid).unwrap().state, 'T');
    assert_eq!(signal_mask(&pid, "ShdPnd"), 0, "a signal reached it");
    assert_eq!(signal_mask(&pid, "SigPnd"), 0, "a signal reached it");

    // The same check does see a signal sent with the real identity.
    signal_group(&real, libc::SIGTERM).unwrap();
    assert_ne!(signal_mask(&pid, "ShdPnd") & signal_bit(libc::SIGTERM), 0);

    // terminate sends SIGCONT too, so the stopped process acts on SIGTERM.
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
    assert_eq!(
        child.try_wait().unwrap().unwrap().signal,
        Some(libc::SIGTERM)
    );
    assert_no_zombie(&real);
}

#[test]
fn terminate_of_an_exited_child_is_already_gone() {
    setup();
    let child = ChildGuard(spawn_detached(&SpawnSpec::new("true")).unwrap());
    let identity = child.identity().clone();
    assert!(child.wait_timeout(WAIT).unwrap().unwrap().success());
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::AlreadyGone);
    assert_eq!(
        terminate(&identity, WAIT).unwrap(),
        Termination::AlreadyGone
    );
    assert!(wait_gone(&identity, Duration::ZERO).unwrap());
    assert!(matches!(
        signal_group(&identity, 0),
        Err(Error::NoSuchProcess { .. } | Error::IdentityMismatch { .. })
    ));
    assert_eq!(child.try_wait().unwrap().unwrap().code, Some(0));
    assert_no_zombie(&identity);
}

/// A session leader we did not spawn (our grandchild, started with
/// setsid by a shell): wait_gone blocks on its pidfd, terminate works
/// without being its parent, and its real parent reaps it.
#[test]
fn wait_gone_and_terminate_on_a_process_we_did_not_spawn() {
    setup();
    let (child, other, _cleanup) = spawn_reporting(SETSID_CHILD, &[]);
    let stat = read_stat(other.pid).unwrap();
    assert_eq!(stat.ppid, child.pid(), "precondition: not our child");
    assert_eq!(stat.pgrp, other.pid, "precondition: leads its group");

    let started = Instant::now();
    assert!(!wait_gone(&other, Duration::from_millis(100)).unwrap());
    assert!(started.elapsed() >= Duration::from_millis(100));
    signal_group(&other, 0).unwrap();

    assert_eq!(terminate(&other, WAIT).unwrap(), Termination::ExitedOnTerm);
    assert!(wait_gone(&other, Duration::ZERO).unwrap());
    // The shell reaps it and then exits, its `wait` done.
    assert!(child.wait_timeout(WAIT).unwrap().is_some());
    assert_no_zombie(&other);
    assert_no_zombie(child.identity());
}

/// Through a pidfd that addresses the group, member by member where the
/// kernel's pidfd cannot (before 6.9), and by pid without pidfd support.
#[test]
fn signal_group_kills_the_group() {
    setup();
    signal_group_kills_leader_and_grandchild();
    crate::sys::NO_PIDFD_GROUP.set(true);
    signal_group_kills_leader_and_grandchild();
    crate::sys::NO_PIDFD.set(true);
    signal_group_kills_leader_and_grandchild();
}

fn signal_group_kills_leader_and_grandchild() {
    let (child, grandchild, _cleanup) = spawn_reporting(LEADER_AND_GRANDCHILD, &[]);

    signal_group(child.identity(), libc::SIGKILL).unwrap();
    let status = child.wait_timeout(WAIT).unwrap().unwrap();
    assert_eq!(status.signal, Some(libc::SIGKILL));
    assert!(wait_gone(&grandchild, WAIT).unwrap());
    assert!(!grandchild.is_alive());
}

/// Whatever an identity says, the group of init and our own group are never
/// signalled. Signal 0 keeps the test harmless even if the guard failed.
#[test]
fn signal_group_refuses_init_our_own_group_and_non_leaders() {
    setup();
    let init = ProcessIdentity::of(1).unwrap();
    assert!(matches!(
        signal_group(&init, 0),
        Err(Error::Protected { pid: 1, .. })
    ));
    assert!(matches!(
        terminate(&init, Duration::ZERO),
        Err(Error::Protected { pid: 1, .. })
    ));

    // SAFETY: getpgrp cannot fail.
    let own_group = u32::try_from(unsafe { libc::getpgrp() }).unwrap();
    if let Ok(leader) = ProcessIdentity::of(own_group) {
        let err = signal_group(&leader, 0).unwrap_err();
        assert!(matches!(err, Error::Protected { .. }), "{err:?}");
    }

    // A group member that is not its leader.
    let (child, member, _cleanup) = spawn_reporting(LEADER_AND_GRANDCHILD, &[]);
    let err = signal_group(&member, libc::SIGKILL).unwrap_err();
    assert!(
        matches!(err, Error::NotGroupLeader { pgid, .. } if pgid == child.pid()),
        "{err:?}"
    );
    let err = terminate(&member, Duration::ZERO).unwrap_err();
    assert!(matches!(err, Error::NotGroupLeader { .. }), "{err:?}");
    assert!(member.is_alive());
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
    assert!(!member.is_alive());
}

/// The leader has already exited (a zombie, not reaped) but left a member in
/// its group: terminate reports AlreadyGone and still ends the member,
/// because the identity matched.
#[test]
fn terminate_of_an_exited_unreaped_leader_ends_what_it_left() {
    setup();
    let (child, leftover, _cleanup) = spawn_reporting(LEADER_LEAVING_A_GRANDCHILD, &[]);
    let leader = child.identity().clone();
    let pidfd = Pidfd::open(leader.pid).unwrap().expect("pidfd");
    let exited = pidfd.wait_exited(Instant::now() + WAIT).unwrap();
    assert!(exited && read_stat(leader.pid).unwrap().state == 'Z');
    assert!(leftover.is_alive());

    assert_eq!(terminate(&leader, WAIT).unwrap(), Termination::AlreadyGone);
    assert!(!leftover.is_alive(), "the leftover member survived");
    assert_no_zombie(&leader);
    assert_no_zombie(&leftover);
}

/// After the Child has reaped its leader, the pid may be reused, so only a
/// pidfd may still address the group (Linux 6.9+); on older kernels the
/// member is deliberately left alone.
#[test]
fn child_terminate_after_reaping_sweeps_only_through_the_pidfd() {
    setup();
    let (child, leftover, _cleanup) = spawn_reporting(LEADER_LEAVING_A_GRANDCHILD, &[]);
    assert!(child.wait_timeout(WAIT).unwrap().unwrap().success());
    assert!(leftover.is_alive());

    assert_eq!(child.terminate(WAIT).unwrap(), Termination::AlreadyGone);
    if pidfd_can_signal_groups() {
        assert!(!leftover.is_alive(), "the leftover member survived");
        assert_no_zombie(&leftover);
    } else {
        eprintln!("kernel before 6.9: no race-free group signal after reaping");
        assert!(leftover.is_alive());
    }
}

/// Whether this kernel knows PIDFD_SIGNAL_PROCESS_GROUP: asked with signal 0
/// for the group whose id is our pid, which sends nothing. We lead no group,
/// so a kernel that knows the flag answers ESRCH; one that does not, EINVAL.
fn pidfd_can_signal_groups() -> bool {
    let me = Pidfd::open(std::process::id()).unwrap().expect("pidfd");
    match me.signal_group_raw(0) {
        Ok(known) => known,
        Err(err) => {
            assert!(crate::sys::is_esrch(&err), "{err}");
            true
        }
    }
}

/// Runs the paths for kernels without pidfd (short sleeps instead of poll,
/// `kill(-pgid)` instead of a pidfd group signal) in this thread.
#[test]
fn without_pidfd_waits_and_termination_still_work() {
    setup();
    crate::sys::NO_PIDFD.set(true);

    // Our own child: wait_timeout, then SIGKILL for a TERM-ignoring group.
    let (child, grandchild, _cleanup) = spawn_reporting(TERM_IGNORING_GROUP, &[]);
    assert_eq!(child.wait_timeout(Duration::from_millis(20)).unwrap(), None);
    assert_eq!(
        child.terminate(Duration::from_millis(100)).unwrap(),
        Termination::Killed
    );
    assert_eq!(
        child.try_wait().unwrap().unwrap().signal,
        Some(libc::SIGKILL)
    );
    assert!(!grandchild.is_alive());
    assert_no_zombie(child.identity());
    assert_no_zombie(&grandchild);

    // A process we did not spawn: wait_gone and terminate by identity.
    let (child, other, _cleanup) = spawn_reporting(SETSID_CHILD, &[]);
    assert!(!wait_gone(&other, Duration::from_millis(20)).unwrap());
    assert_eq!(terminate(&other, WAIT).unwrap(), Termination::ExitedOnTerm);
    assert!(wait_gone(&other, Duration::ZERO).unwrap());
    assert!(child.wait_timeout(WAIT).unwrap().is_some());
    assert_no_zombie(&other);
}

/// Where a pidfd cannot address a group (before Linux 6.9), a leader that
/// is not our child is reaped by its parent as soon as it exits, and with no
/// member left its pid and group id are free. A process that takes them
/// before the sweep that follows must not be signalled. (The pid is taken
/// with clone3's `set_tid`, which needs CAP_SYS_ADMIN.)
#[test]
fn the_sweep_never_signals_a_group_that_took_over_the_leaders_id() {
    setup();
    if !can_choose_pids() {
        eprintln!("SKIPPED: choosing a pid (clone3 set_tid) needs CAP_SYS_ADMIN");
        return;
    }
    crate::sys::NO_PIDFD_GROUP.set(true);
    let (parent, leader, _cleanup) = spawn_reporting(SETSID_CHILD, &[]);
    let stat = read_stat(leader.pid).unwrap();
    assert_eq!(stat.ppid, parent.pid(), "precondition: not our child");
    assert_eq!(stat.pgrp, leader.pid, "precondition: leads its group");

    let parent_exited = Pidfd::open(parent.pid()).unwrap().expect("pidfd");
    let taker = Rc::new(RefCell::new(None));
    let taker_slot = Rc::clone(&taker);
    let pid = leader.pid;
    crate::signal::BEFORE_SWEEP.set(Some(Box::new(move || {
        // The shell reaps the leader, then exits: by then the pid is free.
        let exited = parent_exited.wait_exited(Instant::now() + WAIT).unwrap();
        assert!(exited, "the leader's parent did not exit");
        let taker = PidTaker::spawn(pid).expect("clone3 with set_tid");
        assert_eq!(
            read_stat(pid).unwrap().pgrp,
            pid,
            "precondition: the taker leads the group with the leader's old id"
        );
        *taker_slot.borrow_mut() = Some(taker);
    })));

    let outcome = terminate(&leader, Duration::from_secs(5));
    let taker = taker.borrow_mut().take().expect("the sweep ran");
    assert_eq!(outcome.unwrap(), Termination::ExitedOnTerm);
    assert!(
        taker.is_running(),
        "the group that took the id was signalled"
    );
    assert!(parent.wait_timeout(WAIT).unwrap().unwrap().success());
}

/// Where a pidfd cannot address a group, a leader that is not our child
/// exits on SIGTERM and leaves a member that ignores it: the sweep kills the
/// member by itself, through the member's own pidfd, and without pidfd
/// support by pid.
#[test]
fn a_member_by_member_sweep_kills_what_a_foreign_leader_left() {
    setup();
    crate::sys::NO_PIDFD_GROUP.set(true);
    sweep_what_a_foreign_leader_left();
    crate::sys::NO_PIDFD.set(true);
    sweep_what_a_foreign_leader_left();
}

fn sweep_what_a_foreign_leader_left() {
    // The leader, started by setsid from a shell that reaps it, runs
    // GRANDCHILD_IGNORING_TERM: its member ignores SIGTERM.
    let (parent, member, _cleanup_member) = spawn_reporting(
        r#"setsid sh -c "$2" leader "$1" & wait"#,
        &[GRANDCHILD_IGNORING_TERM],
    );
    let leader = ProcessIdentity::of(read_stat(member.pid).unwrap().pgrp).unwrap();
    let _cleanup_leader = KillOnDrop(leader.clone());
    let stat = read_stat(leader.pid).unwrap();
    assert_eq!(stat.ppid, parent.pid(), "precondition: not our child");
    assert_eq!(stat.pgrp, leader.pid, "precondition: leads its group");
    assert_ne!(
        signal_mask(&member.pid.to_string(), "SigIgn") & signal_bit(libc::SIGTERM),
        0,
        "precondition: the member ignores SIGTERM"
    );

    let outcome = terminate(&leader, Duration::from_secs(1)).unwrap();
    assert_eq!(outcome, Termination::ExitedOnTerm);
    assert!(!member.is_alive(), "the member survived the sweep");
    assert!(process_group_members(leader.pid).unwrap().is_empty());
    assert!(parent.wait_timeout(WAIT).unwrap().unwrap().success());
    assert_no_zombie(&leader);
    assert_no_zombie(&member);
}

/// Without pidfd, our own child is seen to exit through /proc, which does not
/// reap it: its zombie keeps the group id reserved while `kill(-pgid)` sweeps
/// the member it left behind, and is reaped only after.
#[test]
fn without_pidfd_our_child_is_reaped_only_after_the_sweep() {
    setup();
    crate::sys::NO_PIDFD.set(true);
    let (child, member, _cleanup) = spawn_reporting(GRANDCHILD_IGNORING_TERM, &[]);
    assert_eq!(read_stat(member.pid).unwrap().pgrp, child.pid());

    let leader = child.pid();
    let state_at_sweep = Rc::new(RefCell::new(None));
    let state_slot = Rc::clone(&state_at_sweep);
    crate::signal::BEFORE_SWEEP.set(Some(Box::new(move || {
        *state_slot.borrow_mut() = Some(read_stat(leader).map(|stat| stat.state));
    })));
    let outcome = child.terminate(Duration::from_secs(1)).unwrap();
    assert_eq!(outcome, Termination::ExitedOnTerm);
    let state = state_at_sweep.borrow_mut().take().expect("the sweep ran");
    assert_eq!(state.unwrap(), 'Z', "the leader was not held as a zombie");
    assert_eq!(
        child.try_wait().unwrap().unwrap().signal,
        Some(libc::SIGTERM)
    );
    assert!(!member.is_alive(), "the member survived the sweep");
    assert_no_zombie(child.identity());
    assert_no_zombie(&member);
}

/// A timeout too large for an `Instant` means as long as it takes, not a
/// panic.
#[test]
fn huge_timeouts_wait_instead_of_panicking() {
    setup();
    let child = ChildGuard(spawn_detached(&SpawnSpec::new("true")).unwrap());
    assert!(
        child
            .wait_timeout(Duration::MAX)
            .unwrap()
            .unwrap()
            .success()
    );

    let child = ChildGuard(spawn_detached(&SpawnSpec::new("sleep").arg("1000")).unwrap());
    let identity = child.identity().clone();
    assert_eq!(
        child.terminate(Duration::MAX).unwrap(),
        Termination::ExitedOnTerm
    );
    assert!(wait_gone(&identity, Duration::MAX).unwrap());
    assert_eq!(
        terminate(&identity, Duration::MAX).unwrap(),
        Termination::AlreadyGone
    );
}
