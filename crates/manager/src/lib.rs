//! One healthy OpenCode server per project, found again from any process.
//!
//! A [`Manager`] starts `opencode serve` for a project folder on a known
//! port, records it under the state root, and finds it again from any
//! process: [`Manager::ensure`] returns the running server when its process
//! is still the one recorded and it answers `GET /global/health`, and
//! otherwise repairs what it finds (a dead, hung or foreign process, a corrupt
//! record, a taken port) and starts a fresh one. Every change to a project's
//! server happens under that project's advisory lock, so any number of
//! processes asking at once get exactly one server.
//!
//! ```no_run
//! use manager::{Config, Manager};
//!
//! let manager = Manager::new(Config::from_env())?;
//! let server = manager.ensure(std::path::Path::new("."))?;
//! println!("{} (pid {})", server.url, server.pid);
//! for (name, value) in server.child_env() {
//!     println!("{name}={value}");
//! }
//! manager.stop(std::path::Path::new("."))?;
//! # Ok::<(), manager::Error>(())
//! ```
//!
//! Servers ocm starts carry `OCM_PROJECT_HASH` and `OCM_STATE_DIR` in their
//! environment and lead their own session, so ocm recognises its own
//! servers (and orphans of them) and never signals a process that is not
//! one of them.

mod config;
mod error;
mod listen;
mod logs;
mod scan;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use procutil::{ProcessIdentity, Termination};
use serde::Serialize;
use statefile::{ProjectPaths, RecordStatus, ServerRecord};

pub use config::{
    Config, OPENCODE_VERSION, PasswordPolicy, PortPolicy, find_opencode, is_loopback,
    opencode_cache_dir, opencode_in_prefix,
};
pub use error::Error;
pub use procutil::Termination as StopKind;
pub use procutil::{signals, watch};
pub use scan::{PROJECT_HASH_VAR, STATE_ROOT_VAR};

/// The user name opencode expects with a password.
pub const USERNAME: &str = "opencode";

/// How many lines of the server log a start failure carries.
const LOG_TAIL_LINES: usize = 20;
/// The pause before the one retry of a failed start.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// One health request while a fresh server settles (FACTS: a request sent
/// in the moment the port is bound can hang; the next one answers at once).
const STARTUP_HEALTH_ATTEMPT: Duration = Duration::from_millis(500);

/// What a project's server is doing, as `ocm status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Its process is the recorded one and it answers health checks.
    Running,
    /// No server: never started, or stopped by ocm.
    Stopped,
    /// Its process is alive but does not answer (hung, stopped, or refusing).
    Unhealthy,
    /// The record says running but the process is gone (or is now another
    /// program).
    Dead,
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerState::Running => "running",
            ServerState::Stopped => "stopped",
            ServerState::Unhealthy => "unhealthy",
            ServerState::Dead => "dead",
        })
    }
}

/// Progress of a [`Manager`] call, for embedders and the CLI to show.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A healthy recorded server was found and is reused.
    Reused {
        /// Its URL.
        url: String,
        /// Its pid.
        pid: u32,
    },
    /// Something was wrong and was repaired (or left alone, said why).
    Repaired {
        /// What was found and done.
        what: String,
    },
    /// The chosen port is held by another program; the next is tried.
    PortTaken {
        /// The port.
        port: u16,
        /// Its holder's pid when /proc tells.
        holder: Option<u32>,
    },
    /// A server is being started.
    Starting {
        /// The project.
        project: PathBuf,
        /// The port (`None`: opencode picks).
        port: Option<u16>,
        /// 1 for the first attempt, 2 for the retry.
        attempt: u32,
    },
    /// The server was spawned; waiting for its listening line.
    WaitingForListen {
        /// Its pid.
        pid: u32,
    },
    /// The server printed its listening line.
    Listening {
        /// The port it listens on.
        port: u16,
        /// Since the spawn.
        elapsed: Duration,
    },
    /// The server answered its first health check.
    Healthy {
        /// Its URL.
        url: String,
        /// Since the spawn.
        elapsed: Duration,
    },
    /// A start failed and is tried once more.
    Retrying {
        /// Why the first attempt failed.
        reason: String,
    },
    /// A server is being stopped.
    Stopping {
        /// Its pid.
        pid: u32,
    },
    /// Another process holds the project's lock (it is starting or stopping
    /// the server); waiting for it, at most the lock timeout.
    WaitingForLock {
        /// The lock file.
        path: PathBuf,
    },
}

/// A running, healthy server, as [`Manager::ensure`] returns it.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// The project folder (absolute, normalized).
    pub project: PathBuf,
    /// `http://HOST:PORT`.
    pub url: String,
    /// The address it binds.
    pub hostname: String,
    /// Its port.
    pub port: u16,
    /// Its pid (and process group).
    pub pid: u32,
    /// Always [`ServerState::Running`] here.
    pub status: ServerState,
    /// Always true here.
    pub healthy: bool,
    /// When it was started (RFC 3339).
    pub started_at: String,
    /// Its log file.
    pub log_path: PathBuf,
    /// The version its health check reported.
    pub version: Option<String>,
    /// True when an existing server was reused, false when one was started.
    pub reused: bool,
    #[serde(skip)]
    password: Option<String>,
}

impl std::fmt::Debug for ServerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerInfo")
            .field("project", &self.project)
            .field("url", &self.url)
            .field("port", &self.port)
            .field("pid", &self.pid)
            .field("started_at", &self.started_at)
            .field("version", &self.version)
            .field("reused", &self.reused)
            .field("auth", &self.password.is_some())
            .finish()
    }
}

impl ServerInfo {
    /// True when the server requires a password.
    pub fn has_auth(&self) -> bool {
        self.password.is_some()
    }

    /// The password, when the server has one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The environment to hand to programs that talk to this server:
    /// `OPENCODE_SERVER=<url>`, plus the user name and password when auth
    /// is on.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("OPENCODE_SERVER".to_string(), self.url.clone())];
        if let Some(password) = &self.password {
            env.push(("OPENCODE_SERVER_USERNAME".into(), USERNAME.into()));
            env.push(("OPENCODE_SERVER_PASSWORD".into(), password.clone()));
        }
        env
    }

    /// A client of this server's HTTP API, with its credentials.
    pub fn client(&self) -> Result<opencode_api::Client, opencode_api::Error> {
        let mut builder = opencode_api::Client::builder(&self.url).directory(&self.project);
        if let Some(password) = &self.password {
            builder = builder.basic_auth(USERNAME, password);
        }
        builder.build()
    }
}

