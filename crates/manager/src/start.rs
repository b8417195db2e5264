//! `ensure`: reuse the recorded server when it is ours and healthy, else
//! repair and start one; a start attempt is spawn, wait-ready, record, and
//! on failure clean up and retry once.

use std::path::Path;
use std::time::{Duration, Instant};

use procutil::{ExitStatus, ProcessIdentity, Termination};
use statefile::ProjectPaths;

use crate::address::bind_literal;
use crate::health::{HealthWait, Liveness, url_host_port, wait_healthy};
use crate::password::random_secret;
use crate::progress::{Progress, Repair, StartFailure};
use crate::record::{
    Desired, RecordStatus, SCHEMA_VERSION, ServerRecord, read_record, write_record,
};
use crate::report::{ServerInfo, info_from};
use crate::scan::COMPANION_VAR;
use crate::{
    Error, Manager, PROJECT_HASH_VAR, PasswordPolicy, SERVER_NONCE_VAR, STATE_ROOT_VAR, USERNAME,
    find_opencode, listen, logs, scan,
};

/// How many lines of the server log a start failure carries.
const LOG_TAIL_LINES: usize = 20;
/// The pause before the one retry of a failed start.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Why a start attempt failed.
enum AttemptError {
    /// Retrying cannot help (configuration, state folder, spawn). Boxed:
    /// the error is large and this is the rare path.
    Fatal(Box<Error>),
    /// The server did not come up; a retry may help.
    Failed(AttemptFailure),
}

impl AttemptError {
    fn fatal(error: impl Into<Error>) -> AttemptError {
        AttemptError::Fatal(Box::new(error.into()))
    }
}

struct AttemptFailure {
    failure: StartFailure,
    exit: Option<ExitStatus>,
    stopped: Option<Termination>,
    log_tail: Vec<String>,
}

/// Why a spawned server did not become ready.
enum NotReady {
    Failed(StartFailure),
    Interrupted,
}

/// A server just spawned, before it is known to be ready.
struct Spawned {
    pid: u32,
    identity: ProcessIdentity,
    spawned_at: Instant,
    /// Where this start's output begins in the log.
    log_offset: u64,
    record: ServerRecord,
}

impl Manager {
    /// Returns the project's healthy server, starting or repairing it as
    /// needed. Blocks up to the lock timeout while another process works on
    /// the same project, then up to twice the start-up timeout.
    pub fn ensure(&self, project: &Path) -> Result<ServerInfo, Error> {
        self.reap_children();
        let (project, hash, paths) = self.project(project)?;
        if !project.is_dir() {
            return Err(Error::ProjectNotFound { path: project });
        }
        self.check_interrupt()?;
        let _lock = self.lock(&paths)?;
        self.check_interrupt()?;
        if let Some(info) = self.check_recorded(&project, &hash, &paths)? {
            return Ok(info);
        }
        self.clear_for_start(&hash, &paths)?;
        self.start(&project, &hash, &paths)
    }

    /// Before a start, under the lock: no healthy recorded server runs, so
    /// every other server of the project and everything earlier servers
    /// left running is stopped.
    pub(crate) fn clear_for_start(&self, hash: &str, paths: &ProjectPaths) -> Result<(), Error> {
        let record = read_record(&paths.record).ok().flatten();
        self.stop_orphans(hash, record.as_ref())?;
        self.stop_orphan_companions(hash, paths);
        let pids = self.sweep_project(hash, None);
        if !pids.is_empty() {
            self.repaired(Repair::LeftoversStopped { pids });
        }
        Ok(())
    }

