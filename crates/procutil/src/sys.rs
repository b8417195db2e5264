//! Thin wrappers around the system calls this crate needs, with the Linux
//! specific ones (pidfd) reduced to `None` elsewhere.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::ExitStatus;

#[cfg(test)]
thread_local! {
    /// Lets a test run the fallback paths of a kernel without pidfd, in its
    /// own thread only.
    pub(crate) static NO_PIDFD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Lets a test run the paths of a kernel whose pidfd cannot address a
    /// process group (before Linux 6.9), in its own thread only.
    pub(crate) static NO_PIDFD_GROUP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `pidfd_send_signal` flag (Linux 6.9): signal the process group whose id is
/// the pidfd's process, even after that process has been reaped.
#[cfg(target_os = "linux")]
const PIDFD_SIGNAL_PROCESS_GROUP: libc::c_uint = 1 << 2;

/// Opens a pidfd for `pid`: the only `pidfd_open` call in ocm; everything
/// else goes through [`Pidfd`](crate::Pidfd). `Ok(None)` when the kernel has
/// no pidfd support (or this is not Linux); `Err` with `ESRCH` when there is
/// no such process.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<Option<OwnedFd>> {
    #[cfg(test)]
    if NO_PIDFD.get() {
        return Ok(None);
    }
    #[cfg(target_os = "linux")]
    {
        let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        };
        // SAFETY: plain system call with integer arguments.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0 as libc::c_uint) };
        if fd >= 0 {
            let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("bad pidfd"))?;
            // SAFETY: the kernel just gave us this descriptor and nothing else owns it.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => Ok(None),
            _ => Err(err),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Ok(None)
    }
}

