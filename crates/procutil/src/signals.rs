//! Signal handling for programs that forbid `unsafe`: ignoring the
//! terminal's interrupts while a child runs, and receiving signals through
//! a self-pipe that can be waited on with a deadline.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use procutil::signals::Signals;
//!
//! # fn main() -> Result<(), procutil::Error> {
//! let signals = Signals::install(&[libc::SIGUSR2])?;
//! let flag = signals.flag(); // cheap to clone, for code deep in a call
//! // Nothing yet: the wait ends at its deadline.
//! assert_eq!(signals.wait(Instant::now() + Duration::from_millis(10)), None);
//! # // SAFETY: raising a signal that has a handler installed.
//! # unsafe { libc::raise(libc::SIGUSR2) };
//! // ... someone sends SIGUSR2 ...
//! assert_eq!(signals.wait(Instant::now() + Duration::from_secs(5)), Some(libc::SIGUSR2));
//! assert!(flag.is_set());
//! drop(signals); // the previous disposition is back
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Error;
use crate::sys;

/// Signals are numbered 1 to 64 on Linux (fewer elsewhere).
const SLOTS: usize = 65;

/// The write end of the pipe each handled signal goes to; -1: none.
static WRITE_FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
/// How many times each signal arrived while handled, ever.
static COUNTS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
/// Handlers running right now: a pipe is closed only when none is.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// Serialises installing and restoring.
static REGISTRY: Mutex<()> = Mutex::new(());

/// How long [`Signals`]' drop waits for a handler in another thread to
/// finish its one `write` before closing the pipe (it leaks it instead).
const HANDLER_QUIESCE: Duration = Duration::from_secs(1);

/// Sets SIGINT and SIGQUIT to be ignored, as a shell does while a
/// foreground command runs: Ctrl-C and Ctrl-\ then reach the command (it is
/// in the same process group) but not the caller, which waits for the
/// command and passes its exit status on (`ocm exec`).
///
/// Call it *after* starting the child: an ignored signal stays ignored
/// across exec, so a child started afterwards with `std::process::Command`
/// would ignore Ctrl-C too ([`spawn_detached`](crate::spawn_detached)
/// resets every disposition, so its children are not affected).
pub fn ignore_interrupts() -> Result<(), Error> {
    for signal in [libc::SIGINT, libc::SIGQUIT] {
        set_action(signal, libc::SIG_IGN, 0)?;
    }
    Ok(())
}

/// Catches some signals and turns them into readable bytes on a pipe (the
/// self-pipe pattern), until dropped.
///
/// The handler only does what is async-signal-safe: it counts the signal
/// and writes its number to a non-blocking pipe (a full pipe drops the
/// byte, never blocks; the count still goes up). Read them with
/// [`wait`](Self::wait) (with a deadline) or [`try_next`](Self::try_next),
/// or put the `Signals` in a [`Watch`](crate::watch::Watch) with
/// [`add_fd`](crate::watch::Watch::add_fd) to wait for a signal together
/// with files and processes. [`flag`](Self::flag) gives a cheap check
/// ("did any of these signals arrive?") for code that cannot wait.
///
/// Handlers are installed with `SA_RESTART`; poll(2) and friends still
/// return EINTR, which this crate's waits restart. Dropping it restores the
/// dispositions that were there before. A signal can be handled by one
/// `Signals` at a time.
///
/// Children do not inherit the handler: exec resets caught signals to their
/// default, the pipe is close-on-exec, and
/// [`spawn_detached`](crate::spawn_detached) resets every disposition and
/// the signal mask anyway.
pub struct Signals {
    read: OwnedFd,
    /// Closed only once no handler can write to it any more.
    write: Option<OwnedFd>,
    /// Each handled signal with the action it replaced.
    previous: Vec<(i32, libc::sigaction)>,
    flag: SignalFlag,
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals")
            .field("signals", &self.signals())
            .field("fd", &self.read.as_raw_fd())
            .finish()
    }
}

/// Whether any of a [`Signals`]' signals has arrived since it was
/// installed. Clone it into whatever needs to check; it stays valid (and
/// stops changing) after the `Signals` is dropped.
#[derive(Clone, Debug)]
pub struct SignalFlag {
    /// Each signal's slot and its count when the `Signals` was installed.
    baseline: Arc<[(usize, usize)]>,
}

impl SignalFlag {
    /// True once any of the signals has arrived. One atomic load per
    /// signal, no system call.
    pub fn is_set(&self) -> bool {
        self.arrived().is_some()
    }

