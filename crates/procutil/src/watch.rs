//! Waiting for several things at once with a deadline: files and folders
//! (inotify), process exits (pidfds) and any readable descriptor, in one
//! poll(2).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use procutil::watch::{Change, Watch, WatchEvent};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("procutil-watch-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let mut watch = Watch::new();
//! let folder = watch.add_dir(&dir)?;
//! std::fs::write(dir.join("new"), "x")?;
//! match watch.wait(Instant::now() + Duration::from_secs(10))? {
//!     WatchEvent::Entry { token, name, change, .. } => {
//!         assert_eq!((token, name.to_str(), change), (folder, Some("new"), Change::Created));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::Instant;

use crate::Error;
use crate::pidfd::Pidfd;
use crate::sys;

/// Names one source added to a [`Watch`]; events carry it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Token(u64);

/// What happened to a watched path, or to an entry of a watched folder.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Change {
    /// An entry was created in the folder (`IN_CREATE`).
    Created,
    /// An entry was moved (renamed) into the folder (`IN_MOVED_TO`).
    MovedIn,
    /// An entry was moved out of the folder or renamed (`IN_MOVED_FROM`);
    /// for a watched path: it was moved or renamed (`IN_MOVE_SELF`), and
    /// the watch follows the file to its new name.
    MovedAway,
    /// An entry was deleted (`IN_DELETE`); for a watched path: it was
    /// deleted and nothing holds it open any more (`IN_DELETE_SELF`).
    Deleted,
    /// The file (or the folder's entry) was written to (`IN_MODIFY`),
    /// truncation included.
    Modified,
    /// A file open for writing was closed (`IN_CLOSE_WRITE`).
    Written,
    /// Metadata changed: permissions, times, link count (`IN_ATTRIB`).
    Attributes,
    /// The file system holding the watched path was unmounted.
    Unmounted,
    /// The kernel dropped the watch (after a deletion or unmount): no more
    /// events come for this token, which is now unknown to the `Watch`.
    Unwatched,
}

/// What [`Watch::wait`] returns.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum WatchEvent {
    /// Something happened to a path added with [`Watch::add_file`] or
    /// [`Watch::add_dir`] itself.
    Path {
        /// The path's token.
        token: Token,
        /// What happened.
        change: Change,
    },
    /// Something happened to an entry of a folder added with
    /// [`Watch::add_dir`].
    Entry {
        /// The folder's token.
        token: Token,
        /// The entry's name in the folder.
        name: OsString,
        /// Whether the entry is a folder.
        is_dir: bool,
        /// What happened.
        change: Change,
    },
    /// The process of a pidfd added with [`Watch::add_pidfd`] has exited
    /// (it is not reaped by this).
    Exited {
        /// The pidfd's token.
        token: Token,
    },
    /// A descriptor added with [`Watch::add_fd`] is readable (or at its end
    /// or in error: a read will not block).
    Readable {
        /// The descriptor's token.
        token: Token,
    },
    /// The kernel's queue of inotify events overflowed and events were
    /// lost: look at every watched path again.
    Overflow,
    /// The deadline passed with nothing to report.
    TimedOut,
}

/// Files, folders, process exits and descriptors to wait for together.
///
/// [`wait`](Self::wait) blocks in one poll(2) (no polling loop) until any
/// source has something to report or its deadline passes, and returns one
/// event at a time: several events that are ready together are queued and
/// returned by the next calls without blocking. Inotify events are drained
/// without blocking whenever its descriptor is readable; an event identical
/// to the one queued before it is dropped.
///
/// Paths are watched with inotify, created on the first
/// [`add_file`](Self::add_file) or [`add_dir`](Self::add_dir) (so a `Watch`
/// of descriptors alone needs no inotify instance). A path is watched by
/// its inode, as inotify does: a file renamed away is still watched under
/// its new name (a rotated log, for one), and a new file at the old path is
/// not; watch its folder to see that. Adding the same inode twice returns
/// the first token.
///
/// Descriptors ([`add_pidfd`](Self::add_pidfd), [`add_fd`](Self::add_fd))
/// are duplicated, so the `Watch` does not borrow them. Their readiness is
/// level-triggered: a pidfd whose process exited, or a pipe with unread
/// data, is reported at every wait until it is [removed](Self::remove) or
/// read.
#[derive(Debug, Default)]
pub struct Watch {
    inotify: Option<OwnedFd>,
    /// Inotify watch descriptor and token of each watched path.
    paths: Vec<(libc::c_int, Token)>,
    /// Duplicated descriptors, each with its token and whether it is a pidfd.
    fds: Vec<(OwnedFd, Token, FdKind)>,
    next_token: u64,
    pending: VecDeque<WatchEvent>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FdKind {
    Pidfd,
    Other,
}

/// Changes to a watched file.
const FILE_MASK: u32 = libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB
    | libc::IN_MOVE_SELF
    | libc::IN_DELETE_SELF;

/// Changes to a watched folder and its entries.
const DIR_MASK: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB
    | libc::IN_MOVE_SELF
    | libc::IN_DELETE_SELF
    | libc::IN_ONLYDIR;

impl Watch {
    /// An empty watch. Creates nothing yet.
    pub fn new() -> Watch {
        Watch::default()
    }