    /// Reads the record and returns its server when it is ours and healthy;
    /// otherwise repairs what it finds (under the lock) and returns `None`.
    fn check_recorded(
        &self,
        project: &Path,
        hash: &str,
        paths: &ProjectPaths,
    ) -> Result<Option<ServerInfo>, Error> {
        let Some(mut record) = self.read_record_repairing(hash, paths)? else {
            return Ok(None);
        };
        if record.status == RecordStatus::Stopped {
            return Ok(None);
        }
        if record.pid == 0 {
            self.repaired(Repair::InterruptedStart);
            return Ok(None);
        }
        let password = self.password_of(&record, paths)?;
        if !record.auth && matches!(self.config.password, PasswordPolicy::Fixed(_)) {
            self.report(Progress::PasswordNotApplied { pid: record.pid });
        }
        match self.liveness(&record, hash, password.as_deref()) {
            Liveness::Healthy { version } => {
                self.report(Progress::Reused {
                    url: record.url.clone(),
                    pid: record.pid,
                });
                // `ocm up` is the user asking for the server: a record that
                // said down (an older ocm's, or a supervisor's) now says up.
                if record.desired != Desired::Up {
                    record.desired = Desired::Up;
                    write_record(&paths.record, &record)?;
                }
                Ok(Some(info_from(
                    project,
                    &record,
                    Some(version),
                    true,
                    password,
                )))
            }
            Liveness::Unauthorized => Err(Error::Unauthorized {
                project: project.to_path_buf(),
                url: record.url,
                pid: record.pid,
            }),
            Liveness::Unhealthy { reason } => {
                let how = procutil::terminate(&record.identity(), self.config.stop_grace)?;
                self.repaired(Repair::Unhealthy {
                    pid: record.pid,
                    reason,
                    how,
                });
                Ok(None)
            }
            Liveness::Dead => {
                self.repaired(Repair::Died { pid: record.pid });
                Ok(None)
            }
            Liveness::NotOurs => {
                self.repaired(Repair::NotOurs { pid: record.pid });
                Ok(None)
            }
        }
    }

    /// Starts a server (under the lock), retrying once.
    pub(crate) fn start(
        &self,
        project: &Path,
        hash: &str,
        paths: &ProjectPaths,
    ) -> Result<ServerInfo, Error> {
        let bin = find_opencode(self.config.opencode_bin.as_deref())?;
        // Resolved once: the server binds, and the record names, a literal.
        let host = bind_literal(&self.config.hostname)?;
        let password = self.password_for_start(paths)?;
        let mut last = None;
        for attempt in 1..=2u32 {
            if attempt > 1 {
                std::thread::sleep(RETRY_PAUSE);
            }
            self.check_interrupt()?;
            match self.start_once(
                project,
                hash,
                paths,
                (&bin, &host),
                password.as_deref(),
                attempt,
            ) {
                Ok(info) => return Ok(info),
                Err(AttemptError::Fatal(e)) => return Err(*e),
                Err(AttemptError::Failed(failure)) => {
                    if attempt == 1 {
                        self.report(Progress::Retrying {
                            reason: failure.failure.clone(),
                        });
                    }
                    last = Some(failure);
                }
            }
        }
        let last = last.expect("two attempts ran");
        Err(Error::StartFailed {
            project: project.to_path_buf(),
            attempts: 2,
            failure: Box::new(last.failure),
            exit: last.exit,
            stopped: last.stopped,
            log_path: paths.log.clone(),
            log_tail: last.log_tail,
        })
    }

    fn start_once(
        &self,
        project: &Path,
        hash: &str,
        paths: &ProjectPaths,
        (bin, host): (&Path, &str),
        password: Option<&str>,
        attempt: u32,
    ) -> Result<ServerInfo, AttemptError> {
        let port = self.choose_port(project).map_err(AttemptError::fatal)?;
        self.report(Progress::Starting {
            project: project.to_path_buf(),
            port,
            attempt,
        });
        self.check_interrupt().map_err(AttemptError::fatal)?;
        let mut spawned = self.spawn_server(project, hash, paths, (bin, host), password, port)?;
        let failure = match self.wait_ready(&spawned, hash, paths, (bin, host), password) {
            Ok((url, version, port)) => {
                return self
                    .record_running(&mut spawned, paths, url, version, port)
                    .map(|()| {
                        info_from(
                            project,
                            &spawned.record,
                            spawned.record.opencode_version.clone(),
                            false,
                            password.map(str::to_string),
                        )
                    });
            }
            Err(NotReady::Failed(failure)) => failure,
            Err(NotReady::Interrupted) => {
                // Stopped with its group and recorded as stopped, as the
                // user asked: nothing half started is left to repair. A
                // supervisor that stops keeps what the user wanted.
                if self.interrupt_means_down {
                    spawned.record.desired = Desired::Down;
                }
                self.fail_attempt(spawned, hash, paths, StartFailure::Exited { status: None });
                return Err(AttemptError::fatal(self.check_interrupt().err().unwrap_or(
                    Error::Interrupted {
                        signal: libc::SIGINT,
                    },
                )));
            }
        };
        Err(AttemptError::Failed(
            self.fail_attempt(spawned, hash, paths, failure),
        ))
    }

