//! Advisory locks on a project's lock file: with a deadline, fair (waiters
//! are served in the order they asked), and following the file when it is
//! replaced while a waiter waits.
//!
//! flock(2) has neither a timeout nor an order: a holder that releases and
//! at once locks again usually wins over the processes waiting, and with
//! many of them some wait for ever. So waiters queue. Each takes a ticket:
//! a write lock on one byte of the companion file `<lock>.queue`, an OFD
//! lock (`fcntl(F_OFD_SETLK)`) at the offset given by the time it asked
//! (`CLOCK_BOOTTIME` in nanoseconds). Only the waiter with no live ticket
//! below its own (`F_OFD_GETLK` on the range below it) tries the flock. An
//! OFD lock belongs to its open file: a waiter that gets the lock, gives up
//! or dies leaves the queue with its descriptor, so nobody waits for the
//! dead. [`try_lock`] takes the lock only when nobody queues for it.
//!
//! Waiters sleep in poll(2) on an inotify descriptor watching both files
//! for closes, which is what a holder releasing and a waiter leaving (or
//! dying) do, so the next waiter wakes at once; a 1 s safety net covers
//! what inotify does not see. Without inotify (out of instances) they poll
//! with a pause of 1 ms doubling up to 25 ms.
//!
//! A waiter stopped (SIGSTOP, Ctrl-Z) at the head of the queue would hold
//! up everyone behind it. So a waiter that finds the lock free twice, at
//! least [`STALL`] apart, while the same ticket stays at the head, takes
//! the lock itself: a head that can run takes a free lock in milliseconds.

use std::ffi::CString;
use std::fs::{File, TryLockError};
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Error;
use crate::open::{OpenMode, open_file};
use crate::paths::ensure_dir;

/// First pause between attempts when inotify is not available.
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
/// Longest pause between attempts when inotify is not available.
const MAX_BACKOFF: Duration = Duration::from_millis(25);
/// Longest sleep between two looks when inotify is there: covers what it
/// does not report (a lock file replaced after it was watched, another
/// machine on a network filesystem).
const SAFETY_NET: Duration = Duration::from_secs(1);
/// How long the lock may stay free, with the same waiter at the head of the
/// queue, before a waiter behind it takes the lock (the head is stopped).
const STALL: Duration = Duration::from_secs(1);

/// An exclusive advisory lock (flock(2)) on a lock file, held until dropped.
///
/// The lock belongs to this open file: it is released on drop, when the
/// process exits or is killed, and it is not inherited by spawned children
/// (the file is opened close-on-exec). Two guards on the same file exclude
/// each other also within one process.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway (and wakes the waiters:
        // they watch for the close); unlocking first makes the release
        // independent of any duplicated descriptor.
        let _ = self.file.unlock();
    }
}

/// Opens (creating it and its folder when missing) a lock or queue file
/// with [`open_file`]: never a FIFO, a symlink or a file of another user.
fn open_creating(path: &Path) -> Result<File, Error> {
    match open_file(path, OpenMode::ReadWrite) {
        Err(err) if err.is_not_found() => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                ensure_dir(parent)?;
            }
            open_file(path, OpenMode::ReadWrite)
        }
        other => other,
    }
}

/// `<lock>.queue`, where waiters hold their tickets.
fn queue_path(lock: &Path) -> PathBuf {
    let mut name = lock.as_os_str().to_owned();
    name.push(".queue");
    PathBuf::from(name)
}

/// True when `file` is still the file at `path` (same device and inode).
///
/// A holder may remove the lock file (for example when it deletes a
/// project's whole state folder). Whoever then wins the lock on the old,
/// unlinked inode must not count it: a later process would lock a new file
/// at the same path, and both would think they own the project. So a lock is
/// only taken once the locked file is verified to still be the path's file.
fn still_at_path(file: &File, path: &Path) -> Result<bool, Error> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata().map_err(|e| Error::io(path, e))?;
    match std::fs::symlink_metadata(path) {
        Ok(current) => Ok(current.dev() == held.dev() && current.ino() == held.ino()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// flock(LOCK_EX | LOCK_NB): `Ok(true)` when taken, `Ok(false)` when held
/// through another open file.
fn try_flock(file: &File, path: &Path) -> Result<bool, Error> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(err)) => Err(Error::io(path, err)),
    }
}

