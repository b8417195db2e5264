//! Probing for a companion: its port (chosen per the policy, answering
//! HTTP, held by whom), whether a process is the recorded companion, and
//! its command and log lines made fit to run and show.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use portmap::{BindHost, PortProblem};

use super::COMPANION_HOST;
use crate::error::PortHolder;
use crate::scan::COMPANION_VAR;
use crate::{Error, PROJECT_HASH_VAR, PortPolicy, STATE_ROOT_VAR};

/// `command` with every `{port}` replaced by `port`.
pub(crate) fn substitute(command: &[String], port: u16) -> Vec<String> {
    let port = port.to_string();
    command.iter().map(|a| a.replace("{port}", &port)).collect()
}

/// True when `pid` is the companion of start `nonce` of project `hash`
/// under `state_root`: a session leader carrying all three markers.
pub(crate) fn is_our_companion(pid: u32, hash: &str, state_root: &Path, nonce: &str) -> bool {
    pid != 0
        && procutil::is_session_leader(pid)
        && procutil::environ(pid).is_ok_and(|env| {
            env.get(PROJECT_HASH_VAR).is_some_and(|h| h == hash)
                && env
                    .get(STATE_ROOT_VAR)
                    .is_some_and(|r| Path::new(&r) == state_root)
                && env.get(COMPANION_VAR).is_some_and(|n| n == nonce)
        })
}

/// How long an HTTP request to `127.0.0.1:port` took to get a status line,
/// when it got one within `timeout`. Any status counts (401 and 404 are
/// answers).
pub(crate) fn answers(port: u16, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let deadline = started + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, left()?).ok()?;
    stream.set_write_timeout(left()).ok()?;
    let request =
        format!("GET / HTTP/1.1\r\nHost: {COMPANION_HOST}:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 12 {
        stream.set_read_timeout(left()).ok()?;
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    is_status_line(&got).then(|| started.elapsed())
}

/// `HTTP/1.1 404` and the like.
pub(crate) fn is_status_line(bytes: &[u8]) -> bool {
    bytes.len() >= 12
        && bytes.starts_with(b"HTTP/")
        && bytes[8] == b' '
        && bytes[9..12].iter().all(u8::is_ascii_digit)
}

/// A log line fit to show: control characters escaped.
pub(crate) fn escaped(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The port for a new companion: the fixed one when free, else the first
/// free one of the range.
pub(crate) fn choose_port(policy: &PortPolicy) -> Result<u16, Error> {
    let host = BindHost::resolve(COMPANION_HOST, portmap::DEFAULT_RESOLVE_TIMEOUT)
        .map_err(|problem| cannot_bind(None, problem))?;
    match policy {
        PortPolicy::Fixed(port) => match host.probe(*port) {
            Ok(()) => Ok(*port),
            Err(PortProblem::InUse) => Err(Error::PortInUse {
                hostname: COMPANION_HOST.into(),
                port: *port,
                holder: PortHolder::of_port(*port),
            }),
            Err(problem) => Err(cannot_bind(Some(*port), problem)),
        },
        PortPolicy::Range(range) => {
            for port in range.clone() {
                match host.probe(port) {
                    Ok(()) => return Ok(port),
                    Err(PortProblem::InUse) => {}
                    Err(problem) => return Err(cannot_bind(Some(port), problem)),
                }
            }
            Err(Error::NoFreePort {
                hostname: COMPANION_HOST.into(),
                first: *range.start(),
                last: *range.end(),
            })
        }
        other => Err(Error::CompanionPortPolicy {
            policy: other.clone(),
        }),
    }
}

pub(crate) fn cannot_bind(port: Option<u16>, problem: PortProblem) -> Error {
    Error::CannotBind {
        hostname: COMPANION_HOST.into(),
        port,
        problem,
    }
}

/// True unless /proc tells that the port's holder is not of companion start
/// `nonce` (another program took the port first).
pub(crate) fn holder_is_of(port: u16, nonce: &str) -> bool {
    match crate::scan::port_holder(port) {
        Some(pid) => procutil::environ_var(pid, COMPANION_VAR)
            .ok()
            .flatten()
            .is_some_and(|n| n == nonce),
        None => true,
    }
}
