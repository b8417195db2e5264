//! The server log: rotation at start, reading what one start wrote, tails.

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

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
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
            last_lines(&read_from(&log, 0, 1 << 20), 3),
            vec!["line 28", "line 29", "line 30"]
        );
        assert_eq!(read_from(&log, 7, 7), "line 2\n");
        assert_eq!(last_lines("a\nb", 5), vec!["a", "b"]);
        assert!(read_from(&dir.path().join("none"), 0, 10).is_empty());
    }
}
