//! JSON lines appended to a state file, for bookkeeping where each line
//! supersedes the ones before it (a session's totals after each turn).
//!
//! An append to an existing file is one plain write, without fsync: an
//! atomic replace ([`write_atomic`](crate::write_atomic)) creates and
//! renames a file, and each of those waits for the file system's journal
//! (1 to 8 ms while another process writes, measured on ext4 after an
//! OpenCode turn). A reader takes the last whole line, so a cut last line
//! (a power loss, a read during the append) is skipped; a power loss may
//! lose the newest lines.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::open::{OpenMode, open_file};
use crate::paths::ensure_dir;

/// How much of a file's end [`read_last_line`] reads.
pub const LAST_LINE_WINDOW: u64 = 1024 * 1024;

/// Appends `value` as one JSON line to `path` in one write (the file 0600
/// and its folder 0700 created when missing), on a line of its own also
/// after a cut one. Returns the file's length after it. Appends to one
/// file must not run at the same time (the caller holds a lock).
pub fn append_line<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<u64, Error> {
    let mut line = serde_json::to_vec(value).map_err(|source| Error::Serialize {
        path: path.to_path_buf(),
        source,
    })?;
    line.push(b'\n');
    if let Some(dir) = path.parent() {
        ensure_dir(dir)?;
    }
    let mut file = open_file(path, OpenMode::Append)?;
    (|| {
        let len = file.metadata()?.len();
        let mut last = [b'\n'];
        if len > 0 {
            file.read_exact_at(&mut last, len - 1)?;
        }
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
        file.write_all(&line)?;
        Ok(file.metadata()?.len())
    })()
    .map_err(|e| Error::io(path, e))
}

/// The last line of `path` (within its last [`LAST_LINE_WINDOW`] bytes)
/// that is a whole JSON `T` which `accept` takes; `Ok(None)` when the file
/// does not exist or has no such line.
pub fn read_last_line<T: DeserializeOwned>(
    path: &Path,
    accept: impl Fn(&T) -> bool,
) -> Result<Option<T>, Error> {
    let mut file = match open_file(path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LAST_LINE_WINDOW)))
        .and_then(|_| file.take(LAST_LINE_WINDOW).read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    Ok(bytes
        .split(|&b| b == b'\n')
        .rev()
        .filter_map(|line| serde_json::from_slice::<T>(line).ok())
        .find(|value| accept(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_whole_line_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("tally");
        assert_eq!(read_last_line::<u32>(&path, |_| true).unwrap(), None);
        append_line(&path, &1u32).unwrap();
        let len = append_line(&path, &2u32).unwrap();
        assert_eq!(len, 4);
        assert_eq!(read_last_line::<u32>(&path, |_| true).unwrap(), Some(2));
        assert_eq!(read_last_line::<u32>(&path, |n| *n < 2).unwrap(), Some(1));
        // A line cut by a power loss, or read while it is written.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"3")
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"cut")
            .unwrap();
        assert_eq!(read_last_line::<u32>(&path, |_| true).unwrap(), Some(2));
        // The next line after a cut one is whole.
        append_line(&path, &4u32).unwrap();
        assert_eq!(read_last_line::<u32>(&path, |_| true).unwrap(), Some(4));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