    /// Watches the file at `path`: writes, closes after writing, metadata,
    /// and its renaming or deletion ([`WatchEvent::Path`]).
    ///
    /// Fails with [`Error::WatchPath`]: `NotFound` when it does not exist,
    /// or the user's inotify limits (instances, watches) are reached.
    pub fn add_file(&mut self, path: &Path) -> Result<Token, Error> {
        self.add_path(path, FILE_MASK)
    }

    /// Watches the folder at `path`: entries created, moved in or out,
    /// deleted, written to, closed after writing or changed in metadata
    /// ([`WatchEvent::Entry`], with the entry's name), and the folder's own
    /// renaming or deletion ([`WatchEvent::Path`]). Not recursive.
    ///
    /// Fails with [`Error::WatchPath`]: `NotFound` when it does not exist,
    /// not a directory, or the user's inotify limits are reached.
    pub fn add_dir(&mut self, path: &Path) -> Result<Token, Error> {
        self.add_path(path, DIR_MASK)
    }

    /// Watches a process for its exit ([`WatchEvent::Exited`]), through a
    /// duplicate of its pidfd.
    pub fn add_pidfd(&mut self, pidfd: &Pidfd) -> Result<Token, Error> {
        self.add_descriptor(pidfd.as_fd(), FdKind::Pidfd)
    }

    /// Watches any descriptor for readability ([`WatchEvent::Readable`]),
    /// through a duplicate of it: a pipe, a socket, the descriptor of
    /// [`Signals`](crate::signals::Signals).
    pub fn add_fd(&mut self, fd: &impl AsFd) -> Result<Token, Error> {
        self.add_descriptor(fd.as_fd(), FdKind::Other)
    }

    /// Stops watching a source, and drops its queued events. Unknown tokens
    /// (already removed, or [`Change::Unwatched`]) are ignored.
    pub fn remove(&mut self, token: Token) {
        if let Some(index) = self.paths.iter().position(|&(_, t)| t == token) {
            let (wd, _) = self.paths.swap_remove(index);
            if let Some(inotify) = &self.inotify {
                // SAFETY: plain system call on our own inotify descriptor.
                unsafe { libc::inotify_rm_watch(inotify.as_raw_fd(), wd) };
            }
        }
        self.fds.retain(|(_, t, _)| *t != token);
        self.pending
            .retain(|event| event_token(event) != Some(token));
    }

