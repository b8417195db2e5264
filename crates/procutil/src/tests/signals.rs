//! Signal handling through the self-pipe. These tests change process-wide
//! dispositions, so each uses a signal of its own that the test harness
//! does not use, and restores it.

use std::time::{Duration, Instant};

use super::support::*;
use crate::signals::{Signals, ignore_interrupts};
use crate::watch::{Watch, WatchEvent};
use crate::{Error, SpawnSpec, spawn_detached};

const WAIT: Duration = Duration::from_secs(30);

fn raise(signal: i32) {
    // SAFETY: raising a signal whose handler the test installed.
    assert_eq!(unsafe { libc::raise(signal) }, 0);
}

/// The current handler of `signal`.
fn disposition(signal: i32) -> libc::sighandler_t {
    // SAFETY: querying only; the out pointer is valid.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut action), 0);
        action.sa_sigaction
    }
}

#[test]
fn a_raised_signal_is_read_flagged_and_the_old_handler_comes_back() {
    let signal = libc::SIGUSR1;
    let before = disposition(signal);
    let signals = Signals::install(&[signal, signal]).unwrap();
    assert_eq!(signals.signals(), [signal]);
    assert_ne!(disposition(signal), before);
    let flag = signals.flag();
    assert!(!flag.is_set() && !signals.is_set());
    assert_eq!(signals.try_next(), None);
    let started = Instant::now();
    assert_eq!(signals.wait(started + Duration::from_millis(20)), None);
    assert!(started.elapsed() >= Duration::from_millis(20));

    assert_eq!(signals.arrived(), None);
    raise(signal);
    raise(signal);
    assert!(flag.is_set() && signals.is_set());
    // Asking which one arrived leaves both bytes in the pipe.
    assert_eq!(signals.arrived(), Some(signal));
    assert_eq!(flag.arrived(), Some(signal));
    assert_eq!(signals.wait(Instant::now() + WAIT), Some(signal));
    assert_eq!(signals.try_next(), Some(signal));
    assert_eq!(signals.try_next(), None);
    assert!(flag.is_set(), "stays set once read");

    drop(signals);
    assert_eq!(disposition(signal), before);
    assert!(flag.is_set(), "a flag outlives its Signals");
}

#[test]
fn a_signal_from_another_thread_wakes_a_watch() {
    let signal = libc::SIGURG;
    let signals = Signals::install(&[signal]).unwrap();
    let mut watch = Watch::new();
    let token = watch.add_fd(&signals).unwrap();
    let sender = std::thread::spawn(move || {
        // SAFETY: a process-directed signal to ourselves; it has a handler.
        unsafe { libc::kill(libc::getpid(), signal) };
    });
    assert_eq!(
        watch.wait(Instant::now() + WAIT).unwrap(),
        WatchEvent::Readable { token }
    );
    sender.join().unwrap();
    assert_eq!(signals.try_next(), Some(signal));
}

#[test]
fn refused_signals_and_one_handler_per_signal() {
    for signal in [0, -1, 65, libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV] {
        match Signals::install(&[signal]) {
            Err(Error::SignalHandler { signal: s, .. }) => assert_eq!(s, signal),
            other => panic!("signal {signal}: {other:?}"),
        }
    }
    let signal = libc::SIGVTALRM;
    let first = Signals::install(&[signal]).unwrap();
    let err = Signals::install(&[signal]).unwrap_err();
    assert!(err.to_string().contains("another Signals"), "{err}");
    drop(first);
    let again = Signals::install(&[signal]).unwrap();
    drop(again);
}

/// Exec resets caught signals to their default, and spawn_detached resets
/// everything: a child never runs our handler.
///
/// Each child reads its own /proc status once it runs and reports it on a
/// FIFO. The parent cannot look for itself right after the spawn: a spawn
/// returns before the kernel has finished loading the program (std's
/// posix_spawn as soon as the child's old memory is released, a fork and
/// exec once the close-on-exec descriptors are closed), so /proc may still
/// show an empty command line then (this test failed that way about one run
/// in three while it did).
#[test]
fn children_do_not_inherit_the_handler() {
    setup();
    let signal = libc::SIGWINCH;
    let _signals = Signals::install(&[signal]).unwrap();
    assert_ne!(
        signal_mask("self", "SigCgt") & signal_bit(signal),
        0,
        "precondition: caught here"
    );
    // `$$` is the shell itself, the program the spawn ran; one write, so
    // that the reader never sees the FIFO closed before the line ends.
    const REPORT: &str =
        r#"{ grep -E '^Sig(Ign|Cgt):' /proc/$$/status | tr '\n' ' '; echo; } > "$1""#;

    let fifo = Fifo::new();
    let spec = SpawnSpec::new("sh")
        .args(["-c", REPORT, "sh"])
        .arg(fifo.path());
    let detached = ChildGuard(spawn_detached(&spec).unwrap());
    let detached_report = fifo.read_line();
    assert!(detached.wait_timeout(WAIT).unwrap().unwrap().success());

    let fifo = Fifo::new();
    // Not inheriting our stdout: a child that outlived a failed test would
    // keep the pipe of whoever reads the test output open.
    let mut plain = std::process::Command::new("sh")
        .args(["-c", REPORT, "sh"])
        .arg(fifo.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let plain_report = fifo.read_line();
    assert!(plain.wait().unwrap().success());

    for report in [detached_report, plain_report] {
        for field in ["SigCgt", "SigIgn"] {
            assert_eq!(
                reported_mask(&report, field) & signal_bit(signal),
                0,
                "{field} in {report:?}"
            );
        }
    }
}

/// A mask from a line of `Name:\thex` pairs.
fn reported_mask(report: &str, name: &str) -> u64 {
    let mut words = report.split_whitespace();
    let label = format!("{name}:");
    words
        .by_ref()
        .find(|word| *word == label)
        .unwrap_or_else(|| panic!("no {name} in {report:?}"));
    let hex = words
        .next()
        .unwrap_or_else(|| panic!("{name} without a value"));
    u64::from_str_radix(hex, 16).unwrap()
}

const IGNORE_CHILD_VAR: &str = "PROCUTIL_TEST_IGNORE_INTERRUPTS";

/// Runs in a child process (this test binary again): ignoring SIGINT in the
/// test process itself would outlive the test.
#[test]
fn ignore_interrupts_ignores_sigint_and_sigquit() {
    if std::env::var_os(IGNORE_CHILD_VAR).is_some() {
        ignore_interrupts().unwrap();
        for signal in [libc::SIGINT, libc::SIGQUIT] {
            assert_ne!(signal_mask("self", "SigIgn") & signal_bit(signal), 0);
            raise(signal);
        }
        println!("survived");
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::signals::ignore_interrupts_ignores_sigint_and_sigquit",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IGNORE_CHILD_VAR, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("survived"),
        "{:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
