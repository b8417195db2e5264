//! The server log: rotation at start, reading what one start wrote, and the
//! last lines of a log (read backwards, however long the file).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use statefile::OpenMode;

use crate::error::Error;

/// Opens the log for reading: never blocking, never through a symlink, only
/// a regular file of the user's own (`statefile::open_file`). `Ok(None)`
/// when there is no log; a FIFO, a symlink or another user's file there is
/// an error that names it and says to remove it.
pub fn open_log(log: &Path) -> Result<Option<File>, Error> {
    match statefile::open_file(log, OpenMode::Read) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Rotates `log` when it is larger than `max_bytes`: `server.log.{keep-1}`
/// becomes `.{keep}`, ..., `server.log` becomes `server.log.1`; the oldest
/// beyond `keep` is deleted. With `keep == 0` the log is truncated instead.
/// A log that is not a regular file of the user's (a FIFO, a symlink) is an
/// error naming it: the server would block on it or write elsewhere.
pub fn rotate_if_needed(log: &Path, max_bytes: u64, keep: u32) -> Result<(), Error> {
    let Some(file) = open_log(log)? else {
        return Ok(());
    };
    let size = file
        .metadata()
        .map_err(|source| Error::Io {
            action: "cannot read",
            path: log.to_path_buf(),
            source,
        })?
        .len();
    drop(file);
    if size <= max_bytes {
        return Ok(());
    }
    let rename = |from: &Path, to: &Path| match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            action: "cannot rotate",
            path: from.to_path_buf(),
            source,
        }),
    };
    if keep == 0 {
        return std::fs::remove_file(log).map_err(|source| Error::Io {
            action: "cannot remove",
            path: log.to_path_buf(),
            source,
        });
    }
    let _ = std::fs::remove_file(numbered(log, keep));
    for n in (1..keep).rev() {
        rename(&numbered(log, n), &numbered(log, n + 1))?;
    }
    rename(log, &numbered(log, 1))
}

/// Rotates the log of a server that is running and holds it open with
/// `O_APPEND`: when it is larger than `max_bytes`, its content is copied to
/// `server.log.1` (older copies move up, the oldest beyond `keep` goes) and
/// the log is truncated to nothing; the server's next write lands at the
/// new end. What the server writes between the copy and the truncation is
/// lost (a few lines at most): the price of not stopping it. Returns
/// whether it rotated.
pub fn copy_truncate_if_needed(log: &Path, max_bytes: u64, keep: u32) -> Result<bool, Error> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    let Some(mut file) = open_log(log)? else {
        return Ok(false);
    };
    let size = file.metadata().map_err(io("cannot read", log))?.len();
    if size <= max_bytes {
        return Ok(false);
    }
    if keep > 0 {
        let _ = std::fs::remove_file(numbered(log, keep));
        for n in (1..keep).rev() {
            match std::fs::rename(numbered(log, n), numbered(log, n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("cannot rotate", &numbered(log, n))(e));
                }
                _ => {}
            }
        }
        let first = numbered(log, 1);
        let mut copy = statefile::open_file(&first, OpenMode::CreateNew)?;
        std::io::copy(&mut file, &mut copy).map_err(io("cannot copy to", &first))?;
    }
    let writable = statefile::open_file(log, OpenMode::ReadWrite)?;
    writable.set_len(0).map_err(io("cannot truncate", log))?;
    Ok(true)
}