/// A project's server as recorded, with live checks, as [`Manager::status`]
/// and [`Manager::list`] report it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    /// The project folder.
    pub project: PathBuf,
    /// What the server is doing.
    pub status: ServerState,
    /// True when it answered a health check just now.
    pub healthy: bool,
    /// Its URL (from the record).
    pub url: Option<String>,
    /// Its port (from the record).
    pub port: Option<u16>,
    /// Its pid (from the record).
    pub pid: Option<u32>,
    /// When it was started (RFC 3339).
    pub started_at: Option<String>,
    /// Its log file.
    pub log_path: PathBuf,
    /// The version its health check reported.
    pub version: Option<String>,
    /// Seconds since it started, while it runs.
    pub uptime_seconds: Option<u64>,
    /// Resident memory of its process, while it runs.
    pub resident_memory_bytes: Option<u64>,
    /// Why it is in this state, when that needs saying.
    pub detail: Option<String>,
    /// The project's state folder.
    #[serde(skip)]
    pub state_dir: PathBuf,
}

/// What [`Manager::stop`] did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopReport {
    /// The project.
    pub project: PathBuf,
    /// The recorded server's pid, when there was a live one of ours.
    pub pid: Option<u32>,
    /// How it ended: `None` when nothing of ours was running.
    #[serde(serialize_with = "serialize_termination")]
    pub stopped: Option<Termination>,
    /// Unrecorded servers of this project that were stopped too.
    pub orphans_stopped: Vec<u32>,
    /// A recorded pid that is alive but not this project's server: left alone.
    pub left_alone: Option<u32>,
}

fn serialize_termination<S: serde::Serializer>(
    t: &Option<Termination>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        None => s.serialize_none(),
        Some(Termination::AlreadyGone) => s.serialize_str("already-gone"),
        Some(Termination::ExitedOnTerm) => s.serialize_str("terminated"),
        Some(Termination::Killed) => s.serialize_str("killed"),
    }
}

/// What [`Manager::gc`] did and found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    /// State folders of servers that are not running, removed.
    pub removed: Vec<PathBuf>,
    /// Running servers whose project folder is gone (left running).
    pub project_gone: Vec<ServerStatus>,
    /// Servers of ours with no record at all, stopped.
    pub orphans_stopped: Vec<u32>,
    /// State folders skipped because another process holds their lock.
    pub busy: Vec<PathBuf>,
    /// Records that cannot be read, left in place for a person to look at.
    pub unreadable: Vec<PathBuf>,
}

type ProgressFn = dyn Fn(&Progress) + Send + Sync;

/// Starts, finds, checks and stops one OpenCode server per project.
pub struct Manager {
    config: Config,
    state_root: PathBuf,
    progress: Option<Arc<ProgressFn>>,
    /// Servers this process spawned, kept so that they are reaped (no zombie)
    /// when they exit while this process lives on.
    children: Mutex<Vec<procutil::Child>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("config", &self.config)
            .field("state_root", &self.state_root)
            .finish_non_exhaustive()
    }
}

/// What a live check of a recorded server found.
enum Liveness {
    Healthy { version: String },
    Unauthorized,
    Unhealthy { reason: String },
    Dead,
    NotOurs,
}

impl Manager {
    /// A manager with `config`. Fails on a bad configuration or when no
    /// state root can be determined; the opencode binary is looked up only
    /// when a server is started.
    pub fn new(config: Config) -> Result<Manager, Error> {
        config.validate()?;
        let given = match &config.state_root {
            Some(root) => portmap::resolve_path(root)?,
            None => statefile::state_root()?,
        };
        // One name for the state root, whatever path led to it (symlinks,
        // `..`): servers are recognised by the root in their environment, so
        // two spellings of one folder must not look like two roots.
        statefile::ensure_dir(&given)?;
        let state_root = std::fs::canonicalize(&given).map_err(|source| Error::Io {
            action: "cannot resolve the state folder",
            path: given.clone(),
            source,
        })?;
        Ok(Manager {
            config,
            state_root,
            progress: None,
            children: Mutex::new(Vec::new()),
        })
    }

    /// Reports progress to `report` (called on the calling thread).
    pub fn with_progress(mut self, report: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(report));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The state root.
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    fn report(&self, progress: Progress) {
        if let Some(report) = &self.progress {
            report(&progress);
        }
    }

    /// The project's absolute path, its hash and its state paths.
    fn project(&self, project: &Path) -> Result<(PathBuf, String, ProjectPaths), Error> {
        let project = portmap::resolve_path(project)?;
        let hash = portmap::project_hash(&project)?;
        let paths = ProjectPaths::new(&self.state_root, &hash);
        Ok((project, hash, paths))
    }

    /// The state paths of a project (record, lock, log).
    pub fn paths(&self, project: &Path) -> Result<ProjectPaths, Error> {
        Ok(self.project(project)?.2)
    }

    fn lock(&self, paths: &ProjectPaths) -> Result<statefile::LockGuard, Error> {
        statefile::ensure_dir(&paths.dir)?;
        if let Some(guard) = statefile::try_lock(&paths.lock)? {
            return Ok(guard);
        }
        self.report(Progress::WaitingForLock {
            path: paths.lock.clone(),
        });
        Ok(statefile::lock(&paths.lock, self.config.lock_timeout)?)
    }

    /// Returns the project's healthy server, starting or repairing it as
    /// needed. Blocks up to the lock timeout while another process works on
    /// the same project, then up to twice the start-up timeout.
    pub fn ensure(&self, project: &Path) -> Result<ServerInfo, Error> {
        self.reap_children();
        let (project, hash, paths) = self.project(project)?;
        if !project.is_dir() {
            return Err(Error::ProjectNotFound { path: project });
        }
        let _lock = self.lock(&paths)?;
        if let Some(info) = self.check_recorded(&project, &hash, &paths)? {
            return Ok(info);
        }
        self.stop_orphans(&hash)?;
        self.start(&project, &hash, &paths)
    }

