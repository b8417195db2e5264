//! What a [`Manager`](crate::Manager) is told: binary, state root, host,
//! ports, environment, password, timeouts and log rotation.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;

/// The OpenCode release ocm is built and tested against; `cargo xtask
/// opencode` installs exactly this one.
pub const OPENCODE_VERSION: &str = "1.18.33";

/// How the port of a project's server is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PortPolicy {
    /// The project's deterministic port (`28000 + md5(path) % 1000`, the one
    /// other OpenCode managers use); when something else holds it, the next
    /// free candidate in 28000-28999, recorded so the server is found again.
    #[default]
    Project,
    /// `--port 0`: opencode picks, the port is read from its listening line.
    Auto,
    /// Exactly this port; an error names the holder when it is taken.
    Fixed(u16),
    /// The first free port of this range.
    Range(RangeInclusive<u16>),
}

/// Where the server's password comes from. With a password, opencode
/// requires HTTP Basic auth on every route.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum PasswordPolicy {
    /// No password: the server is open to anything on the host.
    #[default]
    None,
    /// This password (e.g. read from `OPENCODE_SERVER_PASSWORD`).
    Fixed(String),
    /// A random password made once per project and kept, mode 0600, in the
    /// project's state folder.
    Generate,
}

impl std::fmt::Debug for PasswordPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordPolicy::None => f.write_str("None"),
            PasswordPolicy::Fixed(_) => f.write_str("Fixed(<redacted>)"),
            PasswordPolicy::Generate => f.write_str("Generate"),
        }
    }
}

/// Configuration of a [`Manager`](crate::Manager). `Config::default()` is
/// what `ocm` uses without flags; [`Config::from_env`] adds the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The opencode binary; `None`: `OPENCODE_BIN`, else `PATH`, else the
    /// `cargo xtask opencode` cache.
    pub opencode_bin: Option<PathBuf>,
    /// The state root; `None`: `OCM_STATE_DIR`, else `$XDG_STATE_HOME/ocm`,
    /// else `~/.local/state/ocm`.
    pub state_root: Option<PathBuf>,
    /// The address the server binds (`127.0.0.1`). A non-loopback address is
    /// refused unless a password is configured.
    pub hostname: String,
    /// How the port is chosen.
    pub port_policy: PortPolicy,
    /// Variables set in the server's environment (on top of ocm's own).
    pub env_set: Vec<(String, String)>,
    /// Variables removed from the server's environment.
    pub env_remove: Vec<String>,
    /// The server's password.
    pub password: PasswordPolicy,
    /// From spawn to a healthy server, per attempt.
    pub start_timeout: Duration,
    /// One health request.
    pub health_timeout: Duration,
    /// Between SIGTERM and SIGKILL when stopping.
    pub stop_grace: Duration,
    /// Waiting for another process that holds the project's lock.
    pub lock_timeout: Duration,
    /// `server.log` is rotated when it is larger than this at a start.
    pub log_max_bytes: u64,
    /// How many rotated logs (`server.log.1` ...) are kept.
    pub log_keep: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            opencode_bin: None,
            state_root: None,
            hostname: "127.0.0.1".to_string(),
            port_policy: PortPolicy::Project,
            env_set: Vec::new(),
            env_remove: Vec::new(),
            password: PasswordPolicy::None,
            start_timeout: Duration::from_secs(30),
            health_timeout: Duration::from_secs(2),
            stop_grace: Duration::from_secs(5),
            // Long enough for another process to finish a start with its
            // retry and a stop in front of it.
            lock_timeout: Duration::from_secs(90),
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 3,
        }
    }
}

impl Config {
    /// The default configuration plus the environment: a non-empty
    /// `OPENCODE_SERVER_PASSWORD` becomes the password.
    pub fn from_env() -> Self {
        let mut config = Config::default();
        if let Some(password) = std::env::var("OPENCODE_SERVER_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
        {
            config.password = PasswordPolicy::Fixed(password);
        }
        config
    }

    /// Checks what can be checked without touching anything.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if !is_loopback(&self.hostname) && self.password == PasswordPolicy::None {
            return Err(Error::NonLoopbackWithoutPassword {
                hostname: self.hostname.clone(),
            });
        }
        if let PortPolicy::Range(range) = &self.port_policy
            && range.is_empty()
        {
            return Err(Error::Config(format!(
                "the port range {}-{} is empty",
                range.start(),
                range.end()
            )));
        }
        if let PortPolicy::Fixed(0) = self.port_policy {
            return Err(Error::Config(
                "a fixed port must not be 0 (use the auto port policy)".into(),
            ));
        }
        for (name, _) in &self.env_set {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(Error::Config(format!(
                    "{name:?} is not a valid environment variable name"
                )));
            }
        }
        Ok(())
    }
}

/// True for `127.0.0.1` (any of 127/8), `::1` and `localhost`.
pub fn is_loopback(hostname: &str) -> bool {
    if hostname.eq_ignore_ascii_case("localhost") {
        return true;
    }
    hostname
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

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
    fn loopback_names() {
        for name in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"] {
            assert!(is_loopback(name), "{name}");
        }
        for name in ["0.0.0.0", "10.0.0.1", "::", "example.com", ""] {
            assert!(!is_loopback(name), "{name}");
        }
    }

    #[test]
    fn non_loopback_needs_a_password() {
        let mut config = Config {
            hostname: "0.0.0.0".into(),
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(Error::NonLoopbackWithoutPassword { .. })
        ));
        config.password = PasswordPolicy::Generate;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_ports_and_env_names_are_refused() {
        let empty = Config {
            #[allow(clippy::reversed_empty_ranges)]
            port_policy: PortPolicy::Range(5000..=4000),
            ..Config::default()
        };
        assert!(matches!(empty.validate(), Err(Error::Config(_))));
        let zero = Config {
            port_policy: PortPolicy::Fixed(0),
            ..Config::default()
        };
        assert!(matches!(zero.validate(), Err(Error::Config(_))));
        let env = Config {
            env_set: vec![("A=B".into(), "x".into())],
            ..Config::default()
        };
        assert!(matches!(env.validate(), Err(Error::Config(_))));
    }

    #[test]
    fn password_is_not_in_debug_output() {
        let policy = PasswordPolicy::Fixed("hunter2".into());
        assert!(!format!("{policy:?}").contains("hunter2"));
    }

    #[test]
    fn explicit_missing_binary_is_a_clear_error() {
        let err = find_opencode(Some(Path::new("/nonexistent/opencode"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/opencode"), "{err}");
    }
}
