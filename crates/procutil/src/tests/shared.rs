//! A `Child` shared between threads: waiting in one while another signals,
//! many waiters at once, and no signal after the reap.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::support::*;
use crate::{Child, Error, SpawnSpec, Termination, spawn_detached};

const WAIT: Duration = Duration::from_secs(30);

fn sleeper() -> Arc<Child> {
    Arc::new(spawn_detached(&SpawnSpec::new("sleep").arg("1000")).unwrap())
}

/// Ends the group when the test is over, also when it failed.
struct Cleanup(Arc<Child>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.terminate(Duration::ZERO);
    }
}

/// One thread blocks in `wait_timeout(10 s)` while another terminates the
/// child: both return at once, with the same status; so does `try_wait`.
#[test]
fn a_waiter_and_a_terminator_agree() {
    setup();
    waiter_and_terminator();
}

/// The same without pidfd support: the waiter checks with short sleeps and
/// the terminator signals the group by pid under the reaping lock.
#[test]
fn a_waiter_and_a_terminator_agree_without_pidfd() {
    setup();
    crate::sys::NO_PIDFD.set(true);
    waiter_and_terminator();
}

fn waiter_and_terminator() {
    let child = sleeper();
    let _cleanup = Cleanup(Arc::clone(&child));
    let ready = Arc::new(Barrier::new(2));
    let waiter = {
        let (child, ready) = (Arc::clone(&child), Arc::clone(&ready));
        std::thread::spawn(move || {
            ready.wait();
            let started = Instant::now();
            let status = child.wait_timeout(Duration::from_secs(10));
            (status, started.elapsed())
        })
    };
    ready.wait();
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
    let (status, waited) = waiter.join().unwrap();
    let status = status.unwrap().expect("the waiter saw the exit");
    assert_eq!(status.signal, Some(libc::SIGTERM));
    assert!(
        waited < Duration::from_secs(5),
        "the waiter was not woken by the exit ({waited:?})"
    );
    assert_eq!(child.try_wait().unwrap(), Some(status));
    assert_eq!(child.wait_timeout(Duration::ZERO).unwrap(), Some(status));
    assert_no_zombie(child.identity());
}

/// Many threads wait at once (and others poll with try_wait) while the
/// child is killed: every one gets the same status, none an error.
#[test]
fn many_waiters_get_the_same_status() {
    setup();
    let child = sleeper();
    let _cleanup = Cleanup(Arc::clone(&child));
    let threads = 8;
    let ready = Arc::new(Barrier::new(threads + 1));
    let waiters: Vec<_> = (0..threads)
        .map(|i| {
            let (child, ready) = (Arc::clone(&child), Arc::clone(&ready));
            std::thread::spawn(move || {
                ready.wait();
                if i % 2 == 0 {
                    child.wait_timeout(WAIT).unwrap()
                } else {
                    let deadline = Instant::now() + WAIT;
                    loop {
                        if let Some(status) = child.try_wait().unwrap() {
                            break Some(status);
                        }
                        if Instant::now() >= deadline {
                            break None;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    ready.wait();
    child.kill().unwrap();
    let statuses: Vec<_> = waiters.into_iter().map(|t| t.join().unwrap()).collect();
    let expected = child.try_wait().unwrap().expect("reaped");
    assert_eq!(expected.signal, Some(libc::SIGKILL));
    assert!(
        statuses.iter().all(|s| *s == Some(expected)),
        "{statuses:?}"
    );
    assert_no_zombie(child.identity());
}

/// A signal reaches the running child; once reaped, every signal is
/// refused as gone.
#[test]
fn signals_reach_a_running_child_and_not_a_reaped_one() {
    setup();
    signal_running_then_reaped();
}

#[test]
fn signals_reach_a_running_child_and_not_a_reaped_one_without_pidfd() {
    setup();
    crate::sys::NO_PIDFD.set(true);
    signal_running_then_reaped();
}

fn signal_running_then_reaped() {
    let child = sleeper();
    let _cleanup = Cleanup(Arc::clone(&child));
    child.signal(0).unwrap();
    child.signal(libc::SIGTERM).unwrap();
    let status = child.wait_timeout(WAIT).unwrap().unwrap();
    assert_eq!(status.signal, Some(libc::SIGTERM));
    for signal in [0, libc::SIGKILL] {
        let err = child.signal(signal).unwrap_err();
        assert!(matches!(err, Error::NoSuchProcess { .. }), "{err:?}");
        assert!(err.is_gone());
    }
    assert!(child.kill().unwrap_err().is_gone());
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::AlreadyGone);
}

/// After the reap, the pid may go to another process: a signal through the
/// `Child` must not reach it. (The pid is taken with clone3's `set_tid`,
/// which needs CAP_SYS_ADMIN.)
#[test]
fn a_signal_after_the_reap_never_hits_the_reused_pid() {
    setup();
    signal_after_reuse();
}

#[test]
fn a_signal_after_the_reap_never_hits_the_reused_pid_without_pidfd() {
    setup();
    crate::sys::NO_PIDFD.set(true);
    signal_after_reuse();
}

fn signal_after_reuse() {
    if !can_choose_pids() {
        eprintln!("SKIPPED: choosing a pid (clone3 set_tid) needs CAP_SYS_ADMIN");
        return;
    }
    let child = spawn_detached(&SpawnSpec::new("true")).unwrap();
    assert!(child.wait_timeout(WAIT).unwrap().unwrap().success());
    let taker = match PidTaker::spawn(child.pid()) {
        Ok(taker) => taker,
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
            eprintln!("SKIPPED: the pid was reused by someone else first");
            return;
        }
        Err(err) => panic!("clone3 with set_tid: {err}"),
    };
    assert!(taker.is_running());
    for signal in [libc::SIGKILL, libc::SIGTERM, 0] {
        assert!(child.signal(signal).unwrap_err().is_gone());
    }
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::AlreadyGone);
    assert!(taker.is_running(), "the process that got the pid was hit");
}