    /// Waits until a source has something to report or `deadline` passes
    /// ([`WatchEvent::TimedOut`]), and returns one event. Returns a queued
    /// event at once. A deadline in the past looks without blocking.
    ///
    /// Blocks in poll(2), restarted on EINTR with the time left; with no
    /// source at all it just sleeps until the deadline.
    pub fn wait(&mut self, deadline: Instant) -> Result<WatchEvent, Error> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            if !self.poll(deadline)? {
                return Ok(WatchEvent::TimedOut);
            }
        }
    }

    /// Every event ready now (queued or found without blocking), oldest
    /// first; empty when there is none. For a caller that acts once for
    /// many events (reads a file again, rescans a folder).
    pub fn drain(&mut self) -> Result<Vec<WatchEvent>, Error> {
        self.poll(Instant::now())?;
        Ok(self.pending.drain(..).collect())
    }

    fn add_path(&mut self, path: &Path, mask: u32) -> Result<Token, Error> {
        let failed = |source| Error::WatchPath {
            path: path.to_path_buf(),
            source,
        };
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| failed(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let inotify = match &self.inotify {
            Some(fd) => fd.as_raw_fd(),
            None => {
                // SAFETY: plain system call; the descriptor is owned at once.
                let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
                if fd < 0 {
                    return Err(failed(io::Error::last_os_error()));
                }
                // SAFETY: the kernel just gave us this descriptor.
                self.inotify
                    .insert(unsafe { OwnedFd::from_raw_fd(fd) })
                    .as_raw_fd()
            }
        };
        // IN_MASK_ADD: a second add of the same inode keeps what the first
        // asked for.
        // SAFETY: valid descriptor and NUL-terminated path.
        let wd =
            unsafe { libc::inotify_add_watch(inotify, c_path.as_ptr(), mask | libc::IN_MASK_ADD) };
        if wd < 0 {
            return Err(failed(io::Error::last_os_error()));
        }
        if let Some(&(_, token)) = self.paths.iter().find(|&&(known, _)| known == wd) {
            return Ok(token);
        }
        let token = self.new_token();
        self.paths.push((wd, token));
        Ok(token)
    }

    fn add_descriptor(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        kind: FdKind,
    ) -> Result<Token, Error> {
        let copy = fd
            .try_clone_to_owned()
            .map_err(|source| Error::Watch { source })?;
        let token = self.new_token();
        self.fds.push((copy, token, kind));
        Ok(token)
    }

    fn new_token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    /// One poll(2) up to `deadline`; queues what is ready. Returns whether
    /// anything was (which may still queue nothing: events of removed
    /// watches).
    fn poll(&mut self, deadline: Instant) -> Result<bool, Error> {
        let mut pollfds: Vec<libc::pollfd> = self
            .inotify
            .iter()
            .chain(self.fds.iter().map(|(fd, _, _)| fd))
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if !sys::poll_until(&mut pollfds, deadline).map_err(|source| Error::Watch { source })? {
            return Ok(false);
        }
        let mut ready = pollfds.iter().map(|p| p.revents != 0);
        if self.inotify.is_some() && ready.next() == Some(true) {
            self.read_inotify()?;
        }
        let fired: Vec<WatchEvent> = self
            .fds
            .iter()
            .zip(ready)
            .filter(|(_, ready)| *ready)
            .map(|((_, token, kind), _)| match kind {
                FdKind::Pidfd => WatchEvent::Exited { token: *token },
                FdKind::Other => WatchEvent::Readable { token: *token },
            })
            .collect();
        for event in fired {
            if !self.pending.contains(&event) {
                self.pending.push_back(event);
            }
        }
        Ok(true)
    }

    /// Reads every queued inotify event without blocking.
    fn read_inotify(&mut self) -> Result<(), Error> {
        let Some(inotify) = &self.inotify else {
            return Ok(());
        };
        let raw = inotify.as_raw_fd();
        // Aligned for `struct inotify_event`; room for many events at once
        // (one is at most 16 bytes plus NAME_MAX + 1).
        let mut buffer = [0u64; 1024];
        let capacity = std::mem::size_of_val(&buffer);
        loop {
            // SAFETY: the buffer is valid for `capacity` bytes.
            let n = unsafe { libc::read(raw, buffer.as_mut_ptr().cast(), capacity) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(()),
                    _ => return Err(Error::Watch { source: err }),
                }
            }
            if n == 0 {
                return Ok(());
            }
            let len = usize::try_from(n).unwrap_or(0).min(capacity);
            // SAFETY: reinterpreting the filled part of a u64 buffer as bytes.
            let bytes = unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), len) };
            for raw_event in parse_events(bytes) {
                self.queue_inotify(raw_event);
            }
        }
    }

    fn queue_inotify(&mut self, raw: RawEvent<'_>) {
        if raw.mask & libc::IN_Q_OVERFLOW != 0 {
            self.push(WatchEvent::Overflow);
            return;
        }
        let Some(index) = self.paths.iter().position(|&(wd, _)| wd == raw.wd) else {
            // A watch we removed: its last events, or its IN_IGNORED.
            return;
        };
        let token = self.paths[index].1;
        if raw.mask & libc::IN_IGNORED != 0 {
            self.paths.swap_remove(index);
            self.push(WatchEvent::Path {
                token,
                change: Change::Unwatched,
            });
            return;
        }
        let is_dir = raw.mask & libc::IN_ISDIR != 0;
        for change in changes(raw.mask) {
            let event = if raw.name.is_empty() {
                WatchEvent::Path { token, change }
            } else {
                WatchEvent::Entry {
                    token,
                    name: OsString::from_vec(raw.name.to_vec()),
                    is_dir,
                    change,
                }
            };
            self.push(event);
        }
    }

    /// Queues an event unless the same one is the last queued.
    fn push(&mut self, event: WatchEvent) {
        if self.pending.back() != Some(&event) {
            self.pending.push_back(event);
        }
    }
}

