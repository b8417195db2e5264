//! Per-project ports, port probing that says why a port cannot be bound,
//! and the OpenCode listening line.
//!
//! Every project gets a deterministic port in `28000..=28999`, the same one the
//! other OpenCode managers (ntm, opencode-teams) use, so that they all find the
//! same server: the project path is made absolute and normalized lexically the
//! way Node's `path.resolve` does it (no symlink resolution), hashed with MD5,
//! and `28000 + ((h[0] << 8 | h[1]) % 1000)` is the port. When that port is
//! taken by something else, [`port_candidates`] gives a stable order of
//! alternatives inside the same range.
//!
//! ```
//! use std::path::Path;
//!
//! let project = Path::new("/home/user/project");
//! let port = portmap::port_for_project(project)?;
//! assert!((28000..=28999).contains(&port));
//! assert_eq!(portmap::project_hash(project)?.len(), 32);
//!
//! // The first choice is the deterministic port, then the next ones, wrapping.
//! let mut candidates = portmap::port_candidates(project)?;
//! assert_eq!(candidates.next(), Some(port));
//!
//! // Probing says why a port cannot be bound, not just that it cannot.
//! let host = portmap::BindHost::resolve("127.0.0.1", portmap::DEFAULT_RESOLVE_TIMEOUT)
//!     .expect("a literal always resolves");
//! match host.first_free(portmap::port_candidates(project)?) {
//!     Ok(Some(port)) => println!("free: {port}"),
//!     Ok(None) => println!("every port is in use"),
//!     Err(problem) => println!("cannot bind 127.0.0.1: {problem}"),
//! }
//!
//! let addr = portmap::parse_listening_line("opencode server listening on http://127.0.0.1:4096")
//!     .expect("a listening line");
//! assert_eq!((addr.host.as_str(), addr.port), ("127.0.0.1", 4096));
//! # Ok::<(), portmap::Error>(())
//! ```

#![forbid(unsafe_code)]

use std::fmt;
use std::iter::FusedIterator;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// The first port of the per-project range.
pub const PROJECT_PORT_BASE: u16 = 28000;
/// The number of ports in the per-project range (`28000..=28999`).
pub const PROJECT_PORT_SPAN: u16 = 1000;
/// Number of hex characters in a [`short_id`].
pub const SHORT_ID_LEN: usize = 12;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The project path is not valid UTF-8, so it has no port that the other
    /// managers (which work on JavaScript strings) could agree on.
    #[error(
        "path is not valid UTF-8, so no project hash or port can be derived from it: {}",
        path.display()
    )]
    NonUtf8Path {
        /// The offending path (lossily displayed).
        path: PathBuf,
    },
    /// The current directory could not be read, so a relative path cannot be
    /// made absolute.
    #[error("cannot read the current directory to resolve {}: {source}", path.display())]
    CurrentDir {
        /// The relative path that needed the current directory.
        path: PathBuf,
        /// Why `getcwd` failed.
        source: std::io::Error,
    },
    /// The base given to [`resolve_path_from`] is not absolute.
    #[error("base directory must be absolute to resolve {}: {}", path.display(), base.display())]
    RelativeBase {
        /// The base that was given.
        base: PathBuf,
        /// The path that was to be resolved against it.
        path: PathBuf,
    },
}

/// Makes `path` absolute against the current directory and normalizes it
/// lexically, with the semantics of Node's `path.resolve(path)` on POSIX.
///
/// Symlinks are not resolved, `.` and `..` are folded (`..` at the root stays
/// at the root), duplicate and trailing slashes are removed, and an empty
/// path means the current directory. A path that is not UTF-8 is an error
/// ([`Error::NonUtf8Path`]).
pub fn resolve_path(path: &Path) -> Result<PathBuf, Error> {
    let text = utf8(path)?;
    if text.starts_with('/') {
        return Ok(PathBuf::from(normalize_absolute(text)));
    }
    let cwd = std::env::current_dir().map_err(|source| Error::CurrentDir {
        path: path.to_path_buf(),
        source,
    })?;
    resolve_path_from(&cwd, path)
}

