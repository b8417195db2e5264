//! Where state lives: the state root, each project's folder and files, and
//! creating folders with the right mode.

use std::ffi::OsString;
use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// Mode of every folder this crate creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file this crate creates.
pub const FILE_MODE: u32 = 0o600;

/// The ocm state root: `$OCM_STATE_DIR`, else `$XDG_STATE_HOME/ocm`, else
/// `~/.local/state/ocm`.
///
/// Empty variables are ignored; a relative `XDG_STATE_HOME` is ignored (the
/// XDG spec says so); a relative `OCM_STATE_DIR` is an error. The home folder
/// comes from `HOME`, else the password database. Nothing is created.
pub fn state_root() -> Result<PathBuf, Error> {
    state_root_from(
        std::env::var_os("OCM_STATE_DIR"),
        std::env::var_os("XDG_STATE_HOME"),
        std::env::home_dir().map(PathBuf::into_os_string),
    )
}

/// [`state_root`] from explicit values of `OCM_STATE_DIR`, `XDG_STATE_HOME`
/// and the home folder, so the rules can be tested without touching the
/// process environment.
pub fn state_root_from(
    ocm_state_dir: Option<OsString>,
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, Error> {
    let non_empty = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty(ocm_state_dir) {
        if dir.is_absolute() {
            return Ok(dir);
        }
        return Err(Error::RelativeStateDir { value: dir });
    }
    if let Some(xdg) = non_empty(xdg_state_home).filter(|p| p.is_absolute()) {
        return Ok(xdg.join("ocm"));
    }
    match non_empty(home).filter(|p| p.is_absolute()) {
        Some(home) => Ok(home.join(".local").join("state").join("ocm")),
        None => Err(Error::NoStateDir),
    }
}

/// The files of one project under the state root:
/// `servers/<project hash>/{server.json, server.lock, server.log}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectPaths {
    /// `servers/<project hash>/`.
    pub dir: PathBuf,
    /// `server.json`, the project's record.
    pub record: PathBuf,
    /// `server.lock`, the advisory lock (see [`lock`](crate::lock)). Never
    /// delete it while a process may use it.
    pub lock: PathBuf,
    /// `server.log`, the server's stdout and stderr.
    pub log: PathBuf,
}

impl ProjectPaths {
    /// The paths of the project whose hash (32 hex characters, see
    /// `portmap::project_hash`) is `project_hash`. Nothing is created.
    ///
    /// The hash is used as one path component as is; use
    /// [`is_project_hash`] first when it comes from outside.
    pub fn new(state_root: &Path, project_hash: &str) -> Self {
        let dir = Self::servers_dir(state_root).join(project_hash);
        ProjectPaths {
            record: dir.join("server.json"),
            lock: dir.join("server.lock"),
            log: dir.join("server.log"),
            dir,
        }
    }

    /// `<state root>/servers`, the parent of every project folder.
    pub fn servers_dir(state_root: &Path) -> PathBuf {
        state_root.join("servers")
    }

    /// `server.log.<n>`, the n-th rotated log (1 is the most recent).
    pub fn rotated_log(&self, n: u32) -> PathBuf {
        let mut name = OsString::from("server.log.");
        name.push(n.to_string());
        self.dir.join(name)
    }

    /// Rotates `server.log` keeping `keep` old copies; see [`rotate_file`].
    pub fn rotate_log(&self, keep: u32) -> Result<(), Error> {
        rotate_file(&self.log, keep)
    }
}

/// Whether `name` looks like a project hash: 32 lowercase hex characters.
pub fn is_project_hash(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The hashes of all project folders under `<state root>/servers`, sorted.
/// Entries that are not folders named by a project hash are ignored; a
/// missing `servers` folder gives an empty list.
pub fn project_hashes(state_root: &Path) -> Result<Vec<String>, Error> {
    let servers = ProjectPaths::servers_dir(state_root);
    let entries = match fs::read_dir(&servers) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::io(servers, err)),
    };
    let mut hashes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&servers, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && is_project_hash(&name) {
            hashes.push(name);
        }
    }
    hashes.sort();
    Ok(hashes)
}