/// Takes the lock if it is free right now and nobody is waiting for it,
/// `Ok(None)` otherwise. Creates the lock file (0600) and its folder (0700)
/// if missing. A FIFO, a symlink or a file of another user at the path is
/// refused ([`Error::Refused`]).
pub fn try_lock(path: &Path) -> Result<Option<LockGuard>, Error> {
    loop {
        let file = open_creating(path)?;
        let queue_path = queue_path(path);
        let queue = open_creating(&queue_path)?;
        // Waiters go first: taking the lock past them is what makes a
        // plain flock unfair.
        if anyone_queued(&queue).map_err(|e| Error::io(&queue_path, e))? {
            return Ok(None);
        }
        drop(queue);
        if !try_flock(&file, path)? {
            return Ok(None);
        }
        if still_at_path(&file, path)? {
            return Ok(Some(LockGuard {
                file,
                path: path.to_path_buf(),
            }));
        }
        // Removed while we locked it: lock the file now at the path.
    }
}

/// Takes the exclusive lock on `path`, waiting at most `timeout`; blocks.
///
/// Creates the lock file (0600), its queue file `<path>.queue` and their
/// folder (0700) if missing; a FIFO, a symlink or a file of another user at
/// either path is refused ([`Error::Refused`]). Waiters are served in the
/// order they called (see the module docs): no waiter is passed again and
/// again by others. The lock file may be deleted by its holder (with the
/// folder around it): a waiter that then wins the lock on the deleted file
/// notices, and locks the file now at the path instead (queueing again), so
/// two processes never both hold "the" lock.
///
/// On timeout: [`Error::LockTimeout`] with the path and the time waited.
/// A zero timeout is one attempt.
pub fn lock(path: &Path, timeout: Duration) -> Result<LockGuard, Error> {
    lock_unless(path, timeout, &|| false)
}

/// How often [`lock_unless`] asks whether to give up.
const CANCEL_LOOK: Duration = Duration::from_millis(100);