/// Like [`resolve_path`], but resolves a relative `path` against `base`
/// instead of the current directory: `path.resolve(base, path)` in Node.
///
/// `base` must be absolute when it is needed (that is, when `path` is
/// relative); it is normalized too.
pub fn resolve_path_from(base: &Path, path: &Path) -> Result<PathBuf, Error> {
    let text = utf8(path)?;
    if text.starts_with('/') {
        return Ok(PathBuf::from(normalize_absolute(text)));
    }
    let base_text = utf8(base)?;
    if !base_text.starts_with('/') {
        return Err(Error::RelativeBase {
            base: base.to_path_buf(),
            path: path.to_path_buf(),
        });
    }
    let mut joined = String::with_capacity(base_text.len() + 1 + text.len());
    joined.push_str(base_text);
    joined.push('/');
    joined.push_str(text);
    Ok(PathBuf::from(normalize_absolute(&joined)))
}

fn utf8(path: &Path) -> Result<&str, Error> {
    path.to_str().ok_or_else(|| Error::NonUtf8Path {
        path: path.to_path_buf(),
    })
}

/// Lexical normalization of an absolute path (it starts with `/`), as Node's
/// `normalizeString` with `allowAboveRoot = false` plus the leading slash.
fn normalize_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for part in &parts {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// A project identified by its resolved path: its MD5 digest, hash, short id
/// and port. Resolve once, ask many times.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProjectKey {
    resolved: PathBuf,
    digest: [u8; 16],
}

impl fmt::Debug for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectKey")
            .field("resolved", &self.resolved)
            .field("hash", &self.hash())
            .field("port", &self.port())
            .finish()
    }
}

impl ProjectKey {
    /// Resolves `path` against the current directory (see [`resolve_path`]).
    pub fn new(path: &Path) -> Result<Self, Error> {
        Ok(Self::from_resolved_str(&resolve_path(path)?))
    }

    /// Resolves `path` against `base` (see [`resolve_path_from`]).
    pub fn from_base(base: &Path, path: &Path) -> Result<Self, Error> {
        Ok(Self::from_resolved_str(&resolve_path_from(base, path)?))
    }

    fn from_resolved_str(resolved: &Path) -> Self {
        // resolve_path* only return paths built from UTF-8 strings.
        let bytes = resolved.as_os_str().as_encoded_bytes();
        ProjectKey {
            resolved: resolved.to_path_buf(),
            digest: md5::compute(bytes).0,
        }
    }

    /// The absolute, normalized project path that was hashed.
    pub fn resolved(&self) -> &Path {
        &self.resolved
    }

    /// The raw MD5 digest of the resolved path.
    pub fn digest(&self) -> [u8; 16] {
        self.digest
    }

