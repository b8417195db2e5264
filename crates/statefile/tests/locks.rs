//! The project lock between threads and between real processes.

mod common;

use std::fs;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::{CHILD_DEADLINE, ChildProc};
use statefile::{Error, lock, lock_unless, try_lock};

#[test]
#[ignore = "child process role, started by the other tests in this file"]
fn child_role() {
    common::child_main();
}

#[test]
fn a_waiter_that_gives_up_stops_waiting_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("servers/h/server.lock");
    let _held = lock(&path, Duration::from_secs(5)).unwrap();
    let began = Instant::now();
    let give_up_at = began + Duration::from_millis(200);
    let err = lock_unless(&path, Duration::from_secs(60), &|| {
        Instant::now() >= give_up_at
    })
    .unwrap_err();
    assert!(
        matches!(&err, Error::LockCancelled { path: p } if *p == path),
        "{err:?}"
    );
    let took = began.elapsed();
    assert!(took < Duration::from_secs(2), "gave up after {took:?}");
}

#[test]
fn a_held_lock_times_out_with_the_path_and_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("servers/h/server.lock");
    let held = lock(&path, Duration::from_secs(5)).unwrap();
    assert_eq!(held.path(), path);

    let timeout = Duration::from_millis(150);
    let err = lock(&path, timeout).unwrap_err();
    match &err {
        Error::LockTimeout { path: p, waited } => {
            assert_eq!(p, &path);
            assert!(*waited >= timeout, "gave up after {waited:?}");
        }
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(!err.is_corrupt());
    assert!(try_lock(&path).unwrap().is_none());
    // A zero timeout is one attempt.
    assert!(matches!(
        lock(&path, Duration::ZERO),
        Err(Error::LockTimeout { .. })
    ));

    drop(held);
    let again = try_lock(&path).unwrap().expect("free after drop");
    drop(again);
    lock(&path, Duration::ZERO).expect("free lock with zero timeout");
}

#[test]
fn a_waiter_gets_the_lock_when_the_holder_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.lock");
    let held = lock(&path, Duration::from_secs(5)).unwrap();
    let (tx, rx) = channel();
    let waiter = {
        let path = path.clone();
        std::thread::spawn(move || {
            tx.send("waiting").unwrap();
            let guard = lock(&path, Duration::from_secs(60));
            tx.send("acquired").unwrap();
            guard.map(|_| ())
        })
    };
    assert_eq!(rx.recv().unwrap(), "waiting");
    // While we hold it, the waiter cannot have it.
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    let released = Instant::now();
    drop(held);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)).unwrap(),
        "acquired"
    );
    println!(
        "waiter got the lock {:?} after the release",
        released.elapsed()
    );
    waiter.join().unwrap().expect("waiter locked");
}

#[test]
fn four_processes_serialize_on_one_lock() {
    let dir = tempfile::tempdir().unwrap();
    let lock_path = dir.path().join("servers/h/server.lock");
    let counter = dir.path().join("counter");
    let journal = dir.path().join("journal");
    fs::write(&counter, "0\n").unwrap();

    const PROCESSES: u64 = 4;
    const ITERATIONS: u64 = 100;
    let children: Vec<ChildProc> = (1..=PROCESSES)
        .map(|id| {
            ChildProc::spawn(
                "lock-counter",
                &[
                    ("LOCK", lock_path.display().to_string()),
                    ("COUNTER", counter.display().to_string()),
                    ("JOURNAL", journal.display().to_string()),
                    ("ID", id.to_string()),
                    ("ITER", ITERATIONS.to_string()),
                ],
            )
        })
        .collect();
    for child in children {
        let (status, output) = child.finish(CHILD_DEADLINE);
        assert!(status.success(), "child failed: {status}; {output:?}");
    }
    // No lost update of the read-modify-write counter...
    let total: u64 = fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(total, PROCESSES * ITERATIONS);
    // ...and no two critical sections overlapped: the journal is strictly
    // "B id" followed by "E id" of the same process.
    let journal = fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = journal.lines().collect();
    assert_eq!(lines.len() as u64, 2 * PROCESSES * ITERATIONS);
    let mut switches = 0;
    let mut previous_id = "";
    for pair in lines.chunks(2) {
        let begin = pair[0].strip_prefix("B ").expect("begin line");
        let end = pair[1].strip_prefix("E ").expect("end line");
        assert_eq!(begin, end, "critical sections overlapped: {pair:?}");
        if begin != previous_id {
            switches += 1;
            previous_id = begin;
        }
    }
    println!(
        "{} critical sections in {PROCESSES} processes, the lock changed hands {switches} times",
        PROCESSES * ITERATIONS
    );
}