    /// Reads the record and returns its server when it is ours and healthy;
    /// otherwise repairs what it finds (under the lock) and returns `None`.
    fn check_recorded(
        &self,
        project: &Path,
        hash: &str,
        paths: &ProjectPaths,
    ) -> Result<Option<ServerInfo>, Error> {
        let Some(record) = self.read_record_repairing(paths)? else {
            return Ok(None);
        };
        if record.status == RecordStatus::Stopped {
            return Ok(None);
        }
        let password = self.password_of(&record, paths)?;
        if !record.auth && matches!(self.config.password, PasswordPolicy::Fixed(_)) {
            self.report(Progress::Repaired {
                what: format!(
                    "the running server (pid {}) has no password; the one given applies \
                     from its next start (`ocm restart`)",
                    record.pid
                ),
            });
        }
        match self.liveness(
            &record,
            hash,
            password.as_deref(),
            self.config.health_timeout,
        ) {
            Liveness::Healthy { version } => {
                self.report(Progress::Reused {
                    url: record.url.clone(),
                    pid: record.pid,
                });
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
                let identity = identity_of(&record);
                let how = procutil::terminate(&identity, self.config.stop_grace)?;
                self.report(Progress::Repaired {
                    what: format!(
                        "server pid {} was unhealthy ({reason}); {}",
                        record.pid,
                        describe_termination(how)
                    ),
                });
                Ok(None)
            }
            Liveness::Dead => {
                self.report(Progress::Repaired {
                    what: format!("server pid {} had died", record.pid),
                });
                Ok(None)
            }
            Liveness::NotOurs => {
                self.report(Progress::Repaired {
                    what: format!(
                        "recorded pid {} is not this project's server; left it alone",
                        record.pid
                    ),
                });
                Ok(None)
            }
        }
    }

    /// Reads the project's record under its lock. A corrupt record is moved
    /// aside (and said); a record written by a newer ocm is refused, not
    /// touched: that ocm's server is not ours to judge.
    fn read_record_repairing(&self, paths: &ProjectPaths) -> Result<Option<ServerRecord>, Error> {
        match statefile::read_record(&paths.record) {
            Ok(record) => Ok(record),
            Err(statefile::Error::FutureVersion {
                path,
                found,
                supported,
            }) => Err(Error::RecordFromNewerOcm {
                path,
                found,
                supported,
            }),
            Err(e) if e.is_corrupt() => {
                let moved = statefile::quarantine(&paths.record)?;
                self.report(Progress::Repaired {
                    what: format!("{e}; moved it to {}", moved.display()),
                });
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The password of a recorded server: none when it was started without
    /// one, else the configured or kept one.
    fn password_of(
        &self,
        record: &ServerRecord,
        paths: &ProjectPaths,
    ) -> Result<Option<String>, Error> {
        if record.auth {
            self.known_password(paths)
        } else {
            Ok(None)
        }
    }

    /// Whether a recorded server is ours, alive and healthy.
    fn liveness(
        &self,
        record: &ServerRecord,
        hash: &str,
        password: Option<&str>,
        timeout: Duration,
    ) -> Liveness {
        let identity = identity_of(record);
        if !identity.is_alive() {
            return Liveness::Dead;
        }
        if !scan::is_our_server(record.pid, hash, &self.state_root) {
            return Liveness::NotOurs;
        }
        match health(&record.url, password, timeout) {
            Ok(version) => Liveness::Healthy { version },
            Err(HealthFailure::Unauthorized) => Liveness::Unauthorized,
            Err(HealthFailure::Other(reason)) => Liveness::Unhealthy { reason },
        }
    }

    /// Stops servers of this project that carry our marker but are not
    /// the recorded one (left by a crash between spawn and record).
    fn stop_orphans(&self, hash: &str) -> Result<Vec<u32>, Error> {
        let mut stopped = Vec::new();
        for (pid, _) in scan::our_servers(&self.state_root)
            .into_iter()
            .filter(|(_, h)| h == hash)
        {
            // Pin the process first, then check it is still ours: terminate
            // refuses a pid whose start time changed since.
            let Ok(identity) = ProcessIdentity::of(pid) else {
                continue;
            };
            if !scan::is_our_server(pid, hash, &self.state_root) {
                continue;
            }
            let how = procutil::terminate(&identity, self.config.stop_grace)?;
            self.report(Progress::Repaired {
                what: format!(
                    "unrecorded server pid {pid} of this project; {}",
                    describe_termination(how)
                ),
            });
            stopped.push(pid);
        }
        Ok(stopped)
    }

    /// The password a running server of this project may have: the
    /// configured one, else a generated one kept in the state folder.
    fn known_password(&self, paths: &ProjectPaths) -> Result<Option<String>, Error> {
        if let PasswordPolicy::Fixed(password) = &self.config.password {
            return Ok(Some(password.clone()));
        }
        let file = password_file(paths);
        match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                action: "cannot read",
                path: file,
                source,
            }),
        }
    }