/// Creates `path` and its missing parents, each with mode 0700 exactly
/// (whatever the umask). Folders that already exist keep their mode: ocm
/// never changes a folder it did not create (`OCM_STATE_DIR` may be a shared
/// one).
///
/// A project folder (`<root>/servers/<hash>`, and `servers` itself) that
/// is a symlink is refused with [`Error::Refused`]: the record, lock and log
/// would land wherever it points. The state root may be reached through a
/// symlink.
pub fn ensure_dir(path: &Path) -> Result<(), Error> {
    crate::open::check_layout_dir(path)?;
    let mut missing = Vec::new();
    let mut current = path;
    loop {
        match fs::metadata(current) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(Error::io(
                    current,
                    std::io::Error::new(ErrorKind::AlreadyExists, "exists and is not a folder"),
                ));
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {
                missing.push(current);
                match current.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => current = parent,
                    _ => break,
                }
            }
            Err(err) => return Err(Error::io(current, err)),
        }
    }
    for dir in missing.into_iter().rev() {
        match DirBuilder::new().mode(DIR_MODE).create(dir) {
            Ok(()) => {
                // The umask may have taken bits away; 0700 is what we want.
                fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(|e| Error::io(dir, e))?;
            }
            // Another process created it meanwhile: fine if it is a folder.
            Err(err) if err.kind() == ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(err) => return Err(Error::io(dir, err)),
        }
    }
    Ok(())
}

/// Rotates a log file: `path.<keep-1>` becomes `path.<keep>` (the oldest copy
/// is dropped), ..., `path.1` becomes `path.2`, and `path` becomes `path.1`.
/// Missing copies are skipped; when `path` itself is missing nothing moves.
/// With `keep == 0` nothing happens (the log keeps growing rather than being
/// deleted).
pub fn rotate_file(path: &Path, keep: u32) -> Result<(), Error> {
    if keep == 0 {
        return Ok(());
    }
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io(path, err)),
    }
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    for n in (1..keep).rev() {
        rename_if_exists(&numbered(n), &numbered(n + 1))?;
    }
    rename_if_exists(path, &numbered(1))
}

fn rename_if_exists(from: &Path, to: &Path) -> Result<(), Error> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::io(from, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn state_root_precedence() {
        let root = |a, b, c| state_root_from(a, b, c);
        assert_eq!(root(os("/s"), os("/x"), os("/h")).unwrap(), Path::new("/s"));
        assert_eq!(
            root(os(""), os("/x"), os("/h")).unwrap(),
            Path::new("/x/ocm")
        );
        assert_eq!(root(None, os("/x"), os("/h")).unwrap(), Path::new("/x/ocm"));
        // Relative XDG_STATE_HOME is ignored, as the XDG spec demands.
        assert_eq!(
            root(None, os("rel"), os("/h")).unwrap(),
            Path::new("/h/.local/state/ocm")
        );
        assert_eq!(
            root(None, os(""), os("/h")).unwrap(),
            Path::new("/h/.local/state/ocm")
        );
        assert!(matches!(
            root(os("rel/dir"), os("/x"), os("/h")),
            Err(Error::RelativeStateDir { .. })
        ));
        assert!(matches!(root(None, None, None), Err(Error::NoStateDir)));
        assert!(matches!(
            root(os(""), os(""), os("")),
            Err(Error::NoStateDir)
        ));
        assert!(matches!(
            root(None, None, os("relhome")),
            Err(Error::NoStateDir)
        ));
    }

    #[test]
    fn project_paths_layout() {
        let hash = "0123456789abcdef0123456789abcdef";
        let paths = ProjectPaths::new(Path::new("/state"), hash);
        let dir = Path::new("/state/servers").join(hash);
        assert_eq!(paths.dir, dir);
        assert_eq!(paths.record, dir.join("server.json"));
        assert_eq!(paths.lock, dir.join("server.lock"));
        assert_eq!(paths.log, dir.join("server.log"));
        assert_eq!(paths.rotated_log(1), dir.join("server.log.1"));
        assert_eq!(paths.rotated_log(12), dir.join("server.log.12"));
        assert!(is_project_hash(hash));
        assert!(!is_project_hash("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_project_hash("../../etc"));
    }
}
