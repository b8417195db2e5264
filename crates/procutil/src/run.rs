//! Bounded runs: a program run to completion with its output captured, its
//! whole process group killed when a deadline passes.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use std::os::fd::AsFd;

use crate::Error;
use crate::pidfd::Pidfd;
use crate::signals::Signals;
use crate::sys::{self, BACKOFF_START, backoff_sleep, deadline_after};

/// Runs `command` to completion and returns its exit status, stdout and
/// stderr, like [`Command::output`], but never for longer than `timeout`.
///
/// The program runs in a process group of its own (stdin from `/dev/null`),
/// so that everything it starts can be ended with it. The wait is a poll on
/// a pidfd with the deadline (a short sleeping loop where the kernel has no
/// pidfd). When the deadline passes, the whole group gets SIGKILL, the
/// program is reaped and the result is [`Error::TimedOut`]. When it exits in
/// time, members of its group still running (children it left behind that
/// hold its output open) get SIGKILL too, so that reading its output ends.
/// The two reader threads are always joined before this returns; a
/// descendant that left the group (`setsid`) while keeping the output open
/// would hold that join until it closes it.
///
/// ```
/// use std::process::Command;
/// use std::time::Duration;
///
/// let output = procutil::output_within(Command::new("echo").arg("hi"), Duration::from_secs(5))?;
/// assert_eq!(output.stdout, b"hi\n");
/// # Ok::<(), procutil::Error>(())
/// ```
pub fn output_within(
    command: &mut Command,
    timeout: Duration,
) -> Result<std::process::Output, Error> {
    output_within_unless(command, timeout, None)
}

/// [`output_within`], also ended early when one of `interrupts`' signals
/// arrives (Ctrl-C): the group gets SIGKILL, the program is reaped, and the
/// result is [`Error::RunInterrupted`]. The program runs in a group of its
/// own, so the terminal's Ctrl-C reaches only the caller, which decides.
pub fn output_within_unless(
    command: &mut Command,
    timeout: Duration,
    interrupts: Option<&Signals>,
) -> Result<std::process::Output, Error> {
    let start = Instant::now();
    let deadline = deadline_after(start, timeout);
    let program = PathBuf::from(command.get_program());
    let cwd = command.get_current_dir().map(PathBuf::from);
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| Error::Exec {
        program: program.clone(),
        cwd,
        source,
    })?;
    let pid = child.id();
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    // Our own unreaped child: its pid cannot go to another process yet.
    let pidfd = Pidfd::open(pid).ok().flatten();
    let interrupted = || interrupts.and_then(Signals::arrived);
    let exited = match &pidfd {
        Some(pidfd) => loop {
            let mut fds = vec![pidfd.as_fd()];
            fds.extend(interrupts.map(AsFd::as_fd));
            // Readable: the program exited or a signal arrived; which one
            // is told by the flag, which reading the pipe does not change.
            match sys::poll_readable(&fds, deadline) {
                Ok(_) if interrupted().is_some() => break Ok(false),
                Ok(false) => break Ok(false),
                Ok(true) => match pidfd.wait_exited(Instant::now()) {
                    Ok(true) => break Ok(true),
                    Ok(false) => continue,
                    Err(e) => break Err(e),
                },
                Err(source) => break Err(Error::Wait { pid, source }),
            }
        },
        None => {
            let mut step = BACKOFF_START;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break Ok(true),
                    Ok(None) if Instant::now() >= deadline || interrupted().is_some() => {
                        break Ok(false);
                    }
                    Ok(None) => backoff_sleep(&mut step, deadline),
                    Err(source) => break Err(Error::Wait { pid, source }),
                }
            }
        }
    };
    // Before the leader is reaped, its pid still names its group: the group
    // gets SIGKILL (all of it on overrun or a failed wait; what is left of
    // it otherwise).
    // ESRCH (nobody left) is the usual case after a clean exit.
    let _ = sys::kill_group(pid, libc::SIGKILL);
    let status = child.wait().map_err(|source| Error::Wait { pid, source })?;
    let stdout = stdout.map(join).unwrap_or_default();
    let stderr = stderr.map(join).unwrap_or_default();
    // A failed wait still ended the group, reaped the program and joined
    // the readers above: nothing is left behind.
    if !exited? {
        if let Some(signal) = interrupted() {
            return Err(Error::RunInterrupted { program, signal });
        }
        return Err(Error::TimedOut {
            program,
            after: start.elapsed(),
        });
    }
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

/// A thread reading `source` to its end.
fn reader<R: Read + Send + 'static>(mut source: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the capture with what was read so far.
        let _ = source.read_to_end(&mut bytes);
        bytes
    })
}

/// What a reader thread read (nothing if it panicked, which it cannot).
fn join(handle: std::thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    handle.join().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_stderr_and_status() {
        let output = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
        assert_eq!(output.status.code(), Some(3));
    }

    #[test]
    fn a_signal_ends_the_run_and_its_group() {
        let signals = Signals::install(&[libc::SIGUSR2]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let raiser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: raising a signal this process handles.
            unsafe { libc::raise(libc::SIGUSR2) };
        });
        let started = Instant::now();
        let err = output_within_unless(
            Command::new("sh").args(["-c", &script]),
            Duration::from_secs(20),
            Some(&signals),
        )
        .unwrap_err();
        raiser.join().unwrap();
        assert!(
            matches!(err, Error::RunInterrupted { signal, .. } if signal == libc::SIGUSR2),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let child: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = Instant::now() + Duration::from_secs(5);
        while crate::ProcessIdentity::of(child).is_ok_and(|id| id.is_alive()) {
            assert!(
                Instant::now() < gone,
                "sleep {child} outlived the interrupted run"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn kills_the_group_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let err = output_within(
            Command::new("sh").args(["-c", &script]),
            Duration::from_millis(200),
        )
        .unwrap_err();
        let elapsed = started.elapsed();
        match &err {
            Error::TimedOut { program, after } => {
                assert_eq!(program, &PathBuf::from("sh"));
                assert!(*after >= Duration::from_millis(200), "{after:?}");
            }
            other => panic!("expected TimedOut, got {other:?}"),
        }
        assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
        assert!(err.to_string().contains("sh"), "{err}");
        // The grandchild (`sleep 30`) is gone too: its group was killed.
        let child: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = Instant::now() + Duration::from_secs(5);
        while crate::ProcessIdentity::of(child).is_ok_and(|id| id.is_alive()) {
            assert!(Instant::now() < gone, "sleep {child} survived");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn missing_program_is_an_exec_error() {
        let err = output_within(
            &mut Command::new("/nonexistent/program"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Exec { .. }), "{err:?}");
    }
}
