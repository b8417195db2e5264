//! A [`Waker`]: wakes a thread blocked in poll(2) (a [`Watch`](crate::watch::Watch))
//! from any other thread, for example when a reader thread has queued an
//! item on a channel.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use crate::Error;

/// A socket pair: [`wake`](Waker::wake) writes a byte to one end (never
/// blocking), the other end is readable until [`drain`](Waker::drain)ed.
/// Add it to a [`Watch`](crate::watch::Watch) with `add_fd`; share it
/// between threads with an `Arc`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use procutil::{waker::Waker, watch::{Watch, WatchEvent}};
///
/// # fn main() -> Result<(), procutil::Error> {
/// let waker = std::sync::Arc::new(Waker::new()?);
/// let mut watch = Watch::new();
/// let token = watch.add_fd(&*waker)?;
/// let other = std::sync::Arc::clone(&waker);
/// std::thread::spawn(move || other.wake()).join().unwrap();
/// assert_eq!(watch.wait(Instant::now() + Duration::from_secs(5))?, WatchEvent::Readable { token });
/// waker.drain();
/// assert_eq!(watch.wait(Instant::now())?, WatchEvent::TimedOut);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Waker {
    read: UnixStream,
    write: UnixStream,
}

impl Waker {
    /// A new waker, not yet woken.
    pub fn new() -> Result<Waker, Error> {
        let made = || -> io::Result<Waker> {
            let (read, write) = UnixStream::pair()?;
            read.set_nonblocking(true)?;
            write.set_nonblocking(true)?;
            Ok(Waker { read, write })
        };
        made().map_err(|source| Error::Watch { source })
    }

    /// Makes the descriptor readable. Never blocks: when the socket's buffer
    /// is full, a wake-up is pending already.
    pub fn wake(&self) {
        let _ = (&self.write).write(&[1]);
    }

    /// Reads every pending wake-up, so that the descriptor is not readable
    /// until the next [`wake`](Waker::wake). Never blocks.
    pub fn drain(&self) {
        let mut buffer = [0u8; 256];
        while matches!((&self.read).read(&mut buffer), Ok(n) if n > 0) {}
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}
