//! What a [`Manager`](crate::Manager) is told: binary, state root, host,
//! ports, environment, password, timeouts and log rotation.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

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
    /// What the project had: a server whose record says it had a password
    /// is replaced with the same one (a generated one is kept in the state
    /// folder; a given one must be given again); otherwise none, and the
    /// server is open to anything on the host.
    #[default]
    None,
    /// No password, said explicitly: turns off a password the project had.
    Off,
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
            PasswordPolicy::Off => f.write_str("Off"),
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

    /// The state root this configuration names (`state_root`, else
    /// `OCM_STATE_DIR`, else `$XDG_STATE_HOME/ocm`, else
    /// `~/.local/state/ocm`), worked out without touching anything: it may
    /// not exist yet. [`Manager::new`](crate::Manager::new) creates and
    /// canonicalizes it.
    pub fn named_state_root(&self) -> Result<PathBuf, Error> {
        match &self.state_root {
            Some(root) => Ok(portmap::resolve_path(root)?),
            None => Ok(statefile::state_root()?),
        }
    }

    /// Checks what can be checked without touching anything.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        check_hostname(&self.hostname)?;
        if !is_loopback(&self.hostname)
            && matches!(self.password, PasswordPolicy::None | PasswordPolicy::Off)
        {
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

/// Refuses what cannot be an address or a host name before anything runs:
/// an empty host, `host:port`, a leading `-` (opencode would read an
/// option), spaces and control characters. Whether the name resolves and
/// the address is this machine's is for the bind check to say.
fn check_hostname(hostname: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::Config(format!("bad hostname {hostname:?}: {why}")));
    let bare = hostname
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(hostname);
    if bare.is_empty() {
        return bad("it is empty; use an IP address such as 127.0.0.1");
    }
    let bracketed = bare.len() != hostname.len();
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) if bracketed => {
            return bad("brackets go only around an IPv6 address");
        }
        Ok(_) => return Ok(()),
        Err(_) => {}
    }
    if bare.contains(':') {
        // An IPv6 literal with its zone (`fe80::1%eth0`) is an address too.
        let zoned = bare.split_once('%').is_some_and(|(addr, zone)| {
            addr.parse::<std::net::Ipv6Addr>().is_ok()
                && !zone.is_empty()
                && zone
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
        return if zoned {
            Ok(())
        } else {
            bad("not an IP address or host name (give the port separately, not as host:port)")
        };
    }
    if bracketed {
        return bad("brackets go only around an IPv6 address");
    }
    let name = bare.strip_suffix('.').unwrap_or(bare);
    if name.len() > 253 {
        return bad("a host name has at most 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated part of a host name has 1 to 63 characters");
        }
        if label.starts_with('-') {
            return bad("a part of a host name must not start with '-'");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return bad("a host name has only letters, digits, '-', '_' and dots");
        }
    }
    Ok(())
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
    fn hostnames_are_addresses_or_names() {
        let with = |hostname: &str| Config {
            hostname: hostname.into(),
            password: PasswordPolicy::Generate,
            ..Config::default()
        };
        for good in [
            "127.0.0.1",
            "::1",
            "[::1]",
            "0.0.0.0",
            "fe80::1%eth0",
            "localhost",
            "no-such-host.invalid",
            "my_host.example.",
            "192.0.2.1",
        ] {
            assert!(with(good).validate().is_ok(), "{good}");
        }
        for bad in [
            "",
            "[]",
            "127.0.0.1:80",
            "localhost:4096",
            "[127.0.0.1]",
            "-p",
            "a..b",
            "a b",
            "host\nname",
            "héllo",
            "x.-y",
            ".",
            &"a".repeat(64),
            &format!("{}.x", "a.".repeat(130)),
        ] {
            match with(bad).validate() {
                Err(Error::Config(message)) => {
                    assert!(message.starts_with("bad hostname"), "{message}");
                    assert!(
                        !message.contains('\n'),
                        "control characters escaped: {message}"
                    );
                }
                other => panic!("{bad:?}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn password_is_not_in_debug_output() {
        let policy = PasswordPolicy::Fixed("hunter2".into());
        assert!(!format!("{policy:?}").contains("hunter2"));
    }
}