    /// 32 lowercase hex characters of the MD5 digest.
    pub fn hash(&self) -> String {
        let mut out = String::with_capacity(32);
        for byte in self.digest {
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
        out
    }

    /// The first [`SHORT_ID_LEN`] hex characters of [`hash`](Self::hash).
    pub fn short_id(&self) -> String {
        let mut hash = self.hash();
        hash.truncate(SHORT_ID_LEN);
        hash
    }

    /// The deterministic port: `28000 + ((h[0] << 8 | h[1]) % 1000)`.
    pub fn port(&self) -> u16 {
        let high = u16::from_be_bytes([self.digest[0], self.digest[1]]);
        PROJECT_PORT_BASE + high % PROJECT_PORT_SPAN
    }

    /// All ports of the project range, [`port`](Self::port) first, then
    /// the following ones, wrapping from 28999 to 28000; each port once.
    pub fn port_candidates(&self) -> PortCandidates {
        PortCandidates::starting_at(self.port())
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

/// 32 lowercase hex characters of the MD5 of the resolved project path
/// (see [`resolve_path`]); the name of the project's state folder.
pub fn project_hash(path: &Path) -> Result<String, Error> {
    Ok(ProjectKey::new(path)?.hash())
}

/// The first 12 hex characters of [`project_hash`], for display.
pub fn short_id(path: &Path) -> Result<String, Error> {
    Ok(ProjectKey::new(path)?.short_id())
}

/// The deterministic port of a project, in `28000..=28999`, the same as the
/// other OpenCode managers compute.
pub fn port_for_project(path: &Path) -> Result<u16, Error> {
    Ok(ProjectKey::new(path)?.port())
}

/// The ports to try for a project, in a stable order: [`port_for_project`]
/// first, then +1, +2, ... wrapping inside `28000..=28999`; 1000 ports, each
/// once. Taking the first free one makes the choice reproducible, so it can be
/// recorded and found again.
pub fn port_candidates(path: &Path) -> Result<PortCandidates, Error> {
    Ok(ProjectKey::new(path)?.port_candidates())
}

/// Iterator over the project port range, starting at a given port and
/// wrapping; see [`port_candidates`].
#[derive(Debug, Clone)]
pub struct PortCandidates {
    /// Offset of the first port from [`PROJECT_PORT_BASE`].
    start: u16,
    /// How many ports were already produced.
    produced: u16,
}

impl PortCandidates {
    /// Candidates starting at `port`. A port outside `28000..=28999` is
    /// folded into the range the same way (`(port - 28000) mod 1000`).
    pub fn starting_at(port: u16) -> Self {
        let offset = (i32::from(port) - i32::from(PROJECT_PORT_BASE))
            .rem_euclid(i32::from(PROJECT_PORT_SPAN));
        PortCandidates {
            // rem_euclid by 1000 is in 0..1000, which fits in u16.
            start: u16::try_from(offset).unwrap_or(0),
            produced: 0,
        }
    }
}

impl Iterator for PortCandidates {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        if self.produced >= PROJECT_PORT_SPAN {
            return None;
        }
        let offset = (self.start + self.produced) % PROJECT_PORT_SPAN;
        self.produced += 1;
        Some(PROJECT_PORT_BASE + offset)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::from(PROJECT_PORT_SPAN - self.produced);
        (left, Some(left))
    }
}

impl ExactSizeIterator for PortCandidates {}
impl FusedIterator for PortCandidates {}

/// Why a port cannot be bound on a host, from [`probe_port`] and
/// [`BindHost::probe`]. Only [`InUse`](PortProblem::InUse) is about the port
/// being taken; every other problem stays the same whatever port is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PortProblem {
    /// Something else holds the port (`EADDRINUSE`).
    InUse,
    /// The address is not one of this machine's (`EADDRNOTAVAIL`), or its
    /// family is not supported here (`EAFNOSUPPORT`, e.g. IPv6 switched off).
    AddressNotAvailable,
    /// The system refuses the bind (`EACCES`, `EPERM`): a port below the
    /// unprivileged start (1024) without root or `CAP_NET_BIND_SERVICE`, or
    /// a security policy.
    PermissionDenied,
    /// The host name resolves to no address.
    Unresolvable,
    /// The resolver did not answer within the deadline.
    ResolveTimedOut,
    /// Any other failure of the bind.
    Other {
        /// The OS error number, when there is one.
        code: Option<i32>,
        /// Its kind.
        kind: std::io::ErrorKind,
    },
}

impl PortProblem {
    /// The problem a failed `bind(2)` (or socket creation) means.
    pub fn from_io(error: &std::io::Error) -> PortProblem {
        match error.raw_os_error() {
            Some(libc::EADDRINUSE) => PortProblem::InUse,
            Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT) => PortProblem::AddressNotAvailable,
            Some(libc::EACCES | libc::EPERM) => PortProblem::PermissionDenied,
            code => PortProblem::Other {
                code,
                kind: error.kind(),
            },
        }
    }

    /// True for [`InUse`](PortProblem::InUse): another port may do.
    pub fn is_in_use(&self) -> bool {
        *self == PortProblem::InUse
    }
}

impl fmt::Display for PortProblem {
    /// What went wrong, for people; the caller names the host and port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortProblem::InUse => f.write_str("the port is in use"),
            PortProblem::AddressNotAvailable => {
                f.write_str("the address is not one of this machine's")
            }
            PortProblem::PermissionDenied => f.write_str("permission denied"),
            PortProblem::Unresolvable => f.write_str("the name does not resolve to an address"),
            PortProblem::ResolveTimedOut => {
                f.write_str("the name did not resolve in time (the resolver did not answer)")
            }
            PortProblem::Other {
                code: Some(code), ..
            } => write!(f, "{}", std::io::Error::from_raw_os_error(*code)),
            PortProblem::Other { code: None, kind } => write!(f, "{kind}"),
        }
    }
}

