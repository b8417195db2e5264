//! `ocm logs -f`: following a log like `tail -F`
//! (across rotation and truncation) with inotify, not a polling loop.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use manager::watch::{Change, Watch, WatchEvent};

/// A wake-up even without an inotify event: a safety net for filesystems
/// where inotify sees nothing (network mounts), and the pace of waiting for
/// a folder that does not exist yet.
const SAFETY_NET: Duration = Duration::from_millis(1000);

/// Writes what is appended to `path` to `out`, forever (until the process
/// is interrupted or `out` fails), starting at `offset` of `file` (the
/// file `path` named when it was opened; `None`: it did not exist yet).
/// When the file is replaced (rotated) the rest of the old one is written,
/// then the new one from its start; when it shrinks (truncated), it is
/// read again from the start.
pub fn follow(
    path: &Path,
    mut file: Option<File>,
    mut offset: u64,
    out: &mut dyn Write,
    mut waiting: impl FnMut(&Path),
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // The folder, not the file: it also tells when the file is renamed
    // away, replaced or created.
    let mut watch = Watch::new();
    let mut folder = watch.add_dir(dir).ok();
    let mut told_waiting = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(current) = file.as_mut() {
            // Truncated in place: start over.
            if current.metadata()?.len() < offset {
                offset = 0;
            }
            current.seek(SeekFrom::Start(offset))?;
            loop {
                let n = current.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                offset += n as u64;
            }
            out.flush()?;
        }
        // Replaced (rotated or recreated)? Switch once the old one is drained.
        let replaced = match (&file, std::fs::metadata(path)) {
            (Some(current), Ok(now)) => {
                let old = current.metadata()?;
                (old.dev(), old.ino()) != (now.dev(), now.ino())
            }
            (None, Ok(_)) => true,
            (_, Err(_)) => false,
        };
        if replaced {
            match manager::open_log(path) {
                Ok(Some(new)) => {
                    file = Some(new);
                    offset = 0;
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        if file.is_none() && !told_waiting {
            waiting(path);
            told_waiting = true;
        }
        if folder.is_none() {
            // The folder may have appeared (again) since.
            folder = watch.add_dir(dir).ok();
        }
        match watch.wait(Instant::now() + SAFETY_NET) {
            Ok(first) => {
                // One look at the file covers every event queued meanwhile;
                // only the end of the folder's watch (it was deleted)
                // matters: watch it again once it is back.
                let mut events = watch.drain().unwrap_or_default();
                events.push(first);
                let unwatched = |event: &WatchEvent| {
                    matches!(
                        event,
                        WatchEvent::Path {
                            change: Change::Unwatched,
                            ..
                        }
                    )
                };
                if events.iter().any(unwatched) {
                    folder = None;
                }
            }
            Err(_) => std::thread::sleep(SAFETY_NET),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A writer that hands what it gets to a channel.
    struct Sink(mpsc::Sender<Vec<u8>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .send(buf.to_vec())
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn expect(rx: &mpsc::Receiver<Vec<u8>>, wanted: &str) {
        let mut got = Vec::new();
        while got.len() < wanted.len() {
            let chunk = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("waited for {wanted:?}, got {got:?}"));
            got.extend(chunk);
        }
        assert_eq!(String::from_utf8_lossy(&got), wanted);
    }

    #[test]
    fn follows_appends_rotation_and_a_late_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let (tx, rx) = mpsc::channel();
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let follow_path = path.clone();
        // The thread ends when the test drops `rx` (the sink fails).
        let follower = std::thread::spawn(move || {
            let _ = follow(&follow_path, None, 0, &mut Sink(tx), |_| {
                let _ = waiting_tx.send(());
            });
        });
        waiting_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let append = |text: &str| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        append("first\n");
        expect(&rx, "first\n");
        append("second\n");
        expect(&rx, "second\n");
        std::fs::rename(&path, dir.path().join("server.log.1")).unwrap();
        append("after rotation\n");
        expect(&rx, "after rotation\n");
        std::fs::write(&path, "").unwrap();
        append("x\n");
        expect(&rx, "x\n");
        drop(rx);
        // One more write wakes the follower, whose write then fails.
        append("bye\n");
        follower.join().unwrap();
    }
}