/// Like [`lock`], and gives up with [`Error::LockCancelled`] as soon as
/// `cancelled()` says so (asked at least every 100 ms while waiting): an
/// interrupted command keeps its place in the queue until then, instead of
/// queueing again in short slices.
pub fn lock_unless(
    path: &Path,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<LockGuard, Error> {
    let start = Instant::now();
    let queue_path = queue_path(path);
    'attempt: loop {
        let file = open_creating(path)?;
        let queue = open_creating(&queue_path)?;
        let ticket = Ticket::take(queue).map_err(|e| Error::io(&queue_path, e))?;
        // Made before the first sleep, then the state is looked at again:
        // a release between the look and the sleep is not missed.
        let mut waker: Option<Option<Waker>> = None;
        let mut backoff = FIRST_BACKOFF;
        let mut head_watch: Option<HeadWatch> = None;
        loop {
            let now = Instant::now();
            let ahead = ticket
                .first_ahead()
                .map_err(|e| Error::io(&queue_path, e))?;
            let (take, next_look) = match ahead {
                None => (try_flock(&file, path)?, SAFETY_NET),
                Some(head) => {
                    let watch = match head_watch.as_mut() {
                        Some(watch) if watch.head == head => watch,
                        _ => head_watch.insert(HeadWatch::new(head, now)),
                    };
                    (watch.look(&file, path, now)?, watch.next_look(now))
                }
            };
            if take {
                if still_at_path(&file, path)? {
                    // The ticket goes with this function: the next waiter is
                    // now at the head, and waits for this guard.
                    return Ok(LockGuard {
                        file,
                        path: path.to_path_buf(),
                    });
                }
                // Removed while we waited: the flock on the old file goes
                // with its descriptor; queue again for the file now there.
                continue 'attempt;
            }
            let Some(left) = timeout
                .checked_sub(start.elapsed())
                .filter(|d| !d.is_zero())
            else {
                return Err(Error::LockTimeout {
                    path: path.to_path_buf(),
                    waited: start.elapsed(),
                });
            };
            if cancelled() {
                return Err(Error::LockCancelled {
                    path: path.to_path_buf(),
                });
            }
            let pause = next_look.min(left).min(CANCEL_LOOK);
            match &waker {
                None => {
                    waker = Some(Waker::new(&[path, &queue_path]));
                    continue;
                }
                Some(Some(waker)) => waker.wait(pause),
                Some(None) => {
                    std::thread::sleep(backoff.min(pause));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// What a waiter behind the head of the queue knows about the head: since
/// when it is the head, and whether the lock was seen free meanwhile.
struct HeadWatch {
    head: libc::off_t,
    since: Instant,
    seen_free: bool,
}

impl HeadWatch {
    fn new(head: libc::off_t, now: Instant) -> HeadWatch {
        HeadWatch {
            head,
            since: now,
            seen_free: false,
        }
    }

    /// Looks whether the head has let the lock lie free for [`STALL`];
    /// `Ok(true)` when it has and this waiter now holds the flock.
    ///
    /// Only every [`STALL`]: the lock is tried, and released at once (and
    /// the waiters woken, in case the head tried it in that moment) unless
    /// it was also free at the previous look with the same head.
    fn look(&mut self, file: &File, path: &Path, now: Instant) -> Result<bool, Error> {
        if now.duration_since(self.since) < STALL {
            return Ok(false);
        }
        self.since = now;
        if !try_flock(file, path)? {
            self.seen_free = false;
            return Ok(false);
        }
        if self.seen_free {
            return Ok(true);
        }
        self.seen_free = true;
        file.unlock().map_err(|e| Error::io(path, e))?;
        // Opening and closing the lock file is a close event for every
        // waiter's inotify watch.
        drop(open_file(path, OpenMode::Read));
        Ok(false)
    }

    /// How long until the next look is due.
    fn next_look(&self, now: Instant) -> Duration {
        (self.since + STALL)
            .saturating_duration_since(now)
            .max(Duration::from_millis(1))
            .min(SAFETY_NET)
    }
}

/// A place in the queue: a write lock on the byte at offset `number` of the
/// queue file, held through `file` and released when it is closed.
struct Ticket {
    file: File,
    number: libc::off_t,
}

impl Ticket {
    /// Queues with the time since boot as the number, so that tickets are
    /// ordered by when their waiters asked, across processes. Two waiters in
    /// the same nanosecond: the later one takes the next free byte.
    fn take(file: File) -> io::Result<Ticket> {
        let mut number = boot_time_nanos().max(1);
        for _ in 0..4096 {
            if ofd_try_lock(&file, number)? {
                return Ok(Ticket { file, number });
            }
            number = number.saturating_add(1);
        }
        Err(io::Error::other("no free place in the lock queue"))
    }

    /// The lowest live ticket below this one, if any.
    fn first_ahead(&self) -> io::Result<Option<libc::off_t>> {
        let mut first = None;
        let mut end = self.number;
        // F_OFD_GETLK reports one conflicting lock in the range (in practice
        // the oldest); look below it until there is none.
        while let Some(start) = ofd_test(&self.file, 0, end)? {
            first = Some(start);
            if start == 0 {
                break;
            }
            end = start;
        }
        Ok(first)
    }
}

/// True when another open file holds a ticket in `queue`.
fn anyone_queued(queue: &File) -> io::Result<bool> {
    Ok(ofd_test(queue, 0, 0)?.is_some())
}

/// A write lock description of `len` bytes at `start` (`len` 0: to the end).
fn lock_range(start: libc::off_t, len: libc::off_t) -> libc::flock {
    // SAFETY: `flock` is a plain C struct of integers, for which all zeros
    // is a valid value (and `l_pid` must be 0 for OFD locks).
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = libc::F_WRLCK as libc::c_short;
    range.l_whence = libc::SEEK_SET as libc::c_short;
    range.l_start = start;
    range.l_len = len;
    range
}

/// Takes the OFD write lock on byte `at`: `Ok(false)` when another open
/// file holds it.
fn ofd_try_lock(file: &File, at: libc::off_t) -> io::Result<bool> {
    let range = lock_range(at, 1);
    // SAFETY: F_OFD_SETLK reads the struct we pass, on a descriptor we own.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &range) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

/// The start of a write lock another open file holds in `len` bytes from
/// `start` (`len` 0: to the end), if any.
fn ofd_test(file: &File, start: libc::off_t, len: libc::off_t) -> io::Result<Option<libc::off_t>> {
    let mut range = lock_range(start, len);
    // SAFETY: F_OFD_GETLK reads and fills in the struct we own, on a
    // descriptor we own.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut range) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((range.l_type != libc::F_UNLCK as libc::c_short).then_some(range.l_start))
}

/// Nanoseconds since boot (the same clock in every process of the machine).
fn boot_time_nanos() -> libc::off_t {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    if rc != 0 {
        return 1;
    }
    let nanos = i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec);
    libc::off_t::try_from(nanos).unwrap_or(libc::off_t::MAX / 2)
}

/// Wakes a waiter when a watched file is closed, unlinked or moved: an
/// inotify descriptor slept on in poll(2).
struct Waker {
    inotify: File,
}

impl Waker {
    /// `None` when inotify is not available (for example out of instances)
    /// or a file cannot be watched: the caller then polls.
    fn new(paths: &[&Path]) -> Option<Waker> {
        // SAFETY: a plain system call; the result is checked.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let inotify = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        let mask = libc::IN_CLOSE_WRITE
            | libc::IN_CLOSE_NOWRITE
            | libc::IN_ATTRIB
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF
            | libc::IN_DONT_FOLLOW;
        for path in paths {
            let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
            // SAFETY: a descriptor we own and a NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(raw, c_path.as_ptr(), mask) };
            if wd < 0 {
                return None;
            }
        }
        Some(Waker { inotify })
    }

    /// Sleeps until a watched file is closed or changes, or `timeout`.
    fn wait(&self, timeout: Duration) {
        let millis = timeout.as_micros().div_ceil(1000);
        let mut poll_fd = libc::pollfd {
            fd: self.inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd that we own, for a descriptor we own.
        unsafe {
            libc::poll(
                &mut poll_fd,
                1,
                libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX),
            )
        };
        // Drop what was reported: the caller looks at the files anyway.
        let mut events = [0u8; 4096];
        while matches!((&self.inotify).read(&mut events), Ok(n) if n > 0) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_never_keeps_a_lock_on_a_deleted_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("project");
        let path = dir.join("server.lock");
        let holder = lock(&path, Duration::from_secs(1)).unwrap();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| lock(&path, Duration::from_secs(10)));
            // Let the waiter open the current file and start waiting on it.
            while std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target == &path)
                .nth(1)
                .is_none()
            {
                std::thread::yield_now();
            }
            // The holder deletes the whole folder, lock file included.
            std::fs::remove_dir_all(&dir).unwrap();
            drop(holder);
            let guard = waiter.join().unwrap().unwrap();
            // The waiter holds the file now at the path, so nobody else can
            // take it there.
            assert!(try_lock(&path).unwrap().is_none());
            drop(guard);
            assert!(try_lock(&path).unwrap().is_some());
        });
    }
}