impl std::error::Error for PortProblem {}

/// How long [`probe_port`], [`is_port_free`] and [`first_free_port`] wait
/// for the system resolver to resolve a host name.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A host to bind, resolved once to its addresses: resolve it, then probe
/// as many ports as needed without asking the resolver again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindHost {
    name: String,
    /// The addresses, port 0, each once, in the resolver's order.
    addrs: Vec<SocketAddr>,
}

impl BindHost {
    /// Resolves `host`: an IP literal (`127.0.0.1`, `::1`, `[::1]`) as it
    /// is; `localhost` as 127.0.0.1 and ::1 without asking the resolver;
    /// any other name through the system resolver (`getaddrinfo`).
    ///
    /// Blocks while the resolver works, at most `timeout`: the lookup runs
    /// on a thread of its own, and as `getaddrinfo` cannot be cancelled,
    /// a lookup that outlives the deadline is left to finish on that thread
    /// (it only sends its answer to a channel nobody reads any more).
    pub fn resolve(host: &str, timeout: Duration) -> Result<BindHost, PortProblem> {
        resolve_with(host, timeout, system_lookup)
    }

    /// The host as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its addresses (port 0), each once, in the resolver's order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Whether `port` can be bound on this host right now, and if not, why.
    ///
    /// Every address is tried. A port is free when at least one address
    /// binds and every other one either binds or is not available on this
    /// machine (so `localhost` on a machine without IPv6 needs 127.0.0.1
    /// only). The probe binds and closes a listener at once, so the answer
    /// can be stale by the time it is used: the server's own bind is the
    /// real test. Port 0 checks the address alone.
    pub fn probe(&self, port: u16) -> Result<(), PortProblem> {
        let mut bound = false;
        let mut unavailable = None;
        for addr in &self.addrs {
            let mut addr = *addr;
            addr.set_port(port);
            match TcpListener::bind(addr) {
                Ok(_) => bound = true,
                Err(error) => match PortProblem::from_io(&error) {
                    PortProblem::AddressNotAvailable => {
                        unavailable.get_or_insert(PortProblem::AddressNotAvailable);
                    }
                    problem => return Err(problem),
                },
            }
        }
        match (bound, unavailable) {
            (true, _) => Ok(()),
            (false, problem) => Err(problem.unwrap_or(PortProblem::Unresolvable)),
        }
    }

    /// The first of `ports` that is free on this host. `Ok(None)` when all
    /// are in use; any other problem ends the search at once and is
    /// returned (it would be the same for every port).
    pub fn first_free(
        &self,
        ports: impl IntoIterator<Item = u16>,
    ) -> Result<Option<u16>, PortProblem> {
        for port in ports {
            match self.probe(port) {
                Ok(()) => return Ok(Some(port)),
                Err(PortProblem::InUse) => {}
                Err(problem) => return Err(problem),
            }
        }
        Ok(None)
    }
}

type Lookup = fn(&str) -> std::io::Result<Vec<SocketAddr>>;

fn system_lookup(name: &str) -> std::io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    Ok((name, 0).to_socket_addrs()?.collect())
}

/// [`BindHost::resolve`] with the lookup as a parameter, so tests can make
/// it fail or hang.
fn resolve_with(host: &str, timeout: Duration, lookup: Lookup) -> Result<BindHost, PortProblem> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addrs = if bare.is_empty() {
        return Err(PortProblem::Unresolvable);
    } else if bare.eq_ignore_ascii_case("localhost") {
        vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
        ]
    } else if let Ok(ip) = bare.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, 0)]
    } else {
        lookup_with_deadline(bare, timeout, lookup)?
    };
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for mut addr in addrs {
        addr.set_port(0);
        if !unique.contains(&addr) {
            unique.push(addr);
        }
    }
    if unique.is_empty() {
        return Err(PortProblem::Unresolvable);
    }
    Ok(BindHost {
        name: host.to_owned(),
        addrs: unique,
    })
}