#[test]
fn a_lock_held_by_another_process_times_out_there_with_the_right_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("servers/h/server.lock");
    let held = lock(&path, Duration::from_secs(5)).unwrap();
    let child = ChildProc::spawn(
        "lock-expect-timeout",
        &[
            ("LOCK", path.display().to_string()),
            ("TIMEOUT_MS", "200".to_string()),
        ],
    );
    let (status, output) = child.finish(CHILD_DEADLINE);
    assert!(status.success(), "child failed: {status}; {output:?}");
    let line = output
        .iter()
        .find(|l| l.contains("TIMEOUT-ERROR"))
        .expect("the child reports the error");
    assert!(line.contains(&path.display().to_string()), "{line}");
    drop(held);
}

#[test]
fn the_lock_is_released_when_its_process_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("servers/h/server.lock");
    let mut holder = ChildProc::spawn("lock-hold", &[("LOCK", path.display().to_string())]);
    holder.wait_for_line("LOCKED", CHILD_DEADLINE);
    assert!(try_lock(&path).unwrap().is_none(), "the child holds it");
    assert!(matches!(
        lock(&path, Duration::from_millis(50)),
        Err(Error::LockTimeout { .. })
    ));
    holder.kill();
    // The kernel dropped the lock with the process: free at once.
    let guard = try_lock(&path)
        .unwrap()
        .expect("free after the holder died");
    drop(guard);
}

/// 32 processes take one lock 3 times each, holding it 50 to 100 ms (a
/// command's work), all starting at once. Waiters are served in turn, so
/// nobody waits much longer than everyone else's turn once (31 holds, about
/// 2.5 s); an unfair lock lets some win again and again while others run
/// into the timeout.
#[test]
fn thirty_two_processes_are_served_in_turn() {
    const PROCESSES: u64 = 32;
    const ITERATIONS: u64 = 3;
    const HOLD_MIN_MS: u64 = 50;
    const HOLD_MAX_MS: u64 = 100;
    /// Twice the longest fair wait (31 holds of at most 100 ms).
    const TIMEOUT: Duration = Duration::from_millis(2 * 31 * HOLD_MAX_MS);

    let dir = tempfile::tempdir().unwrap();
    let lock_path = dir.path().join("servers/h/server.lock");
    let start = dir.path().join("start");
    let start_gate = fs::File::create(&start).unwrap();
    start_gate.lock().unwrap();
    let mut children: Vec<ChildProc> = (1..=PROCESSES)
        .map(|id| {
            ChildProc::spawn(
                "lock-fair",
                &[
                    ("LOCK", lock_path.display().to_string()),
                    ("START", start.display().to_string()),
                    ("ID", id.to_string()),
                    ("ITER", ITERATIONS.to_string()),
                    ("HOLD_MIN_MS", HOLD_MIN_MS.to_string()),
                    ("HOLD_MAX_MS", HOLD_MAX_MS.to_string()),
                    ("TIMEOUT_MS", TIMEOUT.as_millis().to_string()),
                ],
            )
        })
        .collect();
    for child in &mut children {
        child.wait_for_line("READY", CHILD_DEADLINE);
    }
    let began = Instant::now();
    start_gate.unlock().unwrap();
    let (mut waits, mut timeouts) = (Vec::new(), Vec::new());
    for child in children {
        let (status, output) = child.finish(CHILD_DEADLINE);
        assert!(status.success(), "child failed: {status}; {output:?}");
        for line in output {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["GOT", _, ms] => waits.push(ms.parse::<u64>().unwrap()),
                ["TIMEOUT", id, ms] => timeouts.push(format!("worker {id} after {ms} ms")),
                _ => {}
            }
        }
    }
    let total = began.elapsed();
    waits.sort_unstable();
    let longest = waits.last().copied().unwrap_or(0);
    let median = waits.get(waits.len() / 2).copied().unwrap_or(0);
    println!(
        "{} acquisitions by {PROCESSES} processes in {total:?}: longest wait {longest} ms, \
         median {median} ms, {} timeouts (timeout {TIMEOUT:?})",
        waits.len(),
        timeouts.len()
    );
    assert!(timeouts.is_empty(), "lock timeouts: {timeouts:?}");
    assert_eq!(waits.len() as u64, PROCESSES * ITERATIONS);
}

