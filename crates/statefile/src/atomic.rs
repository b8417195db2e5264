//! Atomic writes: a temp file, fsync, rename and fsync of the folder, so a
//! reader or a crash sees the old content or the new, never a mix.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::Error;
use crate::open::{OpenMode, open_file};
use crate::paths::{FILE_MODE, ensure_dir};

/// Marker between the record name and the writer's id in a temp file name:
/// `.<name>.tmp-<pid>-<counter>-<random>`.
const TEMP_MARKER: &str = ".tmp-";

/// A temp file older than this is stale even if its pid is alive (the pid
/// was reused, or lives in another pid namespace): no write takes that long.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `value` as pretty JSON to `path` atomically, mode 0600.
///
/// See [`write_private`] for the guarantees. The parent folder is created
/// (0700) if missing.
pub fn write_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), Error> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Serialize {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_private(path, &bytes)
}

/// Writes `bytes` to `path` atomically with mode 0600 (also for secrets).
///
/// The bytes go to a uniquely named temp file in the same folder, which is
/// fsynced and then renamed over `path`, and the folder is fsynced. Readers
/// and a crash at any point see either the old file or the new one, never a
/// mix. A crash can leave a temp file behind (`.<name>.tmp-<pid>-...`); it is
/// never read as the record and [`remove_stale_temp_files`] removes it. The
/// parent folder is created (0700) if missing.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let (dir, name) = split_file_path(path)?;
    ensure_dir(&dir)?;
    let temp = dir.join(temp_name(&name));
    let mut file = open_file(&temp, OpenMode::CreateNew)?;
    let result = (|| {
        // The umask may have taken bits away; 0600 is what we want.
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    drop(file);
    if let Err(err) = result {
        let _ = fs::remove_file(&temp);
        return Err(Error::io(&temp, err));
    }
    if let Err(err) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(Error::io(path, err));
    }
    sync_dir(&dir)?;
    // What a killed writer of this file left behind goes now. Best effort:
    // the record is written, and a leftover only costs space.
    let _ = remove_stale_temps(&dir, Some(&name));
    Ok(())
}

/// Fsyncs a folder so that a rename or create in it survives a power loss.
/// Opened with `O_DIRECTORY`, so whatever else is there never blocks.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK)
        .open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// The folder (`.` for a bare name) and the file name of `path`.
pub(crate) fn split_file_path(path: &Path) -> Result<(PathBuf, std::ffi::OsString), Error> {
    let name = path.file_name().ok_or_else(|| Error::NotAFilePath {
        path: path.to_path_buf(),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

fn temp_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let pid = std::process::id();
    let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = std::ffi::OsString::from(".");
    out.push(name);
    out.push(format!("{TEMP_MARKER}{pid}-{counter}-{:08x}", random_ish()));
    out
}

/// Not cryptographic: only makes names from different processes that share
/// a pid (pid namespaces) differ; create_new catches any collision anyway.
/// std's RandomState is seeded from the OS once per process.
fn random_ish() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(nanos);
    hasher.write_u64(TEMP_COUNTER.load(Ordering::Relaxed));
    hasher.finish() as u32
}

/// Whether `temp`, a temp file name, was made for the file named `of`
/// (`.<of>.tmp-<id>`, the marker right after the name).
fn is_temp_of(temp: &OsStr, of: &str) -> bool {
    temp.to_str()
        .and_then(|t| t.strip_prefix('.'))
        .and_then(|t| t.strip_prefix(of))
        .and_then(|rest| rest.rsplit_once(TEMP_MARKER))
        .is_some_and(|(between, _)| between.is_empty())
}

/// If `file_name` is a temp file of [`write_private`], the pid of its writer.
pub fn temp_file_writer(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    let (_, id) = rest.rsplit_once(TEMP_MARKER)?;
    let mut parts = id.split('-');
    let pid = parts.next()?.parse().ok()?;
    let counter = parts.next()?;
    let random = parts.next()?;
    let ok = !counter.is_empty()
        && counter.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 8
        && random.bytes().all(|b| b.is_ascii_hexdigit())
        && parts.next().is_none();
    ok.then_some(pid)
}

/// Removes temp files left in `dir` by writers that crashed: those whose
/// writer pid is gone, and any older than [`STALE_TEMP_AGE`]. Temp files of
/// live writers (this process included) are kept, since they may be about
/// to be renamed. Returns the removed paths.
pub fn remove_stale_temp_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    remove_stale_temps(dir, None)
}

/// [`remove_stale_temp_files`], for the temp files of the file named `of`
/// only when it is given.
fn remove_stale_temps(dir: &Path, of: Option<&OsStr>) -> Result<Vec<PathBuf>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::io(dir, err)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_file_writer) else {
            continue;
        };
        if let Some(of) = of.and_then(OsStr::to_str)
            && !is_temp_of(&name, of)
        {
            continue;
        }
        let path = entry.path();
        let old = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if old || !pid_alive(pid) {
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(path, err)),
            }
        }
    }
    Ok(removed)
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognized_and_unique() {
        let a = temp_name(std::ffi::OsStr::new("server.json"));
        let b = temp_name(std::ffi::OsStr::new("server.json"));
        assert_ne!(a, b);
        let a = a.to_str().unwrap();
        assert!(a.starts_with(".server.json.tmp-"), "{a}");
        assert_eq!(temp_file_writer(a), Some(std::process::id()));
        for not_temp in [
            "server.json",
            "server.json.corrupt-20260101T000000.000Z",
            ".server.json.tmp-",
            ".server.json.tmp-12-3",
            ".server.json.tmp-x-3-0000abcd",
            ".server.json.tmp-12-3-0000abcd-9",
            "server.json.tmp-12-3-0000abcd",
        ] {
            assert_eq!(temp_file_writer(not_temp), None, "{not_temp}");
        }
        assert_eq!(temp_file_writer(".a.tmp-b.tmp-7-0-deadbeef"), Some(7));
        assert!(is_temp_of(OsStr::new(a), "server.json"));
        assert!(!is_temp_of(OsStr::new(a), "server"));
        assert!(!is_temp_of(OsStr::new(".a.tmp-b.tmp-7-0-deadbeef"), "a"));
        assert!(is_temp_of(
            OsStr::new(".a.tmp-b.tmp-7-0-deadbeef"),
            "a.tmp-b"
        ));
    }
}