    /// The password for a new server, per the policy.
    fn password_for_start(&self, paths: &ProjectPaths) -> Result<Option<String>, Error> {
        let file = password_file(paths);
        match &self.config.password {
            PasswordPolicy::Fixed(password) => Ok(Some(password.clone())),
            PasswordPolicy::None => {
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(Error::Io {
                            action: "cannot remove",
                            path: file,
                            source,
                        });
                    }
                }
                Ok(None)
            }
            PasswordPolicy::Generate => {
                if let Some(existing) = self.known_password(paths)? {
                    return Ok(Some(existing));
                }
                let password = random_password()?;
                statefile::write_private(&file, password.as_bytes())?;
                Ok(Some(password))
            }
        }
    }

    /// Starts a server (under the lock), retrying once.
    fn start(&self, project: &Path, hash: &str, paths: &ProjectPaths) -> Result<ServerInfo, Error> {
        let bin = find_opencode(self.config.opencode_bin.as_deref())?;
        let password = self.password_for_start(paths)?;
        let mut last = None;
        for attempt in 1..=2u32 {
            if attempt > 1 {
                std::thread::sleep(RETRY_PAUSE);
            }
            match self.start_once(project, hash, paths, &bin, password.as_deref(), attempt) {
                Ok(info) => return Ok(info),
                Err(AttemptError::Fatal(e)) => return Err(*e),
                Err(AttemptError::Failed(failure)) => {
                    if attempt == 1 {
                        self.report(Progress::Retrying {
                            reason: failure.reason.clone(),
                        });
                    }
                    last = Some(failure);
                }
            }
        }
        let failure = last.expect("two attempts ran");
        Err(Error::StartFailed {
            project: project.to_path_buf(),
            attempts: 2,
            reason: failure.reason,
            exit: failure.exit,
            log_path: paths.log.clone(),
            log_tail: failure.log_tail,
        })
    }

    fn start_once(
        &self,
        project: &Path,
        hash: &str,
        paths: &ProjectPaths,
        bin: &Path,
        password: Option<&str>,
        attempt: u32,
    ) -> Result<ServerInfo, AttemptError> {
        let port = self.choose_port(project).map_err(AttemptError::fatal)?;
        self.report(Progress::Starting {
            project: project.to_path_buf(),
            port,
            attempt,
        });
        logs::rotate_if_needed(&paths.log, self.config.log_max_bytes, self.config.log_keep)
            .map_err(AttemptError::fatal)?;
        let offset = logs::length(&paths.log);
        let mut spec = procutil::SpawnSpec::new(bin)
            .arg("serve")
            .arg("--hostname")
            .arg(&self.config.hostname)
            .arg("--port")
            .arg(port.unwrap_or(0).to_string())
            .cwd(project)
            .output(procutil::Output::AppendTo(paths.log.clone()));
        // The server must not inherit a password the policy does not give it.
        spec = spec
            .env_remove("OPENCODE_SERVER_PASSWORD")
            .env_remove("OPENCODE_SERVER_USERNAME");
        for name in &self.config.env_remove {
            spec = spec.env_remove(name);
        }
        for (name, value) in &self.config.env_set {
            spec = spec.env(name, value);
        }
        spec = spec
            .env(PROJECT_HASH_VAR, hash)
            .env(STATE_ROOT_VAR, self.state_root.as_os_str());
        if let Some(password) = password {
            spec = spec
                .env("OPENCODE_SERVER_PASSWORD", password)
                .env("OPENCODE_SERVER_USERNAME", USERNAME);
        }
        let spawned_at = Instant::now();
        let started_at = statefile::rfc3339_now();
        let child = procutil::spawn_detached(&spec).map_err(AttemptError::fatal)?;
        let identity = child.identity().clone();
        let pid = child.pid();
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
        let mut record = ServerRecord {
            schema_version: statefile::SCHEMA_VERSION,
            project_path: project.to_path_buf(),
            project_hash: hash.to_string(),
            pid,
            start_time: identity.start_time,
            boot_id: identity.boot_id.clone(),
            port: port.unwrap_or(0),
            hostname: self.config.hostname.clone(),
            url: String::new(),
            status: RecordStatus::Starting,
            log_path: paths.log.clone(),
            started_at,
            last_health_check: None,
            opencode_version: None,
            opencode_bin: bin.to_path_buf(),
            auth: password.is_some(),
        };
        // Recorded before the wait: a crash from here on leaves a record
        // that points at this process, so the next call cleans it up.
        statefile::write_atomic(&paths.record, &record).map_err(|e| {
            let _ = procutil::terminate(&identity, Duration::ZERO);
            AttemptError::fatal(e)
        })?;
        self.report(Progress::WaitingForListen { pid });
        let deadline = spawned_at + self.config.start_timeout;
        let failure = match listen::wait_for_listening(&paths.log, offset, pid, deadline) {
            listen::ListenOutcome::Listening(addr) => {
                self.report(Progress::Listening {
                    port: addr.port,
                    elapsed: spawned_at.elapsed(),
                });
                let url = format!("http://{}", url_host_port(&addr.host, addr.port));
                match wait_healthy(&url, password, deadline) {
                    // ocm must find its server again (to reuse or stop it):
                    // refuse one it would not recognise, rather than leak it.
                    Ok(_) if !scan::is_our_server(pid, hash, &self.state_root) => format!(
                        "the process ocm started (pid {pid}) answers on {url} but would not be \
                         recognised as this project's server (its arguments must end in \
                         `serve --hostname H --port P` and it must keep ocm's environment \
                         markers); if {} is a wrapper, make it pass both on (or use the \
                         opencode binary itself)",
                        bin.display()
                    ),
                    Ok(version) => {
                        self.report(Progress::Healthy {
                            url: url.clone(),
                            elapsed: spawned_at.elapsed(),
                        });
                        record.port = addr.port;
                        record.url = url;
                        record.status = RecordStatus::Running;
                        record.last_health_check = Some(statefile::rfc3339_now());
                        record.opencode_version = Some(version.clone());
                        if let Err(e) = statefile::write_atomic(&paths.record, &record) {
                            let _ = procutil::terminate(&identity, self.config.stop_grace);
                            return Err(AttemptError::fatal(e));
                        }
                        return Ok(info_from(
                            project,
                            &record,
                            Some(version),
                            false,
                            password.map(str::to_string),
                        ));
                    }
                    Err(reason) => format!("listening on {url} but unhealthy: {reason}"),
                }
            }
            listen::ListenOutcome::Exited => "opencode exited before listening".to_string(),
            listen::ListenOutcome::TimedOut => format!(
                "no listening line within {:.0} s",
                self.config.start_timeout.as_secs_f64()
            ),
        };
        // Clean up this attempt: the process (if still there) and its record.
        // Our own child is reaped through its handle, which keeps its status.
        let exit = self.end_attempt(pid, &identity);
        record.status = RecordStatus::Stopped;
        let _ = statefile::write_atomic(&paths.record, &record);
        let output = logs::read_from(&paths.log, offset, 1024 * 1024);
        Err(AttemptError::Failed(AttemptFailure {
            reason: failure,
            exit,
            log_tail: logs::last_lines(&output, LOG_TAIL_LINES),
        }))
    }

    /// Picks the port for a new server per the policy (`None`: opencode
    /// picks).
    fn choose_port(&self, project: &Path) -> Result<Option<u16>, Error> {
        let host = &self.config.hostname;
        match &self.config.port_policy {
            PortPolicy::Auto => Ok(None),
            PortPolicy::Fixed(port) => self.fixed_port_free(*port).map(Some),
            PortPolicy::Range(range) => portmap::first_free_port(host, range.clone())
                .map(Some)
                .ok_or_else(|| Error::NoFreePort {
                    hostname: host.clone(),
                    first: *range.start(),
                    last: *range.end(),
                }),
            PortPolicy::Project => {
                let first = portmap::port_for_project(project)?;
                for port in portmap::port_candidates(project)? {
                    if portmap::is_port_free(host, port) {
                        return Ok(Some(port));
                    }
                    self.report(Progress::PortTaken {
                        port,
                        holder: scan::port_holder(port),
                    });
                }
                Err(Error::NoFreePort {
                    hostname: host.clone(),
                    first,
                    last: if first == portmap::PROJECT_PORT_BASE {
                        portmap::PROJECT_PORT_BASE + portmap::PROJECT_PORT_SPAN - 1
                    } else {
                        first - 1
                    },
                })
            }
        }
    }

    /// Ends a failed start attempt: reaps the child if it exited (and says
    /// how), else terminates its group. Returns its exit status, or what ocm
    /// did to it.
    fn end_attempt(&self, pid: u32, identity: &ProcessIdentity) -> Option<String> {
        let grace = self.config.stop_grace.min(Duration::from_secs(2));
        let child = {
            let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
            children
                .iter()
                .position(|c| c.pid() == pid)
                .map(|index| children.swap_remove(index))
        };
        let Some(child) = child else {
            return procutil::terminate(identity, grace)
                .ok()
                .map(|how| describe_termination(how).to_string());
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status.to_string());
        }
        match child.terminate(grace) {
            Ok(Termination::AlreadyGone) => child
                .wait_timeout(Duration::from_secs(1))
                .ok()
                .flatten()
                .map(|s| s.to_string()),
            Ok(how) => Some(describe_termination(how).to_string()),
            Err(e) => Some(format!("could not be stopped: {e}")),
        }
    }

    /// Reaps servers this manager spawned that have exited since, so none
    /// stays a zombie. Every call of the manager does this first; a program
    /// that keeps a `Manager` but calls it rarely may call this from time to
    /// time. Servers still running when the `Manager` is dropped are children
    /// of this process and, if they exit while it still runs, wait for it to
    /// reap them (or to exit); drop the `Manager` only when that is fine.
    pub fn reap(&self) {
        self.reap_children();
    }

    fn reap_children(&self) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children.retain_mut(|child| !matches!(child.try_wait(), Ok(Some(_)) | Err(_)));
    }

    /// Stops the project's server: SIGTERM to its process group, SIGKILL
    /// after the grace period, confirmed gone; the record is marked stopped.
    /// Unrecorded servers of the project are stopped too. A recorded pid
    /// that is not this project's server is never signalled.
    pub fn stop(&self, project: &Path) -> Result<StopReport, Error> {
        self.reap_children();
        let (project, hash, paths) = self.project(project)?;
        if !paths.dir.exists() {
            // Nothing recorded; a server of ours may still run unrecorded.
            let mut report = StopReport {
                project,
                ..StopReport::default()
            };
            for (pid, _) in scan::our_servers(&self.state_root)
                .into_iter()
                .filter(|(_, h)| *h == hash)
            {
                if self.stop_unrecorded(pid, &hash)? {
                    report.orphans_stopped.push(pid);
                }
            }
            return Ok(report);
        }
        let _lock = self.lock(&paths)?;
        self.stop_locked(project, &hash, &paths)
    }

    fn stop_locked(
        &self,
        project: PathBuf,
        hash: &str,
        paths: &ProjectPaths,
    ) -> Result<StopReport, Error> {
        let mut report = StopReport {
            project,
            ..StopReport::default()
        };
        let record = self.read_record_repairing(paths)?;
        if let Some(mut record) = record {
            let identity = identity_of(&record);
            if record.status != RecordStatus::Stopped && identity.is_alive() {
                if scan::is_our_server(record.pid, hash, &self.state_root) {
                    self.report(Progress::Stopping { pid: record.pid });
                    let how = procutil::terminate(&identity, self.config.stop_grace)?;
                    report.pid = Some(record.pid);
                    report.stopped = Some(how);
                } else {
                    report.left_alone = Some(record.pid);
                    self.report(Progress::Repaired {
                        what: format!(
                            "recorded pid {} is not this project's server; left it alone",
                            record.pid
                        ),
                    });
                }
            }
            if record.status != RecordStatus::Stopped {
                record.status = RecordStatus::Stopped;
                statefile::write_atomic(&paths.record, &record)?;
            }
        }
        report.orphans_stopped = self.stop_orphans(hash)?;
        self.reap_children();
        Ok(report)
    }

    /// Stops the project's server (if any) and starts a fresh one. The
    /// opencode binary is looked up first: a restart that cannot start
    /// leaves the running server alone.
    pub fn restart(&self, project: &Path) -> Result<ServerInfo, Error> {
        self.reap_children();
        let (project, hash, paths) = self.project(project)?;
        if !project.is_dir() {
            return Err(Error::ProjectNotFound { path: project });
        }
        find_opencode(self.config.opencode_bin.as_deref())?;
        let _lock = self.lock(&paths)?;
        self.check_fixed_port_for_restart(&paths)?;
        self.stop_locked(project.clone(), &hash, &paths)?;
        self.start(&project, &hash, &paths)
    }

    /// With a fixed port that something holds, fails before anything is
    /// stopped, unless the holder is the recorded server itself (whose stop
    /// frees it).
    fn check_fixed_port_for_restart(&self, paths: &ProjectPaths) -> Result<(), Error> {
        let PortPolicy::Fixed(port) = self.config.port_policy else {
            return Ok(());
        };
        let held_by_recorded = statefile::read_record(&paths.record)
            .ok()
            .flatten()
            .is_some_and(|r| {
                r.port == port && r.status != RecordStatus::Stopped && identity_of(&r).is_alive()
            });
        if held_by_recorded {
            return Ok(());
        }
        self.fixed_port_free(port).map(|_| ())
    }

    /// `port` when it is free, else [`Error::PortInUse`] naming its holder.
    fn fixed_port_free(&self, port: u16) -> Result<u16, Error> {
        let host = &self.config.hostname;
        if portmap::is_port_free(host, port) {
            Ok(port)
        } else {
            Err(Error::PortInUse {
                hostname: host.clone(),
                port,
                holder: scan::port_holder(port),
            })
        }
    }

    /// The project's record with live checks: alive, healthy, version,
    /// uptime, resident memory. Takes no lock; never starts anything.
    /// A record that cannot be read (empty, corrupt, another schema) is
    /// reported as [`ServerState::Dead`] with the reason in `detail`, as
    /// [`Manager::list`] does; it is left where it is (`ensure` and `stop`
    /// move it aside under the lock).
    pub fn status(&self, project: &Path) -> Result<ServerStatus, Error> {
        self.reap_children();
        let (project, hash, paths) = self.project(project)?;
        match statefile::read_record(&paths.record) {
            Ok(record) => Ok(self.status_of(project, &hash, &paths, record.as_ref())),
            Err(e) if e.is_corrupt() => {
                let mut status = self.status_of(project, &hash, &paths, None);
                status.status = ServerState::Dead;
                status.detail = Some(format!("the record is unreadable: {e}"));
                Ok(status)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn status_of(
        &self,
        project: PathBuf,
        hash: &str,
        paths: &ProjectPaths,
        record: Option<&ServerRecord>,
    ) -> ServerStatus {
        let mut status = ServerStatus {
            project,
            status: ServerState::Stopped,
            healthy: false,
            url: None,
            port: None,
            pid: None,
            started_at: None,
            log_path: paths.log.clone(),
            version: None,
            uptime_seconds: None,
            resident_memory_bytes: None,
            detail: None,
            state_dir: paths.dir.clone(),
        };
        let Some(record) = record else {
            return status;
        };
        status.log_path = record.log_path.clone();
        // A stopped server has no pid, URL or port any more: a script that
        // checks them must not find the last run's values.
        if record.status == RecordStatus::Stopped {
            return status;
        }
        status.url = (!record.url.is_empty()).then(|| record.url.clone());
        status.port = (record.port != 0).then_some(record.port);
        status.pid = Some(record.pid);
        status.started_at = Some(record.started_at.clone());
        status.version = record.opencode_version.clone();
        // A record written at spawn, before the server listened: another
        // process is starting it (or was killed while it did). There is no
        // URL to ask yet.
        if record.status == RecordStatus::Starting
            && identity_of(record).is_alive()
            && scan::is_our_server(record.pid, hash, &self.state_root)
        {
            status.status = ServerState::Unhealthy;
            status.detail = Some(format!(
                "pid {} is starting (not healthy yet, or its start was interrupted)",
                record.pid
            ));
            return status;
        }
        let password = self.password_of(record, paths).ok().flatten();
        match self.liveness(
            record,
            hash,
            password.as_deref(),
            self.config.health_timeout,
        ) {
            Liveness::Healthy { version } => {
                status.status = ServerState::Running;
                status.healthy = true;
                status.version = Some(version);
            }
            Liveness::Unauthorized => {
                status.status = ServerState::Unhealthy;
                status.detail = Some("the server refuses ocm's credentials (401)".into());
            }
            Liveness::Unhealthy { reason } => {
                status.status = ServerState::Unhealthy;
                status.detail = Some(reason);
            }
            Liveness::Dead => {
                status.status = ServerState::Dead;
                status.detail = Some(format!("process {} is gone", record.pid));
                return status;
            }
            Liveness::NotOurs => {
                status.status = ServerState::Dead;
                status.detail = Some(format!(
                    "pid {} is now another program, not this project's server",
                    record.pid
                ));
                return status;
            }
        }
        status.resident_memory_bytes = procutil::resident_memory(record.pid).ok();
        status.uptime_seconds = statefile::parse_rfc3339(&record.started_at)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs());
        status
    }

    /// Every project recorded under the state root, with live checks.
    /// A record that cannot be read is listed as dead with the reason.
    pub fn list(&self) -> Result<Vec<ServerStatus>, Error> {
        self.reap_children();
        let mut all = Vec::new();
        for (hash, paths) in self.recorded_projects()? {
            match statefile::read_record(&paths.record) {
                Ok(Some(record)) => {
                    let project = record.project_path.clone();
                    all.push(self.status_of(project, &hash, &paths, Some(&record)));
                }
                Ok(None) => {}
                Err(e) => all.push(self.unreadable_status(&hash, &paths, &e)),
            }
        }
        all.sort_by(|a, b| a.project.cmp(&b.project));
        Ok(all)
    }

    /// The status of a project whose record cannot be read: dead, with the
    /// reason, and the project path recovered from the raw JSON if it can be.
    fn unreadable_status(
        &self,
        hash: &str,
        paths: &ProjectPaths,
        error: &statefile::Error,
    ) -> ServerStatus {
        let project = std::fs::read(&paths.record)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|v| v.get("projectPath")?.as_str().map(PathBuf::from))
            .unwrap_or_else(|| paths.dir.clone());
        let mut status = self.status_of(project, hash, paths, None);
        status.status = ServerState::Dead;
        status.detail = Some(format!("the record is unreadable: {error}"));
        status
    }

    /// The hash and paths of every project folder under the state root.
    fn recorded_projects(&self) -> Result<Vec<(String, ProjectPaths)>, Error> {
        let servers = ProjectPaths::servers_dir(&self.state_root);
        let entries = match std::fs::read_dir(&servers) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    action: "cannot list",
                    path: servers,
                    source,
                });
            }
        };
        Ok(entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|hash| statefile::is_project_hash(hash))
            .map(|hash| {
                let paths = ProjectPaths::new(&self.state_root, &hash);
                (hash, paths)
            })
            .collect())
    }

    /// Stops the project's server, then deletes its state folder and logs.
    pub fn destroy(&self, project: &Path) -> Result<StopReport, Error> {
        self.reap_children();
        let (project, hash, paths) = self.project(project)?;
        if !paths.dir.exists() {
            return self.stop(&project);
        }
        let lock = self.lock(&paths)?;
        let report = self.stop_locked(project, &hash, &paths)?;
        self.remove_project_dir(&paths)?;
        drop(lock);
        Ok(report)
    }

    /// Removes the state folders (record, logs, moved-aside records) of
    /// projects whose server is not running, stops servers of ours that have
    /// no record at all, and reports running servers whose project folder is
    /// gone (they are left running). Folders whose record cannot be read are
    /// left for a person to look at, and so are folders another process is
    /// working on; both are listed.
    pub fn gc(&self) -> Result<GcReport, Error> {
        self.reap_children();
        let mut report = GcReport::default();
        self.remove_stale_tombstones();
        let live = scan::our_servers(&self.state_root);
        let mut recorded = Vec::new();
        for (hash, paths) in self.recorded_projects()? {
            recorded.push(hash.clone());
            let Some(lock) = statefile::try_lock(&paths.lock)? else {
                report.busy.push(paths.dir);
                continue;
            };
            let record = match statefile::read_record(&paths.record) {
                Ok(record) => record,
                Err(_) => {
                    report.unreadable.push(paths.record);
                    continue;
                }
            };
            let project = record
                .as_ref()
                .map(|r| r.project_path.clone())
                .unwrap_or_else(|| paths.dir.clone());
            let status = self.status_of(project, &hash, &paths, record.as_ref());
            if matches!(status.status, ServerState::Running | ServerState::Unhealthy) {
                if !status.project.is_dir() {
                    report.project_gone.push(status);
                }
                continue;
            }
            // Not running; an unrecorded server of this project (its starter
            // died before recording it) keeps the folder for `ensure` to find.
            if scan::our_servers(&self.state_root)
                .iter()
                .any(|(_, h)| *h == hash)
            {
                continue;
            }
            self.remove_project_dir(&paths)?;
            drop(lock);
            report.removed.push(paths.dir);
        }
        for (pid, hash) in live {
            if recorded.contains(&hash) {
                continue;
            }
            if self.stop_unrecorded(pid, &hash)? {
                report.orphans_stopped.push(pid);
            }
        }
        Ok(report)
    }

    /// Removes a project's state folder while its lock is held. The folder is
    /// first renamed out of the way (to a name no project has), so nobody
    /// arriving meanwhile can lock or record anything in what is being
    /// deleted: they make a fresh folder, and lock a fresh file, at the
    /// project's path.
    fn remove_project_dir(&self, paths: &ProjectPaths) -> Result<(), Error> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tombstone = ProjectPaths::servers_dir(&self.state_root).join(format!(
            ".removing-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        match std::fs::rename(&paths.dir, &tombstone) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(Error::Io {
                    action: "cannot move away",
                    path: paths.dir.clone(),
                    source,
                });
            }
        }
        std::fs::remove_dir_all(&tombstone).map_err(|source| Error::Io {
            action: "cannot remove",
            path: tombstone,
            source,
        })
    }

    /// Deletes folders that a removal renamed out of the way but did not
    /// finish deleting (its process died meanwhile).
    fn remove_stale_tombstones(&self) {
        let servers = ProjectPaths::servers_dir(&self.state_root);
        let Ok(entries) = std::fs::read_dir(&servers) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(".removing-")) else {
                continue;
            };
            let owner_alive = rest
                .split('-')
                .next()
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| ProcessIdentity::of(pid).is_ok());
            if !owner_alive {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Stops a server of ours whose project had no state folder when `gc`
    /// looked, unless, under that project's lock, it turns out to be
    /// recorded by now (an `ensure` that ran meanwhile) or the lock is busy.
    fn stop_unrecorded(&self, pid: u32, hash: &str) -> Result<bool, Error> {
        let paths = ProjectPaths::new(&self.state_root, hash);
        let Some(lock) = statefile::try_lock(&paths.lock)? else {
            return Ok(false);
        };
        let recorded = statefile::read_record(&paths.record);
        if matches!(&recorded, Ok(Some(r)) if r.pid == pid) || recorded.is_err() {
            return Ok(false);
        }
        let stopped = match ProcessIdentity::of(pid) {
            Ok(identity) if scan::is_our_server(pid, hash, &self.state_root) => {
                procutil::terminate(&identity, self.config.stop_grace)?;
                true
            }
            _ => false,
        };
        // The lock file was made just now for this check: leave no folder.
        if matches!(recorded, Ok(None)) {
            self.remove_project_dir(&paths)?;
        }
        drop(lock);
        Ok(stopped)
    }
}

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
    reason: String,
    exit: Option<String>,
    log_tail: Vec<String>,
}

