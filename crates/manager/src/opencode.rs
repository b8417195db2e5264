//! Which opencode: the pinned version, and finding its binary (explicit,
//! `OPENCODE_BIN`, `PATH`, then the `cargo xtask opencode` cache).

use std::path::{Path, PathBuf};

use crate::Error;

/// The OpenCode release ocm is built and tested against; `cargo xtask
/// opencode` installs exactly this one.
pub const OPENCODE_VERSION: &str = "1.18.33";

/// The folder `cargo xtask opencode` installs the pinned opencode into:
/// `$XDG_CACHE_HOME/ocm/opencode-<version>`, else
/// `~/.cache/ocm/opencode-<version>`.
pub fn opencode_cache_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty() && Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| Path::new(&h).join(".cache"))
        })?;
    Some(
        cache
            .join("ocm")
            .join(format!("opencode-{OPENCODE_VERSION}")),
    )
}

/// The opencode binary inside an npm prefix where `opencode-ai` was
/// installed, for this platform.
pub fn opencode_in_prefix(prefix: &Path) -> Option<PathBuf> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    [
        format!("opencode-{os}-{arch}"),
        format!("opencode-{os}-{arch}-baseline"),
        format!("opencode-{os}-{arch}-musl"),
        format!("opencode-{os}-{arch}-baseline-musl"),
    ]
    .iter()
    .map(|package| {
        prefix
            .join("node_modules")
            .join(package)
            .join("bin")
            .join("opencode")
    })
    .find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the opencode binary: `explicit`, else `OPENCODE_BIN`, else `PATH`,
/// else the `cargo xtask opencode` cache. The path returned is absolute (a
/// relative one is taken against the current folder, where it was checked),
/// because the server is started in the project's folder.
pub fn find_opencode(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let found = find_opencode_as_given(explicit)?;
    std::path::absolute(&found).map_err(|source| Error::Io {
        action: "cannot make absolute",
        path: found,
        source,
    })
}

fn find_opencode_as_given(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let not_executable = |path: &Path, from: &str| Error::OpencodeNotFound {
        detail: format!("{from}{} is not an executable file", path.display()),
    };
    if let Some(bin) = explicit {
        return if is_executable(bin) {
            Ok(bin.to_path_buf())
        } else {
            Err(not_executable(bin, "the configured binary "))
        };
    }
    if let Some(bin) = std::env::var_os("OPENCODE_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        return if is_executable(&bin) {
            Ok(bin)
        } else {
            Err(not_executable(&bin, "OPENCODE_BIN="))
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("opencode");
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    if let Some(bin) = opencode_cache_dir().and_then(|dir| opencode_in_prefix(&dir)) {
        return Ok(bin);
    }
    Err(Error::OpencodeNotFound {
        detail: format!(
            "not in OPENCODE_BIN, PATH or {}",
            opencode_cache_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "~/.cache/ocm".into())
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_binary_is_a_clear_error() {
        let err = find_opencode(Some(Path::new("/nonexistent/opencode"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/opencode"), "{err}");
    }
}