/// `server.log` -> `server.log.N`.
pub fn numbered(log: &Path, n: u32) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The current length of the log (0 when it does not exist or is not a
/// regular file: a symlink is not followed).
pub fn length(log: &Path) -> u64 {
    std::fs::symlink_metadata(log)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map_or(0, |m| m.len())
}

/// What the log holds from byte `offset` on (lossy UTF-8), at most `limit`
/// bytes; empty when it cannot be read (see [`open_log`]).
pub fn read_from(log: &Path, offset: u64, limit: u64) -> String {
    let Ok(Some(mut file)) = open_log(log) else {
        return String::new();
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.take(limit).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// How much is read per step when reading a file backwards.
const TAIL_CHUNK: u64 = 64 * 1024;

/// The last `n` lines of an open file that begin at or after byte `from`,
/// and the offset its end was at. Reads backwards from the end in chunks
/// until it has `n` lines (or reaches `from`), so a long log costs what its
/// last lines cost. A last line without a newline counts as a line.
pub fn tail(file: &mut File, from: u64, n: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let end = file.metadata()?.len();
    let from = from.min(end);
    if n == 0 {
        return Ok((Vec::new(), end));
    }
    // `bytes` holds the file from `start` to `end`.
    let mut bytes: Vec<u8> = Vec::new();
    let mut start = end;
    loop {
        // The newline ending the last line is not a line boundary to count.
        let body = match bytes.last() {
            Some(b'\n') if start + bytes.len() as u64 == end => &bytes[..bytes.len() - 1],
            _ => &bytes[..],
        };
        let newlines = memchr_count(body);
        if newlines >= n || start == from {
            let cut = if newlines >= n {
                // After the n-th newline from the end.
                let mut seen = 0;
                let mut at = 0;
                for (i, &b) in body.iter().enumerate().rev() {
                    if b == b'\n' {
                        seen += 1;
                        if seen == n {
                            at = i + 1;
                            break;
                        }
                    }
                }
                at
            } else {
                0
            };
            return Ok((bytes.split_off(cut), end));
        }
        let step = TAIL_CHUNK.min(start - from);
        start -= step;
        let mut chunk = vec![0u8; step as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&bytes);
        bytes = chunk;
    }
}

fn memchr_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// The last `n` lines of `log` from byte `from` on, as text (lossy UTF-8),
/// one string per line; empty when the log cannot be read (see
/// [`open_log`]).
pub fn last_lines(log: &Path, from: u64, n: usize) -> Vec<String> {
    let Ok(Some(mut file)) = open_log(log) else {
        return Vec::new();
    };
    let Ok((bytes, _)) = tail(&mut file, from, n) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        for round in 0..5 {
            std::fs::write(&log, format!("round {round}\n").repeat(10)).unwrap();
            rotate_if_needed(&log, 20, 2).unwrap();
        }
        assert!(!log.exists());
        assert!(
            std::fs::read_to_string(numbered(&log, 1))
                .unwrap()
                .starts_with("round 4")
        );
        assert!(
            std::fs::read_to_string(numbered(&log, 2))
                .unwrap()
                .starts_with("round 3")
        );
        assert!(!numbered(&log, 3).exists());
    }

    #[test]
    fn small_logs_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, "short\n").unwrap();
        rotate_if_needed(&log, 1000, 2).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "short\n");
        rotate_if_needed(&dir.path().join("missing.log"), 0, 2).unwrap();
    }

    #[test]
    fn tails_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, &text).unwrap();
        assert_eq!(
            last_lines(&log, 0, 3),
            vec!["line 28", "line 29", "line 30"]
        );
        assert_eq!(read_from(&log, 7, 7), "line 2\n");
        std::fs::write(&log, "a\nb").unwrap();
        assert_eq!(last_lines(&log, 0, 5), vec!["a", "b"]);
        assert_eq!(last_lines(&log, 2, 5), vec!["b"]);
        assert!(read_from(&dir.path().join("none"), 0, 10).is_empty());
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Runs `f` on a thread, failing when it is still blocked after 10 s
    /// (a blocked open of a FIFO never returns; the thread is left behind).
    fn promptly<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{what} was still blocked after 10 s"))
    }

    #[test]
    fn a_fifo_log_is_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        mkfifo(&log);
        let path = log.clone();
        assert_eq!(promptly("read_from", move || read_from(&path, 0, 100)), "");
        let path = log.clone();
        assert!(promptly("last_lines", move || last_lines(&path, 0, 5)).is_empty());
        assert_eq!(length(&log), 0);
        let err = rotate_if_needed(&log, 0, 2).unwrap_err().to_string();
        assert!(
            err.contains("a FIFO") && err.contains("server.log"),
            "{err}"
        );
        assert!(err.contains("remove"), "{err}");
    }

    #[test]
    fn a_symlinked_log_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let elsewhere = dir.path().join("precious");
        std::fs::write(&elsewhere, "line 1\nline 2\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &log).unwrap();
        assert_eq!(read_from(&log, 0, 100), "");
        assert!(last_lines(&log, 0, 5).is_empty());
        assert_eq!(length(&log), 0);
        let err = rotate_if_needed(&log, 0, 2).unwrap_err().to_string();
        assert!(
            err.contains("a symlink") && err.contains("server.log"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&elsewhere).unwrap(),
            "line 1\nline 2\n"
        );
    }

    fn tail_of(text: &str, n: usize) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, text).unwrap();
        let mut file = File::open(&path).unwrap();
        let (bytes, end) = tail(&mut file, 0, n).unwrap();
        assert_eq!(end, text.len() as u64);
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn last_lines_of_files() {
        assert_eq!(tail_of("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail_of("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_of("a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(tail_of("a\nb\nc\n", 0), "");
        assert_eq!(tail_of("", 3), "");
        assert_eq!(tail_of("\n\n", 1), "\n");
    }

    #[test]
    fn tails_of_a_log_larger_than_many_chunks_are_whole() {
        // 10 MiB of short lines plus one 200 KiB line: reading backwards
        // finds the last lines whatever the size, and the long one whole.
        let mut text = "x\n".repeat(5 * 1024 * 1024);
        let long = "y".repeat(200 * 1024);
        text.push_str(&long);
        text.push_str("\nlast\n");
        assert_eq!(tail_of(&text, 2), format!("{long}\nlast\n"));
        let lines = 3 * 1024 * 1024;
        assert_eq!(
            tail_of(&text, lines).len(),
            (lines - 2) * 2 + long.len() + 6
        );
    }

    #[test]
    fn a_running_servers_log_is_copied_then_truncated_and_its_writer_goes_on() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        // The server's descriptor: O_APPEND, kept open across the rotation.
        let mut server = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        server.write_all(&b"x".repeat(100)).unwrap();
        assert!(!copy_truncate_if_needed(&log, 1000, 2).unwrap());
        server.write_all(&b"y".repeat(1000)).unwrap();
        assert!(copy_truncate_if_needed(&log, 1000, 2).unwrap());
        assert_eq!(std::fs::read(numbered(&log, 1)).unwrap().len(), 1100);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        server.write_all(b"after\n").unwrap();
        // Appended at the new end, not at the old offset (no hole).
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");
        server.write_all(&b"z".repeat(2000)).unwrap();
        assert!(copy_truncate_if_needed(&log, 1000, 2).unwrap());
        assert!(numbered(&log, 2).exists());
        assert!(
            std::fs::read_to_string(numbered(&log, 1))
                .unwrap()
                .starts_with("after")
        );
    }
}