fn lookup_with_deadline(
    name: &str,
    timeout: Duration,
    lookup: Lookup,
) -> Result<Vec<SocketAddr>, PortProblem> {
    let (tx, rx) = mpsc::channel();
    let owned = name.to_owned();
    std::thread::Builder::new()
        .name("portmap-resolve".into())
        .spawn(move || {
            let _ = tx.send(lookup(&owned));
        })
        .map_err(|error| PortProblem::from_io(&error))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => Err(PortProblem::Unresolvable),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(PortProblem::ResolveTimedOut),
    }
}

/// Whether `port` on `host` can be bound right now, and if not, why.
///
/// `host` is resolved first (see [`BindHost::resolve`], waiting at most
/// [`DEFAULT_RESOLVE_TIMEOUT`]), then probed (see [`BindHost::probe`]).
/// To probe many ports, resolve once with [`BindHost::resolve`].
pub fn probe_port(host: &str, port: u16) -> Result<(), PortProblem> {
    BindHost::resolve(host, DEFAULT_RESOLVE_TIMEOUT)?.probe(port)
}

/// Whether `port` on `host` can be bound right now: [`probe_port`] without
/// the reason. A name that does not resolve is never free.
pub fn is_port_free(host: &str, port: u16) -> bool {
    probe_port(host, port).is_ok()
}

/// The first port in `range` that is free on `host` (resolved once).
/// `Ok(None)` when every port is in use; a problem other than
/// [`PortProblem::InUse`] ends the search at once and is returned.
pub fn first_free_port(host: &str, range: RangeInclusive<u16>) -> Result<Option<u16>, PortProblem> {
    BindHost::resolve(host, DEFAULT_RESOLVE_TIMEOUT)?.first_free(range)
}

/// Where the server says it listens: the host (IPv6 without brackets) and
/// the port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListeningAddr {
    /// Host name or IP literal as printed; an IPv6 literal without brackets.
    pub host: String,
    /// The TCP port, never 0.
    pub port: u16,
}

impl ListeningAddr {
    /// The base URL, `http://host:port`, with brackets around IPv6 literals.
    pub fn url(&self) -> String {
        format!("http://{self}")
    }
}

impl fmt::Display for ListeningAddr {
    /// `host:port`, with brackets around an IPv6 literal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The exact text before the address in the server's listening line.
pub const LISTENING_PREFIX: &str = "opencode server listening on http://";

/// Parses the server's `opencode server listening on http://HOST:PORT` line.
///
/// Only that line is accepted: it must start with the prefix, trailing
/// whitespace (including a CR) and one trailing `/` are tolerated. The host
/// is a name, an IPv4 literal or an IPv6 literal (with or without brackets);
/// the port is 1 to 65535 in decimal digits. Any other line gives `None`.
pub fn parse_listening_line(line: &str) -> Option<ListeningAddr> {
    let rest = line.trim_end().strip_prefix(LISTENING_PREFIX)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port_text) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        host.parse::<Ipv6Addr>().ok()?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port_text) = rest.rsplit_once(':')?;
        if host.contains(':') {
            // An IPv6 literal printed without brackets, e.g. `::1:4096`.
            host.parse::<Ipv6Addr>().ok()?;
        } else if !is_plain_host(host) {
            return None;
        }
        (host, port_text)
    };
    let port = parse_port(port_text)?;
    Some(ListeningAddr {
        host: host.to_owned(),
        port,
    })
}

fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_dots_and_slashes() {
        let cases = [
            ("/", "/"),
            ("//", "/"),
            ("/..", "/"),
            ("/a/../..", "/"),
            ("/a//b/./c/", "/a/b/c"),
            ("/a/b/../c", "/a/c"),
            ("/.../..x", "/.../..x"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_absolute(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn hex_and_short_id_agree() {
        let key = ProjectKey::from_base(Path::new("/"), Path::new("x")).unwrap();
        // md5("/x") computed independently with `printf /x | md5sum`.
        assert_eq!(key.hash(), "cc8755609ad61864910f145119713de9");
        assert_eq!(key.short_id(), "cc8755609ad6");
        assert_eq!(key.port(), 28000 + (0xcc87 % 1000));
        assert_eq!(key.port(), 28359);
    }

    #[test]
    fn bind_errors_map_to_problems() {
        use std::io::Error as IoError;
        let of = |code| PortProblem::from_io(&IoError::from_raw_os_error(code));
        assert_eq!(of(libc::EADDRINUSE), PortProblem::InUse);
        assert_eq!(of(libc::EADDRNOTAVAIL), PortProblem::AddressNotAvailable);
        assert_eq!(of(libc::EAFNOSUPPORT), PortProblem::AddressNotAvailable);
        // What an unprivileged bind below port 1024 gets (root cannot see
        // it in a test, so the mapping is checked here).
        assert_eq!(of(libc::EACCES), PortProblem::PermissionDenied);
        assert_eq!(of(libc::EPERM), PortProblem::PermissionDenied);
        let other = of(libc::ENOBUFS);
        assert!(
            matches!(
                other,
                PortProblem::Other {
                    code: Some(libc::ENOBUFS),
                    ..
                }
            ),
            "{other:?}"
        );
        assert!(!other.to_string().is_empty());
        let no_code = PortProblem::from_io(&IoError::other("strange"));
        assert!(
            matches!(no_code, PortProblem::Other { code: None, .. }),
            "{no_code:?}"
        );
        assert!(PortProblem::InUse.is_in_use());
        assert!(!PortProblem::PermissionDenied.is_in_use());
        assert_eq!(
            PortProblem::PermissionDenied.to_string(),
            "permission denied"
        );
    }

    fn loopback_twice(_: &str) -> std::io::Result<Vec<SocketAddr>> {
        Ok(vec![
            "127.0.0.1:53".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ])
    }

    fn nothing(_: &str) -> std::io::Result<Vec<SocketAddr>> {
        Ok(Vec::new())
    }

    fn unknown(_: &str) -> std::io::Result<Vec<SocketAddr>> {
        Err(std::io::Error::other("Name or service not known"))
    }

    fn hangs(_: &str) -> std::io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_secs(5));
        Ok(Vec::new())
    }

    #[test]
    fn names_resolve_once_to_their_addresses() {
        let second = Duration::from_secs(1);
        let host = resolve_with("myhost", second, loopback_twice).unwrap();
        assert_eq!(host.name(), "myhost");
        assert_eq!(
            host.addrs(),
            &["127.0.0.1:0".parse::<SocketAddr>().unwrap()]
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap().port();
        assert_eq!(host.probe(taken), Err(PortProblem::InUse));
        assert_eq!(host.first_free([taken]), Ok(None));
        assert_eq!(host.probe(0), Ok(()));
        assert_eq!(
            resolve_with("x", second, nothing),
            Err(PortProblem::Unresolvable)
        );
        assert_eq!(
            resolve_with("x", second, unknown),
            Err(PortProblem::Unresolvable)
        );
        // Literals never reach the lookup.
        assert!(resolve_with("10.1.2.3", second, unknown).is_ok());
        assert!(resolve_with("localhost", second, unknown).is_ok());
    }

    #[test]
    fn a_resolver_that_hangs_is_given_up_at_the_deadline() {
        let started = std::time::Instant::now();
        assert_eq!(
            resolve_with("slow", Duration::from_millis(100), hangs),
            Err(PortProblem::ResolveTimedOut)
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_problem_other_than_in_use_ends_the_search() {
        // Not available comes before in use: 192.0.2.1 is no address here
        // (unless foreign binds are allowed, then nothing is checked).
        let host = resolve_with("192.0.2.1", Duration::from_secs(1), unknown).unwrap();
        match host.first_free(28000..=28999) {
            Err(PortProblem::AddressNotAvailable) => {}
            Ok(Some(_)) => {} // net.ipv4.ip_nonlocal_bind=1
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn candidates_fold_out_of_range_start() {
        assert_eq!(PortCandidates::starting_at(27999).next(), Some(28999));
        assert_eq!(PortCandidates::starting_at(29000).next(), Some(28000));
        assert_eq!(PortCandidates::starting_at(0).next(), Some(28000));
        assert_eq!(PortCandidates::starting_at(1234).next(), Some(28234));
    }
}