/// Sends `signal` to every process of the group led by the pidfd's process.
/// `Ok(false)` when the kernel does not know the group flag (before 6.9):
/// the caller has to find another way.
pub(crate) fn pidfd_signal_group(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<bool> {
    #[cfg(test)]
    if NO_PIDFD_GROUP.get() {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    {
        match pidfd_send_signal_flags(pidfd, signal, PIDFD_SIGNAL_PROCESS_GROUP) {
            Ok(()) => Ok(true),
            Err(err) if matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (pidfd.as_raw_fd(), signal);
        Ok(false)
    }
}

/// Sends `signal` to the pidfd's process alone; `ESRCH` once it has been
/// reaped, whatever process has its pid by now.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        pidfd_send_signal_flags(pidfd, signal, 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Unreachable: there are no pidfds without Linux.
        let _ = (pidfd.as_raw_fd(), signal);
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

#[cfg(target_os = "linux")]
fn pidfd_send_signal_flags(
    pidfd: BorrowedFd<'_>,
    signal: i32,
    flags: libc::c_uint,
) -> io::Result<()> {
    // SAFETY: plain system call; a null siginfo is allowed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `kill(pid, signal)`, for a single process, where there is no pidfd. The
/// caller has made sure `pid` is > 0.
pub(crate) fn kill_process(pid: u32, signal: i32) -> io::Result<()> {
    let raw = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&raw| raw > 0)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: plain system call with integer arguments.
    if unsafe { libc::kill(raw, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `kill(-pgid, signal)`. The caller has made sure `pgid` is > 1 and that
/// the group id cannot have been given to another group (we hold its leader,
/// our child, unreaped).
pub(crate) fn kill_group(pgid: u32, signal: i32) -> io::Result<()> {
    let raw = libc::pid_t::try_from(pgid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: plain system call with integer arguments.
    if unsafe { libc::kill(-raw, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits until one of `fds` is readable (a pidfd: its process has exited)
/// or the deadline passes. Returns whether one became readable.
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], deadline: Instant) -> io::Result<bool> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    poll_until(&mut pollfds, deadline)
}

/// poll(2) on `pollfds` until one has an event (`revents` set) or the
/// deadline passes; restarted on EINTR with the time that is left. Returns
/// whether any has an event. With no descriptors, sleeps to the deadline.
pub(crate) fn poll_until(pollfds: &mut [libc::pollfd], deadline: Instant) -> io::Result<bool> {
    loop {
        let timeout_ms = poll_timeout_ms(deadline.saturating_duration_since(Instant::now()));
        let nfds = libc::nfds_t::try_from(pollfds.len()).unwrap_or(libc::nfds_t::MAX);
        // SAFETY: pollfds is a valid array of nfds entries for the duration of the call.
        let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), nfds, timeout_ms) };
        if rc > 0 {
            return Ok(true);
        }
        if rc == 0 {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            continue;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Milliseconds for poll(2), rounded up so that a wait never ends just
/// before its deadline and spins.
fn poll_timeout_ms(remaining: Duration) -> libc::c_int {
    let ms = remaining.as_nanos().div_ceil(1_000_000);
    libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
}

/// What `waitpid(pid, WNOHANG)` found.
#[derive(Debug)]
pub(crate) enum WaitResult {
    /// The child has exited and is now reaped.
    Exited(ExitStatus),
    /// The child is still running.
    Running,
    /// Not our child (or already reaped).
    NotChild,
}

/// `waitpid(pid, WNOHANG)`, restarted on EINTR. Anything but a positive pid
/// (which would mean "any child" or "a group") counts as not our child.
pub(crate) fn waitpid_nohang(pid: u32) -> io::Result<WaitResult> {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Ok(WaitResult::NotChild);
    };
    if raw <= 0 {
        return Ok(WaitResult::NotChild);
    }
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: status is a valid out pointer.
        let rc = unsafe { libc::waitpid(raw, &mut status, libc::WNOHANG) };
        if rc > 0 {
            return Ok(WaitResult::Exited(ExitStatus::from_raw(status)));
        }
        if rc == 0 {
            return Ok(WaitResult::Running);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(WaitResult::NotChild),
            _ => return Err(err),
        }
    }
}

/// Reaps the child if it has exited, like [`waitpid_nohang`], but through
/// its pidfd where there is one (`waitid(P_PIDFD)`, Linux 5.4+): that reaps
/// exactly the pidfd's process, never another child of ours that got its
/// pid after someone else reaped it. Falls back to the pid where the kernel
/// does not know `P_PIDFD`.
pub(crate) fn waitid_nohang(pidfd: Option<BorrowedFd<'_>>, pid: u32) -> io::Result<WaitResult> {
    #[cfg(target_os = "linux")]
    if let Some(fd) = pidfd {
        let Ok(raw_fd) = libc::id_t::try_from(fd.as_raw_fd()) else {
            return waitpid_nohang(pid);
        };
        loop {
            // SAFETY: a zeroed siginfo_t is a valid value; waitid writes it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: info is a valid out pointer for the call.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    raw_fd,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG,
                )
            };
            if rc == 0 {
                // SAFETY: waitid filled in the SIGCHLD fields, or left the
                // zeroed struct (si_pid 0: still running) with WNOHANG.
                let (child, status) = unsafe { (info.si_pid(), info.si_status()) };
                if child == 0 {
                    return Ok(WaitResult::Running);
                }
                let status = match info.si_code {
                    libc::CLD_EXITED => ExitStatus {
                        code: Some(status),
                        signal: None,
                    },
                    libc::CLD_KILLED | libc::CLD_DUMPED => ExitStatus {
                        code: None,
                        signal: Some(status),
                    },
                    _ => ExitStatus::UNKNOWN,
                };
                return Ok(WaitResult::Exited(status));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(WaitResult::NotChild),
                // Linux 5.3: pidfds, but waitid does not know them yet.
                Some(libc::EINVAL) => return waitpid_nohang(pid),
                _ => return Err(err),
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pidfd;
    waitpid_nohang(pid)
}

/// Whether a pid-based system call failed because the process (or group) is
/// gone.
pub(crate) fn is_esrch(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ESRCH)
}

/// Our own process group.
pub(crate) fn own_process_group() -> u32 {
    // SAFETY: getpgrp cannot fail.
    let pgid = unsafe { libc::getpgrp() };
    u32::try_from(pgid).unwrap_or(0)
}

/// Our own pid.
pub(crate) fn own_pid() -> u32 {
    std::process::id()
}

/// Sleeps for the fallback polling where no pidfd is available: short at
/// first, then longer, never past the deadline.
pub(crate) fn backoff_sleep(step: &mut Duration, deadline: Instant) {
    let remaining = deadline.saturating_duration_since(Instant::now());
    std::thread::sleep((*step).min(remaining));
    *step = (*step * 2).min(Duration::from_millis(50));
}

/// `timeout` after `start`; a timeout too large for an [`Instant`] means a
/// century, which is as good as never.
pub(crate) fn deadline_after(start: Instant, timeout: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    start
        .checked_add(timeout)
        .or_else(|| start.checked_add(CENTURY))
        .unwrap_or(start)
}

/// The first fallback sleep step.
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(1);
