//! Opening files in the state folder safely: never blocking (a FIFO where a
//! file should be would hang an open or a read for good), never following a
//! symlink (it would make ocm read, append to or create any file), and only
//! regular files of the user's own.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::Error;
use crate::paths::{FILE_MODE, is_project_hash};

/// How [`open_file`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenMode {
    /// Read only; a missing file is an error ([`Error::is_not_found`]).
    Read,
    /// Write at the end (and read), created (0600) when missing.
    Append,
    /// A new file (0600); fails when anything is at the path already.
    CreateNew,
    /// Read and write, created (0600) when missing, never truncated (a lock
    /// file).
    ReadWrite,
}

/// What ocm expects where it opens a file in the state folder.
const A_FILE: &str = "a regular file of the user running ocm";
/// What ocm expects where it keeps a project's folder.
const A_FOLDER: &str = "a folder";

/// Opens a file in the state folder without blocking and without following
/// a symlink, and checks that it is a regular file owned by the user.
///
/// The file is opened with `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` (and
/// close-on-exec), checked with fstat after the open, and then set back to
/// blocking mode (a regular file never blocks anyway). A FIFO, a socket, a
/// device, a symlink, a folder or a file of another user is refused with
/// [`Error::Refused`] (a folder with [`Error::Io`]), naming the path and
/// what is there; nothing is created through a symlink. Something that is
/// not a regular file is refused before it is opened, so opening a device
/// has no side effects. A project folder (`servers/<hash>`) that is a
/// symlink is refused too.
pub fn open_file(path: &Path, mode: OpenMode) -> Result<File, Error> {
    if let Some(dir) = path.parent() {
        check_layout_dir(dir)?;
    }
    // Refuse what is not a regular file before opening it at all.
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(refusal(path, &meta)),
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(Error::io(path, err)),
    }
    let mut options = OpenOptions::new();
    match mode {
        OpenMode::Read => options.read(true),
        OpenMode::Append => options.read(true).append(true).create(true).mode(FILE_MODE),
        OpenMode::CreateNew => options.write(true).create_new(true).mode(FILE_MODE),
        OpenMode::ReadWrite => options
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE),
    };
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = match options.open(path) {
        Ok(file) => file,
        // ELOOP: a symlink (O_NOFOLLOW); ENXIO: a FIFO without a reader or a
        // socket. Both mean something appeared since the check above.
        Err(err) if matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => {
            return Err(match std::fs::symlink_metadata(path) {
                Ok(meta) if !meta.is_file() => refusal(path, &meta),
                _ => Error::io(path, err),
            });
        }
        Err(err) => return Err(Error::io(path, err)),
    };
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(refusal(path, &meta));
    }
    let uid = effective_uid();
    if meta.uid() != uid {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            found: format!("owned by uid {} (ocm runs as uid {uid})", meta.uid()),
            expected: A_FILE,
        });
    }
    set_blocking(&file).map_err(|e| Error::io(path, e))?;
    Ok(file)
}

/// Refuses a symlink where ocm keeps a project's folder: `dir` when it is
/// `<root>/servers/<hash>`, and `<root>/servers` then. The state root itself
/// may be reached through a symlink (it is what the user configured); what
/// ocm keeps inside it may not: a symlinked project folder would put the
/// record, lock and log somewhere else.
pub(crate) fn check_layout_dir(dir: &Path) -> Result<(), Error> {
    let is_project_dir = dir
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(is_project_hash)
        && dir
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|name| name == "servers");
    if !is_project_dir {
        return Ok(());
    }
    let servers = dir.parent().unwrap_or(dir);
    for checked in [servers, dir] {
        match std::fs::symlink_metadata(checked) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::Refused {
                    path: checked.to_path_buf(),
                    found: describe(checked, &meta),
                    expected: A_FOLDER,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The error for something at `path` that is not a regular file.
fn refusal(path: &Path, meta: &std::fs::Metadata) -> Error {
    if meta.is_dir() {
        return Error::io(
            path,
            io::Error::new(
                ErrorKind::IsADirectory,
                "is a folder where a file should be; move it away",
            ),
        );
    }
    Error::Refused {
        path: path.to_path_buf(),
        found: describe(path, meta),
        expected: A_FILE,
    }
}

/// What is at `path`, for people: "a FIFO", "a symlink (to X)", ...
fn describe(path: &Path, meta: &std::fs::Metadata) -> String {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return match std::fs::read_link(path) {
            Ok(target) => format!("a symlink (to {})", target.display()),
            Err(_) => "a symlink".to_string(),
        };
    }
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    };
    what.to_string()
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Clears `O_NONBLOCK` on an open file.
fn set_blocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with plain integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        // SAFETY: as above.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