/// How many tickets (OFD locks) are held in the queue file `queue`, as
/// /proc/locks lists them (`... OFDLCK ADVISORY WRITE -1 MAJ:MIN:INODE ...`).
fn tickets_in(queue: &std::path::Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(inode) = fs::metadata(queue).map(|m| m.ino()) else {
        return 0;
    };
    let needle = format!(":{inode} ");
    fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|line| line.contains("OFDLCK") && line.contains(&needle))
        .count()
}

/// Waits until `queue` holds `n` tickets.
fn wait_for_tickets(queue: &std::path::Path, n: usize) {
    let asked = Instant::now();
    while tickets_in(queue) < n {
        assert!(asked.elapsed() < CHILD_DEADLINE, "{n} tickets never queued");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A waiter stopped (SIGSTOP) while first in the queue does not hold up the
/// waiters behind it for long: once the lock lies free with the same head,
/// the next one takes it.
#[test]
fn a_stopped_waiter_does_not_block_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("servers/h/server.lock");
    let queue = dir.path().join("servers/h/server.lock.queue");
    let held = lock(&path, Duration::from_secs(5)).unwrap();
    let waiter = |timeout_ms: u64, place: usize| {
        let child = ChildProc::spawn(
            "lock-wait",
            &[
                ("LOCK", path.display().to_string()),
                ("TIMEOUT_MS", timeout_ms.to_string()),
            ],
        );
        wait_for_tickets(&queue, place);
        child
    };
    let mut stopped = waiter(60_000, 1);
    let stopped_pid = stopped.pid() as libc::pid_t;
    // SAFETY: signalling our own unreaped child.
    assert_eq!(unsafe { libc::kill(stopped_pid, libc::SIGSTOP) }, 0);
    let mut behind = waiter(10_000, 2);
    let released = Instant::now();
    drop(held);
    let got = behind.wait_for_line("GOT", CHILD_DEADLINE);
    println!(
        "behind a stopped head: {got} ({:?} after the release)",
        released.elapsed()
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(stopped_pid, libc::SIGCONT) }, 0);
    stopped.wait_for_line("GOT", CHILD_DEADLINE);
    let (status, output) = behind.finish(CHILD_DEADLINE);
    assert!(status.success(), "{output:?}");
    let (status, output) = stopped.finish(CHILD_DEADLINE);
    assert!(status.success(), "{output:?}");
}

#[test]
fn try_lock_does_not_pass_a_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.lock");
    let queue = dir.path().join("server.lock.queue");
    let held = lock(&path, Duration::from_secs(5)).unwrap();
    let (got_tx, got) = channel();
    let (release, release_rx) = channel::<()>();
    let waiter = {
        let path = path.clone();
        std::thread::spawn(move || {
            let guard = lock(&path, Duration::from_secs(60));
            got_tx.send(()).unwrap();
            let _ = release_rx.recv();
            guard.map(drop)
        })
    };
    wait_for_tickets(&queue, 1);
    drop(held);
    // The lock may be free for a moment, but it is the waiter's turn.
    let mut passed = 0;
    while got.try_recv().is_err() {
        if try_lock(&path).unwrap().is_some() {
            passed += 1;
        }
    }
    release.send(()).unwrap();
    waiter.join().unwrap().unwrap();
    assert_eq!(passed, 0, "try_lock passed a waiter");
    assert_eq!(tickets_in(&queue), 0);
    assert!(try_lock(&path).unwrap().is_some());
}