    /// The lowest-numbered of the signals that has arrived, if any; like
    /// [`is_set`](Self::is_set), it leaves the pipe alone, so a thread
    /// waiting on it still wakes.
    pub fn arrived(&self) -> Option<i32> {
        self.baseline
            .iter()
            .find(|&&(slot, count)| COUNTS[slot].load(Ordering::SeqCst) != count)
            .and_then(|&(slot, _)| i32::try_from(slot).ok())
    }
}

impl Signals {
    /// Installs a handler for each of `signals`.
    ///
    /// Fails with [`Error::SignalHandler`] (installing none of them) for
    /// SIGKILL and SIGSTOP (which cannot be caught), for the signals of
    /// faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, after which
    /// a handler that returns would loop), for numbers that are not
    /// signals, and for a signal another live `Signals` handles.
    pub fn install(signals: &[i32]) -> Result<Signals, Error> {
        let mut wanted: Vec<i32> = signals.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        for &signal in &wanted {
            check_catchable(signal)?;
        }
        let _registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        for &signal in &wanted {
            if WRITE_FDS[slot(signal)].load(Ordering::SeqCst) >= 0 {
                return Err(Error::SignalHandler {
                    signal,
                    reason: "another Signals value handles it".to_string(),
                });
            }
        }
        let (read, write) = pipe().map_err(|source| Error::SignalHandler {
            signal: wanted.first().copied().unwrap_or(0),
            reason: format!("cannot create a pipe: {source}"),
        })?;
        let baseline: Arc<[(usize, usize)]> = wanted
            .iter()
            .map(|&signal| {
                let slot = slot(signal);
                (slot, COUNTS[slot].load(Ordering::SeqCst))
            })
            .collect();
        let mut installed = Signals {
            read,
            write: Some(write),
            previous: Vec::with_capacity(wanted.len()),
            flag: SignalFlag { baseline },
        };
        let write_fd = installed.write.as_ref().map_or(-1, |fd| fd.as_raw_fd());
        for &signal in &wanted {
            WRITE_FDS[slot(signal)].store(write_fd, Ordering::SeqCst);
            let handler = on_signal as extern "C" fn(libc::c_int);
            match set_action(signal, handler as libc::sighandler_t, libc::SA_RESTART) {
                Ok(previous) => installed.previous.push((signal, previous)),
                Err(err) => {
                    WRITE_FDS[slot(signal)].store(-1, Ordering::SeqCst);
                    // Dropping restores what was installed so far.
                    drop_locked(&mut installed);
                    return Err(err);
                }
            }
        }
        Ok(installed)
    }

    /// The signals handled, in ascending order.
    pub fn signals(&self) -> Vec<i32> {
        self.previous.iter().map(|&(signal, _)| signal).collect()
    }

    /// The next signal that arrived, without blocking; `None` when none is
    /// waiting.
    pub fn try_next(&self) -> Option<i32> {
        let mut byte = 0u8;
        loop {
            // SAFETY: reading one byte into a local from our own descriptor.
            let n = unsafe { libc::read(self.read.as_raw_fd(), (&raw mut byte).cast(), 1) };
            if n == 1 {
                return Some(i32::from(byte));
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
    }

    /// Waits until one of the signals arrives or `deadline` passes, and
    /// returns it (`None` at the deadline). Signals that arrived before the
    /// call are returned at once, oldest first. Blocks in poll(2) on the
    /// pipe.
    pub fn wait(&self, deadline: Instant) -> Option<i32> {
        loop {
            if let Some(signal) = self.try_next() {
                return Some(signal);
            }
            match sys::poll_readable(&[self.read.as_fd()], deadline) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(_) => {
                    // Only a broken descriptor gets here; keep the deadline
                    // rather than return early into a caller's loop.
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    return None;
                }
            }
        }
    }

    /// Whether any of the signals has arrived since the install, whether or
    /// not it was read with [`wait`](Self::wait) or
    /// [`try_next`](Self::try_next).
    pub fn is_set(&self) -> bool {
        self.flag.is_set()
    }

    /// Which signal [`is_set`](Self::is_set) saw (see
    /// [`SignalFlag::arrived`]): read without taking it from the pipe, so
    /// that another thread waiting with [`wait`](Self::wait) still gets it.
    pub fn arrived(&self) -> Option<i32> {
        self.flag.arrived()
    }

    /// A cheap, cloneable handle on [`is_set`](Self::is_set).
    pub fn flag(&self) -> SignalFlag {
        self.flag.clone()
    }
}

impl AsFd for Signals {
    /// The read end of the pipe: readable while a signal is waiting.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl AsRawFd for Signals {
    fn as_raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        if self.previous.is_empty() && self.write.is_none() {
            return; // a failed install, already undone
        }
        let _registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        drop_locked(self);
    }
}