fn event_token(event: &WatchEvent) -> Option<Token> {
    match event {
        WatchEvent::Path { token, .. }
        | WatchEvent::Entry { token, .. }
        | WatchEvent::Exited { token }
        | WatchEvent::Readable { token } => Some(*token),
        WatchEvent::Overflow | WatchEvent::TimedOut => None,
    }
}

/// The changes an inotify mask reports, in a fixed order.
fn changes(mask: u32) -> impl Iterator<Item = Change> {
    [
        (libc::IN_CREATE, Change::Created),
        (libc::IN_MOVED_TO, Change::MovedIn),
        (libc::IN_MODIFY, Change::Modified),
        (libc::IN_ATTRIB, Change::Attributes),
        (libc::IN_CLOSE_WRITE, Change::Written),
        (libc::IN_MOVED_FROM | libc::IN_MOVE_SELF, Change::MovedAway),
        (libc::IN_DELETE | libc::IN_DELETE_SELF, Change::Deleted),
        (libc::IN_UNMOUNT, Change::Unmounted),
    ]
    .into_iter()
    .filter(move |(bits, _)| mask & bits != 0)
    .map(|(_, change)| change)
}

/// One `struct inotify_event` from the read buffer.
#[derive(Debug, PartialEq, Eq)]
struct RawEvent<'a> {
    wd: libc::c_int,
    mask: u32,
    /// Without its NUL padding; empty for the watched path itself.
    name: &'a [u8],
}

/// Splits what a read of an inotify descriptor returned into events: each
/// is `wd` (i32), `mask`, `cookie`, `len` (u32, native endian) and `len`
/// bytes of NUL-padded name. A truncated record ends the walk.
fn parse_events(mut bytes: &[u8]) -> impl Iterator<Item = RawEvent<'_>> {
    const HEADER: usize = 16;
    std::iter::from_fn(move || {
        let header = bytes.get(..HEADER)?;
        let word =
            |at: usize| -> [u8; 4] { [header[at], header[at + 1], header[at + 2], header[at + 3]] };
        let wd = libc::c_int::from_ne_bytes(word(0));
        let mask = u32::from_ne_bytes(word(4));
        let len = usize::try_from(u32::from_ne_bytes(word(12))).ok()?;
        let name = bytes.get(HEADER..HEADER.checked_add(len)?)?;
        bytes = &bytes[HEADER + len..];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        Some(RawEvent {
            wd,
            mask,
            name: &name[..end],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(wd: i32, mask: u32, name: &[u8]) -> Vec<u8> {
        let padded = if name.is_empty() {
            0
        } else {
            (name.len() + 1).next_multiple_of(16)
        };
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&wd.to_ne_bytes());
        bytes.extend_from_slice(&mask.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&u32::try_from(padded).unwrap().to_ne_bytes());
        let mut name = name.to_vec();
        name.resize(padded, 0);
        bytes.extend_from_slice(&name);
        bytes
    }

    #[test]
    fn inotify_records_are_split_and_a_truncated_one_ends_the_walk() {
        let bytes = [
            record(1, libc::IN_MODIFY, b""),
            record(2, libc::IN_CREATE | libc::IN_ISDIR, b"project"),
            record(2, libc::IN_DELETE, b"a-name-longer-than-sixteen"),
        ]
        .concat();
        let events: Vec<RawEvent<'_>> = parse_events(&bytes).collect();
        assert_eq!(
            events,
            [
                RawEvent {
                    wd: 1,
                    mask: libc::IN_MODIFY,
                    name: b""
                },
                RawEvent {
                    wd: 2,
                    mask: libc::IN_CREATE | libc::IN_ISDIR,
                    name: b"project"
                },
                RawEvent {
                    wd: 2,
                    mask: libc::IN_DELETE,
                    name: b"a-name-longer-than-sixteen"
                },
            ]
        );
        assert_eq!(parse_events(&bytes[..bytes.len() - 1]).count(), 2);
        assert_eq!(parse_events(&bytes[..10]).count(), 0);
    }

    #[test]
    fn masks_become_changes() {
        let all: Vec<Change> = changes(libc::IN_MODIFY | libc::IN_CLOSE_WRITE).collect();
        assert_eq!(all, [Change::Modified, Change::Written]);
        let moved: Vec<Change> = changes(libc::IN_MOVE_SELF).collect();
        assert_eq!(moved, [Change::MovedAway]);
        assert_eq!(changes(libc::IN_IGNORED).count(), 0);
    }
}