    /// Spawns the server detached, its output appended to the log, and
    /// records it as starting at once: a crash from here on leaves a record
    /// that points at this process, so the next call cleans it up.
    fn spawn_server(
        &self,
        project: &Path,
        hash: &str,
        paths: &ProjectPaths,
        (bin, host): (&Path, &str),
        password: Option<&str>,
        port: Option<u16>,
    ) -> Result<Spawned, AttemptError> {
        logs::rotate_if_needed(&paths.log, self.config.log_max_bytes, self.config.log_keep)
            .map_err(AttemptError::fatal)?;
        let log_offset = logs::length(&paths.log);
        let mut spec = procutil::SpawnSpec::new(bin)
            .arg("serve")
            .arg("--hostname")
            .arg(host)
            .arg("--port")
            .arg(port.unwrap_or(0).to_string())
            .cwd(project)
            .output(procutil::Output::AppendTo(paths.log.clone()));
        // The server must not inherit a password the policy does not give it.
        spec = spec
            .env_remove("OPENCODE_SERVER_PASSWORD")
            .env_remove("OPENCODE_SERVER_USERNAME")
            // A server started from within a companion (`ocm mcp`) is a
            // server, not part of the companion.
            .env_remove(COMPANION_VAR);
        for name in &self.config.env_remove {
            spec = spec.env_remove(name);
        }
        for (name, value) in &self.config.env_set {
            spec = spec.env(name, value);
        }
        spec = spec
            .env(PROJECT_HASH_VAR, hash)
            .env(STATE_ROOT_VAR, self.state_root().as_os_str());
        if let Some(password) = password {
            spec = spec
                .env("OPENCODE_SERVER_PASSWORD", password)
                .env("OPENCODE_SERVER_USERNAME", USERNAME);
        }
        // Recorded before the spawn, with the start's nonce in the record
        // and in the server's environment: from the moment the server can
        // be seen, a record names it, even if this process dies before it
        // learns the pid.
        let nonce = random_secret().map_err(AttemptError::fatal)?;
        spec = spec.env(SERVER_NONCE_VAR, &nonce);
        let mut record = ServerRecord {
            schema_version: SCHEMA_VERSION,
            project_path: project.to_path_buf(),
            project_hash: hash.to_string(),
            pid: 0,
            start_time: 0,
            boot_id: String::new(),
            port: port.unwrap_or(0),
            hostname: host.to_string(),
            url: String::new(),
            status: RecordStatus::Starting,
            log_path: paths.log.clone(),
            started_at: statefile::rfc3339_now(),
            last_health_check: None,
            opencode_version: None,
            opencode_bin: bin.to_path_buf(),
            auth: password.is_some(),
            desired: Desired::Up,
            nonce: Some(nonce.clone()),
            extra: serde_json::Map::new(),
        };
        write_record(&paths.record, &record).map_err(AttemptError::fatal)?;
        let spawned_at = Instant::now();
        let child = procutil::spawn_detached(&spec).map_err(AttemptError::fatal)?;
        let identity = child.identity().clone();
        let pid = child.pid();
        // Which run said what: `ocm logs` shows where each start begins. The
        // server prints its first line tens of milliseconds after exec, so
        // this line comes first in practice.
        mark_start(&paths.log, &record.started_at, pid);
        self.adopt_child(child);
        record.pid = pid;
        record.start_time = identity.start_time;
        record.boot_id = identity.boot_id.clone();
        write_record(&paths.record, &record).map_err(|e| {
            let _ = procutil::terminate(&identity, Duration::ZERO);
            AttemptError::Fatal(Box::new(e))
        })?;
        Ok(Spawned {
            pid,
            identity,
            spawned_at,
            log_offset,
            record,
        })
    }

