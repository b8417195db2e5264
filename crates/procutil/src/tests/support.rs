//! Helpers for the tests: guards that clean up processes also when a test
//! fails, a FIFO to hear from a child without sleeping, and /proc checks.

use std::ffi::CString;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::procfs::read_stat;
use crate::{Child, Pidfd, ProcessIdentity, sys};

/// Makes this test process the subreaper of everything it starts.
///
/// Without it, a grandchild orphaned by a test (and the detached child whose
/// parent exited) is handed to PID 1, and some sandboxes run a PID 1 that
/// reaps late or never, which would leave zombies no test could tell from
/// ours. As
/// subreaper, orphans come back to us, `terminate` reaps them as members of
/// the group, and "no zombie left" becomes checkable. The flag is set once,
/// before any test spawns, and never changed, so parallel tests do not race.
pub fn setup() {
    static SUBREAPER: Once = Once::new();
    SUBREAPER.call_once(|| {
        // SAFETY: plain prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(
            rc,
            0,
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        );
    });
}

/// Terminates the child's group when dropped, also when the test panicked.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.0.terminate(Duration::ZERO).is_err() && matches!(self.0.try_wait(), Ok(None)) {
            // E.g. not a group leader because a test found setsid broken:
            // at least the child itself must go. Through the Child, which
            // never signals the pid once the child has been reaped (by
            // another thread too).
            let _ = self.0.kill();
            let _ = self.0.wait_timeout(Duration::from_secs(10));
        }
    }
}

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

/// SIGKILLs one process (not its group) when dropped, if it is still the
/// identified process; for grandchildren and other processes we did not
/// spawn directly.
pub struct KillOnDrop(pub ProcessIdentity);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Not `kill(pid)` after a check: these processes are reaped by
        // parents of their own (a shell) or by the sweep of another thread,
        // at any moment, and the pid may then go to another process, one
        // of another test or not ours at all. A pidfd opened before the
        // identity is checked reaches this process or nobody.
        if let Some(pidfd) = pin(&self.0) {
            let _ = pidfd.send_signal(libc::SIGKILL);
            let _ = crate::wait_gone(&self.0, Duration::from_secs(10));
        }
    }
}

/// A pidfd on the identified process (`None` once it is gone), also in a
/// thread that plays a kernel without pidfds (`sys::NO_PIDFD`): cleanup
/// must never fall back to signalling a pid.
fn pin(identity: &ProcessIdentity) -> Option<Pidfd> {
    let playing = sys::NO_PIDFD.replace(false);
    let pidfd = Pidfd::open_verified(identity);
    sys::NO_PIDFD.set(playing);
    pidfd.ok().flatten()
}

/// A FIFO in a temp dir, read end open (non-blocking), so that a child can
/// write a line to it and the test wakes when it does.
pub struct Fifo {
    _dir: tempfile::TempDir,
    path: PathBuf,
    read_end: OwnedFd,
}

