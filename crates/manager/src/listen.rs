//! Waiting for a freshly spawned server's listening line.
//!
//! The server writes to its log file (not a pipe: a pipe would die with the
//! ocm process that started it, and the server with it on its next write).
//! The kernel tells when the file grows (inotify) and when the child exits
//! (a pidfd), so the wait sleeps in poll(2) until one of them happens.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use portmap::ListeningAddr;

use crate::logs;

/// How a wait for the listening line ended.
#[derive(Debug)]
pub enum ListenOutcome {
    /// The server printed its listening line.
    Listening(ListeningAddr),
    /// The child exited first.
    Exited,
    /// The deadline passed.
    TimedOut,
}

/// Waits until the log, read from `offset`, holds the listening line, the
/// process `pid` exits, or `deadline` passes.
pub fn wait_for_listening(log: &Path, offset: u64, pid: u32, deadline: Instant) -> ListenOutcome {
    let watch = Watch::new(log, pid);
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
        if !is_running(pid) {
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
        watch.wait(deadline - now);
    }
}

/// True while `pid` exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    procutil::ProcessIdentity::of(pid).is_ok()
}

/// An inotify watch on the log plus a pidfd on the child; either may be
/// missing (old kernels), in which case waits fall back to short sleeps.
struct Watch {
    inotify: Option<OwnedFd>,
    pidfd: Option<OwnedFd>,
}

impl Watch {
    fn new(log: &Path, pid: u32) -> Watch {
        Watch {
            inotify: inotify_on(log),
            pidfd: pidfd_open(pid),
        }
    }

    /// Sleeps until the log changes, the child exits, or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let mut fds = Vec::with_capacity(2);
        for fd in [&self.inotify, &self.pidfd].into_iter().flatten() {
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // Without both sources, wake often enough to notice the other.
        let cap = if fds.len() == 2 {
            timeout
        } else {
            Duration::from_millis(10)
        };
        let millis = timeout.min(cap).as_millis().clamp(1, i32::MAX as u128) as i32;
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(millis as u64));
            return;
        }
        // SAFETY: `fds` is a valid array of pollfd for the call's duration.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if let Some(inotify) = &self.inotify {
            // Drain the events; only the wake-up matters.
            let mut buf = [0u8; 4096];
            // SAFETY: reading into a local buffer from a non-blocking fd.
            while unsafe { libc::read(inotify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0
            {
            }
        }
    }
}

fn inotify_on(path: &Path) -> Option<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: plain syscalls; the fd is owned right after creation.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK);
        if fd < 0 {
            return None;
        }
        let owned = OwnedFd::from_raw_fd(fd);
        let mask = libc::IN_MODIFY | libc::IN_CLOSE_WRITE;
        if libc::inotify_add_watch(fd, c_path.as_ptr(), mask) < 0 {
            return None;
        }
        Some(owned)
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd was just created and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
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
        let outcome = wait_for_listening(&log, 0, pid, Instant::now() + Duration::from_secs(10));
        assert!(matches!(outcome, ListenOutcome::Exited), "{outcome:?}");

        let mut child = sleeper("30");
        let outcome = wait_for_listening(
            &log,
            0,
            child.id(),
            Instant::now() + Duration::from_millis(100),
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(matches!(outcome, ListenOutcome::TimedOut), "{outcome:?}");
    }
}