    /// Waits for the listening line, then a healthy answer, and checks that
    /// ocm would find the server again. Returns its URL, version and port.
    fn wait_ready(
        &self,
        spawned: &Spawned,
        hash: &str,
        paths: &ProjectPaths,
        (bin, host): (&Path, &str),
        password: Option<&str>,
    ) -> Result<(String, String, u16), NotReady> {
        let pid = spawned.pid;
        self.report(Progress::WaitingForListen { pid });
        let deadline = spawned.spawned_at + self.config.start_timeout;
        let outcome = listen::wait_for_listening(
            &paths.log,
            spawned.log_offset,
            pid,
            deadline,
            self.interrupt_source(),
        );
        let addr = match outcome {
            listen::ListenOutcome::Listening(addr) => addr,
            listen::ListenOutcome::Exited => {
                return Err(NotReady::Failed(StartFailure::Exited { status: None }));
            }
            listen::ListenOutcome::TimedOut => {
                return Err(NotReady::Failed(StartFailure::NoListeningLine {
                    waited: self.config.start_timeout,
                }));
            }
            listen::ListenOutcome::Interrupted => return Err(NotReady::Interrupted),
        };
        self.report(Progress::Listening {
            port: addr.port,
            elapsed: spawned.spawned_at.elapsed(),
        });
        // The address ocm told it to bind (a literal), whatever the line
        // spells: a name there could resolve elsewhere later.
        let url = format!("http://{}", url_host_port(host, addr.port));
        match wait_healthy(&url, password, deadline, &|| self.interrupted()) {
            // ocm must find its server again (to reuse or stop it): refuse
            // one it would not recognise, rather than leak it.
            Ok(_) if !scan::is_our_server(pid, hash, self.state_root()) => {
                Err(NotReady::Failed(StartFailure::Unrecognised {
                    pid,
                    url,
                    bin: bin.to_path_buf(),
                }))
            }
            Ok(version) => {
                self.report(Progress::Healthy {
                    url: url.clone(),
                    elapsed: spawned.spawned_at.elapsed(),
                });
                Ok((url, version, addr.port))
            }
            Err(HealthWait::Failed(reason)) => {
                Err(NotReady::Failed(StartFailure::Unhealthy { url, reason }))
            }
            Err(HealthWait::Interrupted) => Err(NotReady::Interrupted),
        }
    }

    /// Records the ready server as running.
    fn record_running(
        &self,
        spawned: &mut Spawned,
        paths: &ProjectPaths,
        url: String,
        version: String,
        port: u16,
    ) -> Result<(), AttemptError> {
        let record = &mut spawned.record;
        record.port = port;
        record.url = url;
        record.status = RecordStatus::Running;
        record.last_health_check = Some(statefile::rfc3339_now());
        record.opencode_version = Some(version);
        if let Err(e) = write_record(&paths.record, record) {
            let _ = procutil::terminate(&spawned.identity, self.config.stop_grace);
            return Err(AttemptError::fatal(e));
        }
        Ok(())
    }

    /// Cleans up a failed attempt: the process (if still there) and its
    /// record; keeps how it ended and what it logged.
    fn fail_attempt(
        &self,
        mut spawned: Spawned,
        hash: &str,
        paths: &ProjectPaths,
        mut failure: StartFailure,
    ) -> AttemptFailure {
        let (exit, stopped) = self.end_attempt(spawned.pid, &spawned.identity);
        // A wrapper may have left the real server (or anything else) running
        // outside its group: everything of this start goes.
        self.sweep_project(hash, spawned.record.nonce.as_deref());
        if let StartFailure::Exited { status } = &mut failure {
            *status = exit;
        }
        spawned.record.status = RecordStatus::Stopped;
        let _ = write_record(&paths.record, &spawned.record);
        AttemptFailure {
            failure,
            exit,
            stopped,
            log_tail: server_lines(logs::last_lines(
                &paths.log,
                spawned.log_offset,
                LOG_TAIL_LINES + 1,
            )),
        }
    }
}

/// What the server said, at most [`LOG_TAIL_LINES`]: ocm's own start mark
/// is not part of it.
pub(crate) fn server_lines(mut lines: Vec<String>) -> Vec<String> {
    lines.retain(|line| !line.starts_with(START_MARK));
    let extra = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines.split_off(extra)
}

/// How ocm's line that marks a start in the log begins.
const START_MARK: &str = "--- ocm start ";

/// Appends `--- ocm start <time> pid N ---` to the log (never following a
/// symlink); a log that cannot be written is not worth failing a start for.
pub(crate) fn mark_start(log: &Path, started_at: &str, pid: u32) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(log);
    if let Ok(mut file) = file {
        let _ = writeln!(file, "{START_MARK}{started_at} pid {pid} ---");
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    use super::*;

    #[test]
    fn ensure_refuses_a_missing_project_folder() {
        let root = tempfile::tempdir().unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().to_path_buf()),
            ..Config::default()
        })
        .unwrap();
        let err = manager.ensure(&root.path().join("missing")).unwrap_err();
        assert!(matches!(err, Error::ProjectNotFound { .. }), "{err}");
    }
}
