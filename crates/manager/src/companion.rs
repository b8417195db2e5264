//! A companion process beside a project's server (a tool server on its own
//! port, e.g. `ocm mcp --http`): started detached, recorded in
//! `companion.json` with its process identity, health-checked over HTTP,
//! stopped with its process group, never left orphaned.
//!
//! A companion carries the project's markers plus [`COMPANION_VAR`] (its
//! start's nonce, also in the record): the server's repairs and sweeps leave
//! it alone, while an orphan (a companion process of another start) goes
//! with the project's other orphans.

mod probe;
mod record;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procutil::{ExitStatus, Termination};
use statefile::ProjectPaths;

use self::probe::{answers, choose_port, escaped, holder_is_of, is_our_companion, substitute};
use self::record::{
    CompanionRecord, SCHEMA_VERSION, log_path, read_record, record_path, remove_record,
    write_record,
};
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
        let log_tail: Vec<String> =
            server_lines(logs::last_lines(&log, log_offset, LOG_TAIL_LINES + 1))
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

#[cfg(test)]
mod tests;