/// Restores the previous dispositions and retires the pipe. The caller
/// holds the registry lock.
fn drop_locked(signals: &mut Signals) {
    for (signal, previous) in signals.previous.drain(..) {
        // SAFETY: restoring an action sigaction gave us.
        unsafe { libc::sigaction(signal, &previous, std::ptr::null_mut()) };
        WRITE_FDS[slot(signal)].store(-1, Ordering::SeqCst);
    }
    // A handler that started before the store above may still be about to
    // write to the pipe; one that starts after it sees -1. Close the write
    // end only when none runs, or its number could be reused by a file the
    // handler would then write to.
    let deadline = Instant::now() + HANDLER_QUIESCE;
    while IN_HANDLER.load(Ordering::SeqCst) != 0 {
        if Instant::now() >= deadline {
            // Never seen; leaking one descriptor is the safe way out.
            std::mem::forget(signals.write.take());
            return;
        }
        std::thread::yield_now();
    }
    signals.write = None;
}

/// The handler: counts the signal and writes its number to the pipe. Only
/// async-signal-safe operations (atomics, write(2)); errno is preserved for
/// the code it interrupted.
extern "C" fn on_signal(signal: libc::c_int) {
    let saved_errno = errno();
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    if let Ok(index) = usize::try_from(signal)
        && index < SLOTS
    {
        COUNTS[index].fetch_add(1, Ordering::SeqCst);
        let fd = WRITE_FDS[index].load(Ordering::SeqCst);
        if fd >= 0 {
            let byte = u8::try_from(signal).unwrap_or(0);
            // SAFETY: write(2) of one byte from a local; a full pipe fails
            // with EAGAIN (non-blocking), which is fine.
            unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
        }
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    set_errno(saved_errno);
}

fn slot(signal: i32) -> usize {
    // check_catchable made sure it is in 1..SLOTS.
    usize::try_from(signal).unwrap_or(0).min(SLOTS - 1)
}

fn check_catchable(signal: i32) -> Result<(), Error> {
    let refuse = |reason: &str| {
        Err(Error::SignalHandler {
            signal,
            reason: reason.to_string(),
        })
    };
    if !(1..i32::try_from(SLOTS).unwrap_or(65)).contains(&signal) {
        return refuse("not a signal number");
    }
    if signal == libc::SIGKILL || signal == libc::SIGSTOP {
        return refuse("it cannot be caught");
    }
    if [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGTRAP,
        libc::SIGSYS,
    ]
    .contains(&signal)
    {
        return refuse("it reports a fault; a handler that returns would loop");
    }
    Ok(())
}

/// Installs `handler` for `signal` with `flags` and returns the action it
/// replaced.
fn set_action(
    signal: i32,
    handler: libc::sighandler_t,
    flags: libc::c_int,
) -> Result<libc::sigaction, Error> {
    // SAFETY: a zeroed sigaction is a valid value (no handler, no flags,
    // empty mask); the fields are set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = flags;
    // SAFETY: zeroed, then filled in by sigaction.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: sa_mask is a valid sigset_t to empty; both pointers are valid.
    let rc = unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, &mut previous)
    };
    if rc == 0 {
        Ok(previous)
    } else {
        Err(Error::SignalHandler {
            signal,
            reason: io::Error::last_os_error().to_string(),
        })
    }
}

/// A close-on-exec, non-blocking pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut ends = [0 as libc::c_int; 2];
    // SAFETY: ends is a valid array of two descriptors.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here only.
    Ok(unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) })
}

fn errno() -> libc::c_int {
    // SAFETY: errno_location points at this thread's errno.
    unsafe { *errno_location() }
}

fn set_errno(value: libc::c_int) {
    // SAFETY: errno_location points at this thread's errno.
    unsafe { *errno_location() = value };
}

#[cfg(target_os = "linux")]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: no preconditions.
    unsafe { libc::__errno_location() }
}

#[cfg(any(target_os = "android", target_os = "openbsd", target_os = "netbsd"))]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: no preconditions.
    unsafe { libc::__errno() }
}

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "dragonfly"
))]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: no preconditions.
    unsafe { libc::__error() }
}
