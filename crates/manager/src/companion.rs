//! A companion process beside a project's server (a tool server on its own
//! port, e.g. `ocm mcp --http`): started detached, recorded in
//! `companion.json` with its process identity, health-checked over HTTP,
//! stopped with its process group, never left orphaned.
//!
//! A companion carries the project's markers plus [`COMPANION_VAR`] (its
//! start's nonce, also in the record): the server's repairs and sweeps leave
//! it alone, while an orphan (a companion process of another start) goes
//! with the project's other orphans.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portmap::{BindHost, PortProblem};
use procutil::{ExitStatus, ProcessIdentity, Termination};
use serde::{Deserialize, Serialize};
use statefile::ProjectPaths;

use crate::error::PortHolder;
use crate::progress::Repair;
use crate::scan::COMPANION_VAR;
use crate::start::{mark_start, server_lines};
use crate::{
    Error, Manager, PROJECT_HASH_VAR, PortPolicy, SERVER_NONCE_VAR, STATE_ROOT_VAR, logs,
    random_secret,
};

/// The address every companion listens on.
pub const COMPANION_HOST: &str = "127.0.0.1";
/// How long a companion has to answer an HTTP request to count as healthy.
pub const COMPANION_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// The schema version of `companion.json` this build writes and reads.
const SCHEMA_VERSION: u32 = 1;
/// How many lines of the companion's log a start failure carries.
const LOG_TAIL_LINES: usize = 20;
/// Between two looks at the port while a companion starts: a wait on its
/// pidfd, so an exit ends it at once.
const POLL_PAUSE: Duration = Duration::from_millis(50);

/// What to run beside a project's server.
#[derive(Clone)]
pub struct CompanionSpec {
    /// Program and arguments. Every `{port}` inside an argument is replaced
    /// by the chosen port. A program without a slash is looked up in PATH.
    pub command: Vec<String>,
    /// Variables added to its environment (secrets go here, never on argv).
    pub env: Vec<(String, String)>,
    /// `PortPolicy::Fixed(p)` or `PortPolicy::Range(r)` (first free port);
    /// other policies are refused with an error.
    pub port: PortPolicy,
    /// From spawn to the first HTTP answer on its port.
    pub start_timeout: Duration,
}

impl fmt::Debug for CompanionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(name, _)| format!("{name}=<redacted>"))
            .collect();
        f.debug_struct("CompanionSpec")
            .field("command", &self.command)
            .field("env", &env)
            .field("port", &self.port)
            .field("start_timeout", &self.start_timeout)
            .finish()
    }
}

/// A running companion, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanionInfo {
    /// Its pid (the leader of its process group).
    pub pid: u32,
    /// The port it listens on.
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// What was run, `{port}` substituted.
    pub command: Vec<String>,
    /// When it was started, RFC 3339 UTC.
    pub started_at: String,
    /// Where its output goes (`companion.log` in the project's state folder).
    pub log: PathBuf,
}

/// What the record says of a companion and how it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanionStatus {
    /// What the record says.
    pub info: CompanionInfo,
    /// The recorded process still runs and is this project's companion.
    pub alive: bool,
    /// Some(ms) when it answered an HTTP request within 2 s.
    pub answered_ms: Option<u64>,
    /// When this was checked, RFC 3339 UTC.
    pub checked_at: String,
}

/// `companion.json` in the project's state folder. No environment values:
/// secrets never reach the disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CompanionRecord {
    pub schema_version: u32,
    /// 0 between the write before the spawn and the one after it.
    pub pid: u32,
    pub start_time: u64,
    pub boot_id: String,
    pub port: u16,
    pub url: String,
    pub command: Vec<String>,
    pub started_at: String,
    pub log: PathBuf,
    /// The value of [`COMPANION_VAR`] in its environment.
    pub nonce: String,
    /// Fields this build does not know, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl CompanionRecord {
    fn identity(&self) -> ProcessIdentity {
        ProcessIdentity {
            pid: self.pid,
            start_time: self.start_time,
            boot_id: self.boot_id.clone(),
        }
    }

    fn info(&self) -> CompanionInfo {
        CompanionInfo {
            pid: self.pid,
            port: self.port,
            url: self.url.clone(),
            command: self.command.clone(),
            started_at: self.started_at.clone(),
            log: self.log.clone(),
        }
    }
}

