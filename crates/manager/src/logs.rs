//! The server log: rotation at start, reading what one start wrote, and the
//! last lines of a log (read backwards, however long the file).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Rotates `log` when it is larger than `max_bytes`: `server.log.{keep-1}`
/// becomes `.{keep}`, ..., `server.log` becomes `server.log.1`; the oldest
/// beyond `keep` is deleted. With `keep == 0` the log is truncated instead.
pub fn rotate_if_needed(log: &Path, max_bytes: u64, keep: u32) -> Result<(), Error> {
    let size = match std::fs::metadata(log) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                action: "cannot read",
                path: log.to_path_buf(),
                source,
            });
        }
    };
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

/// `server.log` -> `server.log.N`.
pub fn numbered(log: &Path, n: u32) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The current length of the log (0 when it does not exist).
pub fn length(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// What the log holds from byte `offset` on (lossy UTF-8), at most `limit`
/// bytes.
pub fn read_from(log: &Path, offset: u64, limit: u64) -> String {
    let Ok(mut file) = File::open(log) else {
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
/// one string per line; empty when the log cannot be read.
pub fn last_lines(log: &Path, from: u64, n: usize) -> Vec<String> {
    let Ok(mut file) = File::open(log) else {
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
}
