//! Reading JSON state files with a size bound, telling a missing, empty,
//! corrupt or wrong-shaped file apart, and moving an unusable one aside
//! instead of deleting it.

use std::ffi::{CString, OsString};
use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::error::Category;

use crate::atomic::{split_file_path, sync_dir};
use crate::open::{OpenMode, open_file};
use crate::{Error, time};

/// Larger state files are treated as corrupt rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads the whole file (at most [`MAX_FILE_BYTES`]), `Ok(None)` when it
/// does not exist. Opened with [`open_file`]: a FIFO, a symlink or a file of
/// another user is refused, never waited on or followed.
fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    let file = match open_file(path, OpenMode::Read) {
        Ok(file) => file,
        Err(err) if err.is_not_found() => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            detail: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Some(bytes))
}

/// Maps a serde_json error: syntax and end-of-input are corruption, data
/// errors are a wrong shape.
fn json_error(path: &Path, err: serde_json::Error) -> Error {
    let path = path.to_path_buf();
    match err.classify() {
        Category::Eof => Error::Corrupt {
            path,
            detail: format!("truncated ({err})"),
        },
        Category::Syntax | Category::Io => Error::Corrupt {
            path,
            detail: err.to_string(),
        },
        Category::Data => Error::WrongShape {
            path,
            detail: err.to_string(),
        },
    }
}

/// Reads a JSON file into `T`.
///
/// A missing file is `Ok(None)`. An unreadable file is [`Error::Io`]; a
/// FIFO, socket, symlink or file of another user [`Error::Refused`] (see
/// [`open_file`]; it never blocks); an empty one [`Error::Empty`]; invalid
/// or truncated JSON [`Error::Corrupt`]; JSON that does not fit `T`
/// [`Error::WrongShape`]. Never panics.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    let Some(bytes) = read_bytes(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| json_error(path, e))
}

/// Like [`read_json`] for a JSON object carrying a `schemaVersion`: a
/// version above `supported` is [`Error::FutureVersion`] (checked before the
/// shape, since a newer schema may look different); a missing, zero or
/// non-integer version is [`Error::WrongShape`].
pub fn read_json_versioned<T: DeserializeOwned>(
    path: &Path,
    supported: u32,
) -> Result<Option<T>, Error> {
    let Some(bytes) = read_bytes(path)? else {
        return Ok(None);
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| json_error(path, e))?;
    let wrong_shape = |detail: String| Error::WrongShape {
        path: path.to_path_buf(),
        detail,
    };
    let Value::Object(object) = &value else {
        return Err(wrong_shape(format!(
            "expected a JSON object, found {}",
            json_kind(&value)
        )));
    };
    match object.get("schemaVersion") {
        None => return Err(wrong_shape("no schemaVersion field".to_owned())),
        Some(version) => match version.as_u64() {
            Some(0) | None => {
                return Err(wrong_shape(format!(
                    "schemaVersion must be a positive integer, found {version}"
                )));
            }
            Some(found) if found > u64::from(supported) => {
                return Err(Error::FutureVersion {
                    path: path.to_path_buf(),
                    found,
                    supported,
                });
            }
            Some(_) => {}
        },
    }
    T::deserialize(value)
        .map(Some)
        .map_err(|e| wrong_shape(e.to_string()))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Moves a corrupt file (or whatever is at `path`, even a folder) aside to
/// `<name>.corrupt-<UTC timestamp>` in the same folder and returns the new
/// path. The name is unique: when it is taken (two calls in the same
/// millisecond) `-2`, `-3`, ... is appended, and the rename never replaces an
/// existing file. Call it while holding the project's lock, so that a good
/// record written meanwhile is not moved aside.
pub fn quarantine(path: &Path) -> Result<PathBuf, Error> {
    move_aside(path, "corrupt")
}

/// Like [`quarantine`], with another label: moves whatever is at `path` to
/// `<name>.<label>-<UTC timestamp>` (for example `server.json.newer-...` for
/// a record written by a newer program) and returns the new path.
pub fn move_aside(path: &Path, label: &str) -> Result<PathBuf, Error> {
    move_aside_stamped(path, label, &time::compact_utc(SystemTime::now()))
}

fn move_aside_stamped(path: &Path, label: &str, stamp: &str) -> Result<PathBuf, Error> {
    let (dir, name) = split_file_path(path)?;
    for attempt in 1u32..=1000 {
        let mut target_name = OsString::from(&name);
        target_name.push(format!(".{label}-"));
        target_name.push(stamp);
        if attempt > 1 {
            target_name.push(format!("-{attempt}"));
        }
        let target = dir.join(target_name);
        match rename_no_replace(path, &target) {
            Ok(()) => {
                sync_dir(&dir)?;
                return Ok(target);
            }
            Err(err) if err.kind() == ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(Error::io(path, err)),
        }
    }
    Err(Error::io(
        path,
        std::io::Error::new(
            ErrorKind::AlreadyExists,
            format!("no free .{label}-<timestamp> name"),
        ),
    ))
}

/// rename(2) that fails with AlreadyExists instead of replacing the target.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    let c_from = CString::new(from.as_os_str().as_bytes())?;
    let c_to = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        // The filesystem (or kernel) has no RENAME_NOREPLACE: a hard link
        // also refuses to replace, then the old name goes.
        Some(libc::EINVAL | libc::ENOSYS) if !from.is_dir() => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Some(libc::EINVAL | libc::ENOSYS) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(ErrorKind::AlreadyExists.into());
            }
            fs::rename(from, to)
        }
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_never_replaces_an_earlier_one_with_the_same_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.json");
        let stamp = "20261121T100000.123Z";
        let mut moved = Vec::new();
        for i in 0..3 {
            fs::write(&path, format!("bad {i}")).unwrap();
            moved.push(move_aside_stamped(&path, "corrupt", stamp).unwrap());
        }
        let names: Vec<_> = moved
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "server.json.corrupt-20261121T100000.123Z",
                "server.json.corrupt-20261121T100000.123Z-2",
                "server.json.corrupt-20261121T100000.123Z-3",
            ]
        );
        for (i, p) in moved.iter().enumerate() {
            assert_eq!(fs::read_to_string(p).unwrap(), format!("bad {i}"));
        }
    }

    #[test]
    fn rename_no_replace_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, "a").unwrap();
        fs::write(&b, "b").unwrap();
        let err = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&b).unwrap(), "b");
        assert_eq!(fs::read_to_string(&a).unwrap(), "a");
    }
}