/// `companion.json` of a project.
pub(crate) fn record_path(paths: &ProjectPaths) -> PathBuf {
    paths.dir.join("companion.json")
}

/// `companion.log` of a project.
pub(crate) fn log_path(paths: &ProjectPaths) -> PathBuf {
    paths.dir.join("companion.log")
}

/// Reads `companion.json`; `Ok(None)` when there is none.
pub(crate) fn read_record(paths: &ProjectPaths) -> Result<Option<CompanionRecord>, statefile::Error> {
    statefile::read_json_versioned(&record_path(paths), SCHEMA_VERSION)
}

fn write_record(paths: &ProjectPaths, record: &CompanionRecord) -> Result<(), Error> {
    Ok(statefile::write_atomic(&record_path(paths), record)?)
}

fn remove_record(paths: &ProjectPaths) -> Result<(), Error> {
    let path = record_path(paths);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            action: "cannot remove",
            path,
            source,
        }),
    }
}

/// `command` with every `{port}` replaced by `port`.
pub(crate) fn substitute(command: &[String], port: u16) -> Vec<String> {
    let port = port.to_string();
    command.iter().map(|a| a.replace("{port}", &port)).collect()
}

/// True when `pid` is the companion of start `nonce` of project `hash`
/// under `state_root`: a session leader carrying all three markers.
fn is_our_companion(pid: u32, hash: &str, state_root: &Path, nonce: &str) -> bool {
    let var = |name| procutil::environ_var(pid, name).ok().flatten();
    pid != 0
        && procutil::is_session_leader(pid)
        && var(PROJECT_HASH_VAR).is_some_and(|h| h == hash)
        && var(STATE_ROOT_VAR).is_some_and(|r| Path::new(&r) == state_root)
        && var(COMPANION_VAR).is_some_and(|n| n == nonce)
}

/// How long an HTTP request to `127.0.0.1:port` took to get a status line,
/// when it got one within `timeout`. Any status counts (401 and 404 are
/// answers).
pub(crate) fn answers(port: u16, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let deadline = started + timeout;
    let left = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, left()?).ok()?;
    stream.set_write_timeout(left()).ok()?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {COMPANION_HOST}:{port}\r\nConnection: close\r\n\r\n"
    );
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
fn is_status_line(bytes: &[u8]) -> bool {
    bytes.len() >= 12
        && bytes.starts_with(b"HTTP/")
        && bytes[8] == b' '
        && bytes[9..12].iter().all(u8::is_ascii_digit)
}