impl Fifo {
    pub fn new() -> Fifo {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string.
        let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
        // SAFETY: valid C string; the descriptor is owned right away.
        let fd = unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        assert!(fd >= 0, "open fifo: {}", std::io::Error::last_os_error());
        Fifo {
            _dir: dir,
            path,
            // SAFETY: fd was just opened and is owned by nobody else.
            read_end: unsafe { OwnedFd::from_raw_fd(fd) },
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits (on poll, up to a generous deadline) for one line.
    pub fn read_line(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut line = Vec::new();
        loop {
            let ready = sys::poll_readable(&[self.read_end.as_fd()], deadline).unwrap();
            assert!(ready, "no line on the FIFO within 30 s (got {line:?})");
            let mut buf = [0u8; 256];
            // SAFETY: buf is valid for its length.
            let n = unsafe {
                libc::read(
                    std::os::fd::AsRawFd::as_raw_fd(&self.read_end),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n > 0 {
                line.extend_from_slice(&buf[..n as usize]);
                if let Some(end) = line.iter().position(|&b| b == b'\n') {
                    return String::from_utf8(line[..end].to_vec()).unwrap();
                }
            } else if n == 0 {
                panic!("the writer closed the FIFO without a full line (got {line:?})");
            }
        }
    }

    pub fn read_pid(&self) -> u32 {
        let line = self.read_line();
        line.trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a pid: {line:?}"))
    }
}

/// Fails if the identified process still exists in any form, zombie
/// included. A pid reused by another process is fine.
pub fn assert_no_zombie(identity: &ProcessIdentity) {
    match read_stat(identity.pid) {
        Err(crate::Error::NoSuchProcess { .. }) => {}
        Ok(stat) if stat.start_time != identity.start_time => {}
        Ok(stat) => panic!(
            "process {} still exists in state {} (parent {})",
            identity.pid, stat.state, stat.ppid
        ),
        Err(other) => panic!("reading process {}: {other}", identity.pid),
    }
}

/// A field of /proc/PID/status, e.g. "SigIgn".
pub fn status_field(pid: &str, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// A signal mask field of /proc/PID/status as a number.
pub fn signal_mask(pid: &str, name: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, name), 16).unwrap()
}

/// The bit of `signal` in a /proc signal mask.
pub fn signal_bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

/// The absolute path of a program on PATH.
pub fn which(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").expect("PATH is set");
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} not found on PATH; the tests need it"))
}

/// The pid as the i32 libc wants.
pub fn raw(pid: u32) -> libc::pid_t {
    libc::pid_t::try_from(pid).unwrap()
}

/// Whether this process may choose the pid of a process it creates (clone3
/// with `set_tid`, which needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).
pub fn can_choose_pids() -> bool {
    let caps = u64::from_str_radix(&status_field("self", "CapEff"), 16).unwrap();
    let cap_sys_admin = 21;
    let cap_checkpoint_restore = 40;
    caps & (1 << cap_sys_admin | 1 << cap_checkpoint_restore) != 0
}

/// A child of ours that was given a pid of our choice and leads a new
/// session, so that the group with that id is its group: what a reused pid
/// and group id look like. SIGKILLed and reaped on drop.
pub struct PidTaker {
    pid: u32,
    start_time: u64,
}

/// The kernel's `struct clone_args` (all fields are 64 bits wide).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

impl PidTaker {
    /// Creates the process with pid `pid`, which must be free, and returns
    /// once it leads its session. Fails with EPERM without the capability
    /// (see [`can_choose_pids`]) and with EEXIST when the pid is in use.
    pub fn spawn(pid: u32) -> std::io::Result<PidTaker> {
        let mut ends = [0; 2];
        // SAFETY: ends is a valid array of two descriptors.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (ready_read, ready_write) =
            unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        let tids = [raw(pid)];
        let args = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            set_tid: tids.as_ptr() as u64,
            set_tid_size: 1,
            ..CloneArgs::default()
        };
        // SAFETY: args is a valid clone_args of the size given; without
        // CLONE_VM the child gets a copy of our memory, like after fork.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if rc == 0 {
            // The child: only async-signal-safe calls, as after fork in a
            // process with threads. It never returns: SIGKILL ends it, and
            // so would SIGTERM (left at its default by the test process; the
            // mask is emptied here).
            // SAFETY: plain system calls on valid arguments.
            unsafe {
                libc::setsid();
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                libc::write(
                    std::os::fd::AsRawFd::as_raw_fd(&ready_write),
                    b"x".as_ptr().cast(),
                    1,
                );
                // Copies of other tests' descriptors (a pipe that std reads
                // until exec closes it, for one) must not stay open here.
                libc::syscall(libc::SYS_close_range, 3, libc::c_uint::MAX, 0);
                loop {
                    libc::pause();
                }
            }
        }
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        assert_eq!(rc, libc::c_long::from(raw(pid)), "clone3 gave another pid");
        drop(ready_write);
        let ready = sys::poll_readable(
            &[ready_read.as_fd()],
            Instant::now() + Duration::from_secs(30),
        )
        .unwrap();
        assert!(ready, "the pid taker did not start within 30 s");
        Ok(PidTaker {
            pid,
            start_time: read_stat(pid).unwrap().start_time,
        })
    }

    /// Still running (not a zombie, not reaped by anyone).
    pub fn is_running(&self) -> bool {
        read_stat(self.pid).is_ok_and(|stat| stat.start_time == self.start_time && !stat.is_dead())
    }
}

impl Drop for PidTaker {
    fn drop(&mut self) {
        if !read_stat(self.pid).is_ok_and(|stat| stat.start_time == self.start_time) {
            return; // Reaped by someone else (a failed test): the pid is not its.
        }
        // SAFETY: our own child, not reaped (just checked), so the pid is its.
        unsafe {
            libc::kill(raw(self.pid), libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(raw(self.pid), &mut status, 0) < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
            }
        }
    }
}
