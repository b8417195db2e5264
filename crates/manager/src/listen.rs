//! Waiting for a freshly spawned server's listening line.
//!
//! The server writes to its log file (not a pipe: a pipe would die with the
//! ocm process that started it, and the server with it on its next write).
//! The kernel tells when the file grows (inotify) and when the child exits
//! (a pidfd), so the wait sleeps in one `procutil::watch` poll until one of
//! them happens.

use std::path::Path;
use std::time::{Duration, Instant};

use portmap::ListeningAddr;
use procutil::Pidfd;
use procutil::signals::Signals;
use procutil::watch::Watch;

use crate::logs;

/// How often to look again when the kernel cannot tell about the log or
/// the child (no inotify watch or no pidfd to be had).
const FALLBACK_PACE: Duration = Duration::from_millis(10);

/// How a wait for the listening line ended.
#[derive(Debug)]
pub enum ListenOutcome {
    /// The server printed its listening line.
    Listening(ListeningAddr),
    /// The child exited first.
    Exited,
    /// The deadline passed.
    TimedOut,
    /// An interrupt arrived.
    Interrupted,
}

/// Waits until the log, read from `offset`, holds the listening line, the
/// process `pid` (our own unreaped child, so its pid is its own) exits, or
/// `deadline` passes.
pub fn wait_for_listening(
    log: &Path,
    offset: u64,
    pid: u32,
    deadline: Instant,
    interrupt: Option<&Signals>,
) -> ListenOutcome {
    let mut watch = Watch::new();
    // An interrupt wakes the wait at once (the pipe becomes readable).
    if let Some(signals) = interrupt {
        let _ = watch.add_fd(signals);
    }
    let log_watched = watch.add_file(log).is_ok();
    let pidfd = Pidfd::open(pid).ok().flatten();
    let exit_watched = pidfd
        .as_ref()
        .is_some_and(|pidfd| watch.add_pidfd(pidfd).is_ok());
    let mut scanned = offset;
    let mut pending = String::new();
    loop {
        // Read what is new and look for the line.
        let len = logs::length(log);
        if len > scanned {
            pending.push_str(&logs::read_from(log, scanned, len - scanned));
            scanned = len;
            while let Some(newline) = pending.find('\n') {
                let line: String = pending.drain(..=newline).collect();
                if let Some(addr) = portmap::parse_listening_line(&line) {
                    return ListenOutcome::Listening(addr);
                }
            }
        }
        if interrupt.is_some_and(Signals::is_set) {
            return ListenOutcome::Interrupted;
        }
        if has_exited(pid, pidfd.as_ref()) {
            // One last look: the line may have been written just before exit.
            if let Some(addr) = portmap::parse_listening_line(pending.trim_end()) {
                return ListenOutcome::Listening(addr);
            }
            return ListenOutcome::Exited;
        }
        let now = Instant::now();
        if now >= deadline {
            return ListenOutcome::TimedOut;
        }
        // Without both sources, wake often enough to notice the other.
        let until = if log_watched && exit_watched {
            deadline
        } else {
            deadline.min(now + FALLBACK_PACE)
        };
        match watch.wait(until) {
            // Whatever it was, look at the log and the child again; the
            // events themselves are not needed.
            Ok(_) => {
                let _ = watch.drain();
            }
            Err(_) => std::thread::sleep(FALLBACK_PACE.min(until.saturating_duration_since(now))),
        }
    }
}

/// True once the child has exited (a zombie counts).
fn has_exited(pid: u32, pidfd: Option<&Pidfd>) -> bool {
    match pidfd.map(Pidfd::is_exited) {
        Some(Ok(exited)) => exited,
        _ => procutil::ProcessIdentity::of(pid).is_err(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sleeper(seconds: &str) -> std::process::Child {
        std::process::Command::new("sleep")
            .arg(seconds)
            .spawn()
            .expect("spawn sleep")
    }

    #[test]
    fn sees_a_line_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(
            &log,
            "old run: opencode server listening on http://127.0.0.1:1\n",
        )
        .unwrap();
        let offset = logs::length(&log);
        let mut child = sleeper("30");
        let writer_log = log.clone();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(writer_log)
                .unwrap();
            f.write_all(b"Warning: unsecured\nopencode server listen")
                .unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            f.write_all(b"ing on http://127.0.0.1:28123\n").unwrap();
        });
        let outcome = wait_for_listening(
            &log,
            offset,
            child.id(),
            Instant::now() + Duration::from_secs(10),
            None,
        );
        writer.join().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        match outcome {
            ListenOutcome::Listening(addr) => assert_eq!(addr.port, 28123),
            other => panic!("expected the listening line, got {other:?}"),
        }
    }

    #[test]
    fn notices_an_exit_and_a_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, "").unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let outcome =
            wait_for_listening(&log, 0, pid, Instant::now() + Duration::from_secs(10), None);
        assert!(matches!(outcome, ListenOutcome::Exited), "{outcome:?}");

        let mut child = sleeper("30");
        let outcome = wait_for_listening(
            &log,
            0,
            child.id(),
            Instant::now() + Duration::from_millis(100),
            None,
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(matches!(outcome, ListenOutcome::TimedOut), "{outcome:?}");
    }
}