/// A log line fit to show: control characters escaped.
fn escaped(line: &str) -> String {
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

fn cannot_bind(port: Option<u16>, problem: PortProblem) -> Error {
    Error::CannotBind {
        hostname: COMPANION_HOST.into(),
        port,
        problem,
    }
}

/// Why a spawned companion did not become ready.
enum NotReady {
    Exited(ExitStatus),
    TimedOut,
    Interrupted,
}

impl Manager {
    /// The project's companion: the recorded one when it is still ours
    /// (identity), alive, was started with the same command (after `{port}`
    /// substitution, with the recorded port) and answers HTTP within 2 s;
    /// otherwise the old one (if any) is stopped with its group and a new
    /// one started. Under the project's lock. Blocks up to the lock timeout
    /// + `start_timeout`.
    pub fn ensure_companion(
        &self,
        project: &Path,
        spec: &CompanionSpec,
    ) -> Result<CompanionInfo, Error> {
        self.reap_children();
        if spec.command.is_empty() || spec.command[0].is_empty() {
            return Err(Error::CompanionCommandEmpty);
        }
        if !matches!(spec.port, PortPolicy::Fixed(_) | PortPolicy::Range(_)) {
            return Err(Error::CompanionPortPolicy {
                policy: spec.port.clone(),
            });
        }
        let (project, hash, paths) = self.project(project)?;
        if !project.is_dir() {
            return Err(Error::ProjectNotFound { path: project });
        }
        self.check_interrupt()?;
        let _lock = self.lock(&paths)?;
        self.check_interrupt()?;
        if let Some(record) = self.read_companion_repairing(&paths)? {
            let ours = record.identity().is_alive()
                && is_our_companion(record.pid, &hash, self.state_root(), &record.nonce);
            if ours
                && record.command == substitute(&spec.command, record.port)
                && answers(record.port, COMPANION_ANSWER_TIMEOUT).is_some()
            {
                return Ok(record.info());
            }
            if ours {
                procutil::terminate(&record.identity(), self.config.stop_grace)?;
            }
            remove_record(&paths)?;
        }
        // Whatever companion of this project still runs is not the one to
        // keep: it goes before a new one takes the port.
        self.sweep_companions(&hash, |_| false);
        self.start_companion(&project, &hash, &paths, spec)
    }

    /// Stops the recorded companion and its process group (SIGTERM, then
    /// SIGKILL after the config's stop grace), removes the record.
    /// `Ok(None)` when there was none. Companion processes of the project
    /// that are not recorded (orphans) are stopped too.
    pub fn stop_companion(&self, project: &Path) -> Result<Option<Termination>, Error> {
        self.reap_children();
        let (_, hash, paths) = self.project(project)?;
        if !paths.dir.exists() {
            self.sweep_companions(&hash, |_| false);
            return Ok(None);
        }
        let _lock = self.lock(&paths)?;
        self.stop_companion_locked(&hash, &paths)
    }

    /// [`Manager::stop_companion`] under the lock.
    pub(crate) fn stop_companion_locked(
        &self,
        hash: &str,
        paths: &ProjectPaths,
    ) -> Result<Option<Termination>, Error> {
        let record = self.read_companion_repairing(paths)?;
        let how = match &record {
            Some(record)
                if record.identity().is_alive()
                    && is_our_companion(record.pid, hash, self.state_root(), &record.nonce) =>
            {
                Some(procutil::terminate(
                    &record.identity(),
                    self.config.stop_grace,
                )?)
            }
            Some(_) => Some(Termination::AlreadyGone),
            None => None,
        };
        self.sweep_companions(hash, |_| false);
        if record.is_some() {
            remove_record(paths)?;
        }
        self.reap_children();
        Ok(how)
    }

    /// Stops companion processes of the project that are not of the
    /// recorded start (under the lock). With a record that cannot be read,
    /// nothing: which one is recorded is unknown.
    pub(crate) fn stop_orphan_companions(&self, hash: &str, paths: &ProjectPaths) -> Vec<u32> {
        match read_record(paths) {
            Ok(Some(record)) => self.sweep_companions(hash, |nonce| nonce == record.nonce),
            Ok(None) => self.sweep_companions(hash, |_| false),
            Err(_) => Vec::new(),
        }
    }

    /// What the record says and whether it is alive and answering now.
    /// `Ok(None)` when none is recorded. Never starts anything.
    pub fn companion_status(&self, project: &Path) -> Result<Option<CompanionStatus>, Error> {
        let (_, hash, paths) = self.project(project)?;
        let Some(record) = read_record(&paths)? else {
            return Ok(None);
        };
        let alive = record.identity().is_alive()
            && is_our_companion(record.pid, &hash, self.state_root(), &record.nonce);
        let answered_ms = if alive {
            answers(record.port, COMPANION_ANSWER_TIMEOUT)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        } else {
            None
        };
        Ok(Some(CompanionStatus {
            info: record.info(),
            alive,
            answered_ms,
            checked_at: statefile::rfc3339_now(),
        }))
    }

    /// Reads `companion.json` under the lock; a corrupt one is moved aside
    /// (and said).
    fn read_companion_repairing(
        &self,
        paths: &ProjectPaths,
    ) -> Result<Option<CompanionRecord>, Error> {
        match read_record(paths) {
            Ok(record) => Ok(record),
            Err(e) if e.is_corrupt() || matches!(e, statefile::Error::FutureVersion { .. }) => {
                let moved_to = statefile::quarantine(&record_path(paths))?;
                self.repaired(Repair::CorruptRecord {
                    problem: e.to_string(),
                    moved_to,
                });
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a companion (under the lock) and waits until it answers.
    fn start_companion(
        &self,
        project: &Path,
        hash: &str,
        paths: &ProjectPaths,
        spec: &CompanionSpec,
    ) -> Result<CompanionInfo, Error> {
        let port = choose_port(&spec.port)?;
        let command = substitute(&spec.command, port);
        let log = log_path(paths);
        logs::rotate_if_needed(&log, self.config.log_max_bytes, self.config.log_keep)?;
        let log_offset = logs::length(&log);
        let nonce = random_secret()?;
        let mut process = procutil::SpawnSpec::new(&command[0])
            .args(&command[1..])
            .cwd(project)
            .output(procutil::Output::AppendTo(log.clone()))
            // Not a start of a server, whatever the caller descends from.
            .env_remove(SERVER_NONCE_VAR);
        for (name, value) in &spec.env {
            process = process.env(name, value);
        }
        process = process
            .env(PROJECT_HASH_VAR, hash)
            .env(STATE_ROOT_VAR, self.state_root().as_os_str())
            .env(COMPANION_VAR, &nonce);
        // Recorded before the spawn: a crash from here on leaves a record
        // whose nonce names what this start left running.
        let mut record = CompanionRecord {
            schema_version: SCHEMA_VERSION,
            pid: 0,
            start_time: 0,
            boot_id: String::new(),
            port,
            url: format!("http://{COMPANION_HOST}:{port}"),
            command,
            started_at: statefile::rfc3339_now(),
            log: log.clone(),
            nonce,
            extra: serde_json::Map::new(),
        };
        write_record(paths, &record)?;
        let spawned_at = Instant::now();
        let child = match procutil::spawn_detached(&process) {
            Ok(child) => child,
            Err(e) => {
                let _ = remove_record(paths);
                return Err(e.into());
            }
        };
        mark_start(&log, &record.started_at, child.pid());
        record.pid = child.pid();
        record.start_time = child.identity().start_time;
        record.boot_id = child.identity().boot_id.clone();
        if let Err(e) = write_record(paths, &record) {
            let _ = child.terminate(self.config.stop_grace);
            return Err(e);
        }
        let outcome = self.wait_answering(&child, &record, spawned_at + spec.start_timeout);
        let Err(not_ready) = outcome else {
            self.adopt_child(child);
            return Ok(record.info());
        };
        let (status, stopped) = match not_ready {
            NotReady::Exited(status) => (Some(status), None),
            NotReady::TimedOut | NotReady::Interrupted => {
                (None, child.terminate(self.config.stop_grace).ok())
            }
        };
        self.sweep_companions(hash, |_| false);
        let _ = remove_record(paths);
        if matches!(not_ready, NotReady::Interrupted) {
            self.check_interrupt()?;
            return Err(Error::Interrupted {
                signal: libc::SIGINT,
            });
        }
        let log_tail: Vec<String> = server_lines(logs::last_lines(&log, log_offset, LOG_TAIL_LINES + 1))
            .iter()
            .map(|l| escaped(l))
            .collect();
        let program = record.command[0].clone();
        Err(match status {
            Some(status) => Error::CompanionExited {
                project: project.to_path_buf(),
                program,
                port,
                status,
                log,
                log_tail,
            },
            None => Error::CompanionNotReady {
                project: project.to_path_buf(),
                program,
                port,
                waited: spec.start_timeout,
                stopped,
                log,
                log_tail,
            },
        })
    }

    /// Looks at the port until the companion answers there, it exits (seen
    /// at once through its pidfd), the deadline passes or a signal
    /// interrupts. An answer counts only from a process of this start (when
    /// /proc tells who holds the port).
    fn wait_answering(
        &self,
        child: &procutil::Child,
        record: &CompanionRecord,
        deadline: Instant,
    ) -> Result<(), NotReady> {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(NotReady::Exited(status));
            }
            if self.interrupted() {
                return Err(NotReady::Interrupted);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NotReady::TimedOut);
            }
            if answers(record.port, left.min(COMPANION_ANSWER_TIMEOUT)).is_some()
                && holder_is_of(record.port, &record.nonce)
            {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if let Ok(Some(status)) = child.wait_timeout(left.min(POLL_PAUSE)) {
                return Err(NotReady::Exited(status));
            }
        }
    }
}

/// True unless /proc tells that the port's holder is not of companion start
/// `nonce` (another program took the port first).
fn holder_is_of(port: u16, nonce: &str) -> bool {
    match crate::scan::port_holder(port) {
        Some(pid) => procutil::environ_var(pid, COMPANION_VAR)
            .ok()
            .flatten()
            .is_some_and(|n| n == nonce),
        None => true,
    }
}

#[cfg(test)]
#[path = "companion_tests.rs"]
mod tests;