fn identity_of(record: &ServerRecord) -> ProcessIdentity {
    ProcessIdentity {
        pid: record.pid,
        start_time: record.start_time,
        boot_id: record.boot_id.clone(),
    }
}

fn info_from(
    project: &Path,
    record: &ServerRecord,
    version: Option<String>,
    reused: bool,
    password: Option<String>,
) -> ServerInfo {
    ServerInfo {
        project: project.to_path_buf(),
        url: record.url.clone(),
        hostname: record.hostname.clone(),
        port: record.port,
        pid: record.pid,
        status: ServerState::Running,
        healthy: true,
        started_at: record.started_at.clone(),
        log_path: record.log_path.clone(),
        version,
        reused,
        password,
    }
}

fn password_file(paths: &ProjectPaths) -> PathBuf {
    paths.dir.join("password")
}

/// 32 hex characters from the kernel's random source.
fn random_password() -> Result<String, Error> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| Error::Io {
            action: "cannot read",
            path: PathBuf::from("/dev/urandom"),
            source,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn describe_termination(how: Termination) -> &'static str {
    match how {
        Termination::AlreadyGone => "it was already gone",
        Termination::ExitedOnTerm => "stopped it with SIGTERM",
        Termination::Killed => "killed it with SIGKILL after the grace period",
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn url_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

enum HealthFailure {
    Unauthorized,
    Other(String),
}

/// One health request; the server's version when it is healthy.
fn health(url: &str, password: Option<&str>, timeout: Duration) -> Result<String, HealthFailure> {
    let mut builder = opencode_api::Client::builder(url)
        .connect_timeout(timeout)
        .health_timeout(timeout);
    if let Some(password) = password {
        builder = builder.basic_auth(USERNAME, password);
    }
    let client = builder
        .build()
        .map_err(|e| HealthFailure::Other(e.to_string()))?;
    match client.health() {
        Ok(h) if h.healthy => Ok(h.version),
        Ok(_) => Err(HealthFailure::Other("it reports healthy: false".into())),
        Err(opencode_api::Error::Unauthorized { .. }) => Err(HealthFailure::Unauthorized),
        Err(e) => Err(HealthFailure::Other(e.to_string())),
    }
}

/// Health checks with short attempts until one succeeds or `deadline`.
fn wait_healthy(url: &str, password: Option<&str>, deadline: Instant) -> Result<String, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no healthy answer before the start-up deadline".into());
        }
        match health(url, password, STARTUP_HEALTH_ATTEMPT.min(left)) {
            Ok(version) => return Ok(version),
            Err(HealthFailure::Unauthorized) => {
                return Err("it refused ocm's credentials (401)".into());
            }
            Err(HealthFailure::Other(reason)) => {
                if Instant::now() >= deadline {
                    return Err(reason);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(url_host_port("::1", 80), "[::1]:80");
        assert_eq!(url_host_port("[::1]", 80), "[::1]:80");
        assert_eq!(url_host_port("127.0.0.1", 80), "127.0.0.1:80");
    }

    #[test]
    fn server_info_hides_the_password() {
        let info = ServerInfo {
            project: "/p".into(),
            url: "http://127.0.0.1:1".into(),
            hostname: "127.0.0.1".into(),
            port: 1,
            pid: 1,
            status: ServerState::Running,
            healthy: true,
            started_at: String::new(),
            log_path: "/p/log".into(),
            version: None,
            reused: false,
            password: Some("s3cret".into()),
        };
        assert!(!format!("{info:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&info).unwrap().contains("s3cret"));
        assert!(
            info.child_env()
                .contains(&("OPENCODE_SERVER_PASSWORD".into(), "s3cret".into()))
        );
    }

    #[test]
    fn random_passwords_differ() {
        let a = random_password().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_password().unwrap());
    }

    #[test]
    fn status_of_an_unknown_project_is_stopped() {
        let root = tempfile::tempdir().unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().to_path_buf()),
            ..Config::default()
        })
        .unwrap();
        let status = manager.status(root.path()).unwrap();
        assert_eq!(status.status, ServerState::Stopped);
        assert!(manager.list().unwrap().is_empty());
        let report = manager.stop(root.path()).unwrap();
        assert!(report.stopped.is_none());
    }

    #[test]
    fn status_reports_an_unreadable_record_as_dead_and_leaves_it() {
        let root = tempfile::tempdir().unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().to_path_buf()),
            ..Config::default()
        })
        .unwrap();
        let paths = manager.paths(root.path()).unwrap();
        statefile::ensure_dir(&paths.dir).unwrap();
        std::fs::write(&paths.record, b"{\"schemaVersion\": 1, \"pid\": ").unwrap();
        let status = manager.status(root.path()).unwrap();
        assert_eq!(status.status, ServerState::Dead);
        let detail = status.detail.unwrap();
        assert!(detail.contains("unreadable"), "{detail}");
        assert!(paths.record.exists());
    }

    #[test]
    fn restart_without_opencode_stops_nothing() {
        let root = tempfile::tempdir().unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().to_path_buf()),
            opencode_bin: Some(root.path().join("no-opencode")),
            ..Config::default()
        })
        .unwrap();
        let err = manager.restart(root.path()).unwrap_err();
        assert!(matches!(err, Error::OpencodeNotFound { .. }), "{err}");
        // Nothing was touched: not even the project's state folder.
        assert!(!manager.paths(root.path()).unwrap().dir.exists());
    }

    #[test]
    fn restart_refuses_a_fixed_port_held_by_another_program() {
        let root = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Any executable will do: the port check comes before a spawn.
        let manager = Manager::new(Config {
            state_root: Some(root.path().to_path_buf()),
            opencode_bin: Some(PathBuf::from("/bin/sh")),
            port_policy: PortPolicy::Fixed(port),
            ..Config::default()
        })
        .unwrap();
        let err = manager.restart(root.path()).unwrap_err();
        match err {
            Error::PortInUse {
                port: p, holder, ..
            } => {
                assert_eq!(p, port);
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected PortInUse, got {other}"),
        }
    }

    #[test]
    fn a_held_lock_is_reported_then_waited_for() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        std::fs::create_dir(&project).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let manager = Manager::new(Config {
            state_root: Some(root.path().join("state")),
            ..Config::default()
        })
        .unwrap()
        .with_progress(move |p| {
            let _ = tx.send(p.clone());
        });
        let paths = manager.paths(&project).unwrap();
        statefile::ensure_dir(&paths.dir).unwrap();
        let held = statefile::lock(&paths.lock, Duration::from_secs(5)).unwrap();
        std::thread::scope(|scope| {
            let stopper = scope.spawn(|| manager.stop(&project));
            let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(
                first,
                Progress::WaitingForLock {
                    path: paths.lock.clone()
                }
            );
            assert!(!stopper.is_finished());
            drop(held);
            let report = stopper.join().unwrap().unwrap();
            assert!(report.stopped.is_none());
        });
    }

    #[test]
    fn a_tool_that_leads_its_own_session_with_the_markers_is_not_a_server() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        std::fs::create_dir(&project).unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().join("state")),
            ..Config::default()
        })
        .unwrap();
        let hash = portmap::project_hash(&project).unwrap();
        // What a tool run by the server could do: setsid, inheriting the
        // server's markers.
        let tool = procutil::spawn_detached(
            &procutil::SpawnSpec::new("sleep")
                .arg("300")
                .env(PROJECT_HASH_VAR, &hash)
                .env(STATE_ROOT_VAR, manager.state_root().as_os_str()),
        )
        .unwrap();
        assert!(!scan::is_our_server(
            tool.pid(),
            &hash,
            manager.state_root()
        ));
        assert!(scan::our_servers(manager.state_root()).is_empty());
        let report = manager.stop(&project).unwrap();
        assert!(report.orphans_stopped.is_empty());
        assert!(tool.identity().is_alive(), "the tool was signalled");
        tool.terminate(Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn a_record_from_a_newer_ocm_is_refused_and_left_untouched() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        std::fs::create_dir(&project).unwrap();
        let manager = Manager::new(Config {
            state_root: Some(root.path().join("state")),
            opencode_bin: Some(PathBuf::from("/bin/true")),
            ..Config::default()
        })
        .unwrap();
        let paths = manager.paths(&project).unwrap();
        statefile::ensure_dir(&paths.dir).unwrap();
        let newer = br#"{"schemaVersion": 99, "pid": 1, "anything": "new"}"#;
        std::fs::write(&paths.record, newer).unwrap();
        for err in [
            manager.ensure(&project).unwrap_err(),
            manager.stop(&project).unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::RecordFromNewerOcm { found: 99, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("newer ocm"), "{err}");
        }
        assert_eq!(std::fs::read(&paths.record).unwrap(), newer);
        let status = manager.status(&project).unwrap();
        assert_eq!(status.status, ServerState::Dead);
    }

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
