//! The supervisor thread: one poll(2) over every watched server's pidfd, the
//! state folders (inotify) and a waker that the stream readers and the
//! handle ring; the state machine of each project; timers for restarts,
//! reconnections, stalls and metrics.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use opencode_api::{GlobalEventStream, StreamConfig, StreamItem};
use procutil::ProcessIdentity;
use procutil::watch::{Change, Token, Watch, WatchEvent};

use super::files::{self, SupervisorInfo};
use super::types::{Notice, Reason, RestartPolicy, SuperviseConfig, SupervisorState, Transition};
use super::{Command, ProjectSource, Shared, Started, WatchOutcome};

mod companion;
mod starts;
use crate::record::{Desired, RecordStatus, read_record};
use crate::report::ServerInfo;
use crate::{Error, Manager, ProjectPaths, USERNAME};

/// How many log lines a `failed` project keeps in its metrics.
const LOG_TAIL_LINES: usize = 20;
/// How often a server over its memory limit is looked at again.
const MEMORY_RECHECK: Duration = Duration::from_secs(1);
/// The longest wait when no timer is due (the waker ends it earlier).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// A watched server.
struct Server {
    pid: u32,
    identity: ProcessIdentity,
    url: String,
    password: Option<String>,
    pidfd: Token,
    started_at: SystemTime,
    attached: Instant,
    stream: Option<GlobalEventStream>,
    stream_opened: Instant,
    connected: bool,
    last_frame: Instant,
    failures: u32,
    last_failure: String,
    reconnect_at: Option<Instant>,
    over_memory_since: Option<Instant>,
    /// Its event relay, when the socket could be made.
    relay: Option<crate::relay::Relay>,
}

/// A project this supervisor watches (it holds its `supervise.lock`).
struct Project {
    path: PathBuf,
    /// The manager of its server: the engine's, or one of the project's
    /// own configuration ([`ProjectSetup::config`](super::ProjectSetup)).
    manager: Arc<Manager>,
    paths: ProjectPaths,
    _lock: File,
    dir: Option<Token>,
    state: SupervisorState,
    server: Option<Server>,
    last_pid: Option<u32>,
    restarts: u32,
    starts: VecDeque<Instant>,
    delay: Duration,
    next_start: Option<Instant>,
    last_exit: Option<String>,
    last_transition: Option<Transition>,
    events: u64,
    reconnects: u64,
    metrics_due: Instant,
    log_tail: Vec<String>,
    /// The thread of a start in progress.
    starting: Option<std::thread::JoinHandle<()>>,
    /// `watch` calls waiting for that start to end.
    replies: Vec<std::sync::mpsc::Sender<Result<WatchOutcome, Error>>>,
    /// Its companion, when the engine has a companion source.
    companion: companion::Watched,
}

/// A project folder watched for its record to say `desired: up` (`--all`).
struct Candidate {
    hash: String,
    dir: Token,
    /// Whether "supervised by pid N" was said already.
    held_said: bool,
}

pub(crate) struct Engine {
    manager: Arc<Manager>,
    projects_source: Option<ProjectSource>,
    config: SuperviseConfig,
    shared: Arc<Shared>,
    watch: Watch,
    waker: Token,
    projects: Vec<Project>,
    candidates: Vec<Candidate>,
    servers_dir: Option<Token>,
}

impl Engine {
    pub(crate) fn new(
        manager: Manager,
        config: SuperviseConfig,
        shared: Arc<Shared>,
        projects_source: Option<ProjectSource>,
    ) -> Result<Engine, Error> {
        let mut watch = Watch::new();
        let waker = watch.add_fd(&shared.waker).map_err(|e| Error::Supervise {
            reason: e.to_string(),
        })?;
        Ok(Engine {
            manager: Arc::new(manager),
            projects_source,
            config,
            shared,
            watch,
            waker,
            projects: Vec::new(),
            candidates: Vec::new(),
            servers_dir: None,
        })
    }

    pub(crate) fn run(&mut self) {
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                self.shutdown();
                return;
            }
            let deadline = self.next_deadline();
            match self.watch.wait(deadline) {
                Ok(WatchEvent::Readable { token }) if token == self.waker => {
                    self.shared.waker.drain();
                    self.starts_ended();
                    self.commands();
                    self.drain_streams();
                }
                Ok(WatchEvent::Exited { token }) => {
                    if let Some(index) = self.project_of_pidfd(token) {
                        self.server_exited(index);
                    } else if let Some(index) = self.companion_of_pidfd(token) {
                        self.companion_exited(index);
                    } else {
                        self.watch.remove(token);
                    }
                }
                Ok(WatchEvent::Entry { token, name, .. }) => self.dir_changed(token, &name),
                Ok(WatchEvent::Path {
                    token,
                    change: Change::Unwatched | Change::Deleted,
                }) => self.watch.remove(token),
                Ok(WatchEvent::Overflow) => self.recheck_all(),
                Ok(_) => {}
                Err(e) => {
                    self.note(Path::new(""), format!("poll failed: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            self.timers();
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut deadline = now + IDLE_WAIT;
        for p in &self.projects {
            let mut consider = |t: Option<Instant>| {
                if let Some(t) = t {
                    deadline = deadline.min(t);
                }
            };
            consider(p.next_start);
            consider(p.companion.next_start);
            consider(Some(p.metrics_due));
            if let Some(s) = &p.server {
                consider(s.reconnect_at);
                if s.stream.is_some() {
                    consider(Some(if s.connected {
                        s.last_frame + self.config.stall
                    } else {
                        s.stream_opened + self.config.connect_window
                    }));
                }
            }
        }
        deadline
    }

    fn commands(&mut self) {
        let commands: Vec<Command> = std::mem::take(
            &mut *self
                .shared
                .commands
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for command in commands {
            match command {
                Command::Watch { project, reply } => {
                    let outcome = self.watch_project(&project, true);
                    // The caller hears once the project's start has ended.
                    if let Ok(WatchOutcome::Watching { project, .. }) = &outcome
                        && let Some(p) = self
                            .projects
                            .iter_mut()
                            .find(|p| &p.path == project && p.starting.is_some())
                    {
                        p.replies.push(reply);
                        continue;
                    }
                    let _ = reply.send(outcome);
                }
                Command::WatchAll { reply } => {
                    let outcome = self.watch_all();
                    let _ = reply.send(outcome);
                }
            }
        }
    }

    /// Takes a project: its `supervise.lock`, an inotify watch of its state
    /// folder, then its server (brought up with `ensure` when `bring_up`,
    /// else started only when the record says `desired: up`).
    fn watch_project(&mut self, project: &Path, bring_up: bool) -> Result<WatchOutcome, Error> {
        let (path, _hash, paths) = self.manager.project(project)?;
        if !path.is_dir() {
            return Err(Error::ProjectNotFound { path });
        }
        if let Some(p) = self.projects.iter().find(|p| p.path == path) {
            return Ok(WatchOutcome::Watching {
                project: path,
                pid: p.server.as_ref().map(|s| s.pid),
            });
        }
        let manager = self.project_manager(&path)?;
        let lock = files::try_take(&paths).map_err(|e| Error::Supervise {
            reason: format!("cannot take {}: {e}", files::lock_path(&paths).display()),
        })?;
        let Some(lock) = lock else {
            return Ok(WatchOutcome::HeldBy {
                project: path,
                pid: files::supervise_lock_holder(&paths),
            });
        };
        let dir = self.watch.add_dir(&paths.dir).ok();
        self.candidates.retain(|c| Some(c.dir) != dir);
        self.projects.push(Project {
            path: path.clone(),
            manager,
            paths,
            _lock: lock,
            dir,
            state: SupervisorState::Stopped,
            server: None,
            last_pid: None,
            restarts: 0,
            starts: VecDeque::new(),
            delay: self.config.delay_floor,
            next_start: None,
            last_exit: None,
            last_transition: None,
            events: 0,
            reconnects: 0,
            metrics_due: Instant::now() + self.config.metrics_interval,
            log_tail: Vec::new(),
            starting: None,
            replies: Vec::new(),
            companion: companion::Watched::new(self.config.delay_floor),
        });
        let index = self.projects.len() - 1;
        self.start(index, bring_up);
        Ok(WatchOutcome::Watching {
            project: path,
            pid: self.projects[index].server.as_ref().map(|s| s.pid),
        })
    }

    fn watch_all(&mut self) -> Result<Vec<WatchOutcome>, Error> {
        let servers = ProjectPaths::servers_dir(self.manager.state_root());
        statefile::ensure_dir(&servers)?;
        if self.servers_dir.is_none() {
            self.servers_dir =
                Some(self.watch.add_dir(&servers).map_err(|e| Error::Supervise {
                    reason: e.to_string(),
                })?);
        }
        let mut outcomes = Vec::new();
        for hash in statefile::project_hashes(self.manager.state_root())? {
            if let Some(outcome) = self.consider(&hash) {
                outcomes.push(outcome);
            }
        }
        Ok(outcomes)
    }

    /// A project folder under the state root: watched when its record says
    /// `desired: up`, else kept as a candidate until it does.
    fn consider(&mut self, hash: &str) -> Option<WatchOutcome> {
        let paths = ProjectPaths::new(self.manager.state_root(), hash);
        if self.projects.iter().any(|p| p.paths.dir == paths.dir) {
            return None;
        }
        // The folder is watched before the record is read: a record written
        // in between is seen either way.
        if !self.candidates.iter().any(|c| c.hash == hash) {
            let dir = self.watch.add_dir(&paths.dir).ok()?;
            self.candidates.push(Candidate {
                hash: hash.to_string(),
                dir,
                held_said: false,
            });
        }
        let record = read_record(&paths.record).ok().flatten()?;
        if record.desired != Desired::Up || !record.project_path.is_dir() {
            return None;
        }
        match self.watch_project(&record.project_path, false) {
            Ok(outcome) => {
                if let WatchOutcome::HeldBy { pid, .. } = &outcome
                    && let Some(c) = self.candidates.iter_mut().find(|c| c.hash == hash)
                    && !std::mem::replace(&mut c.held_said, true)
                {
                    let by = pid.map_or("another supervisor".into(), |p| format!("pid {p}"));
                    self.note(&record.project_path, format!("supervised by {by}"));
                }
                Some(outcome)
            }
            Err(e) => {
                self.note(&record.project_path, e.to_string());
                None
            }
        }
    }

    fn dir_changed(&mut self, token: Token, name: &std::ffi::OsStr) {
        if Some(token) == self.servers_dir {
            if let Some(hash) = name.to_str()
                && statefile::is_project_hash(hash)
            {
                self.consider(hash);
            }
            return;
        }
        if name != "server.json" {
            return;
        }
        if let Some(index) = self.projects.iter().position(|p| p.dir == Some(token)) {
            self.record_changed(index);
        } else if let Some(c) = self.candidates.iter().find(|c| c.dir == token) {
            let hash = c.hash.clone();
            self.consider(&hash);
        }
    }

    fn recheck_all(&mut self) {
        for index in 0..self.projects.len() {
            self.record_changed(index);
        }
    }

    /// The record changed: with no server attached, a server another `ocm`
    /// started (`ocm up`, `ocm restart`) is taken over; that also clears
    /// `failed`.
    fn record_changed(&mut self, index: usize) {
        // A start in progress writes the record itself; its end decides.
        if self.projects[index].server.is_some() || self.projects[index].starting.is_some() {
            return;
        }
        let Ok(Some(record)) = read_record(&self.projects[index].paths.record) else {
            return;
        };
        if record.desired == Desired::Up
            && record.status == RecordStatus::Running
            && record.identity().is_alive()
        {
            let p = &mut self.projects[index];
            p.starts.clear();
            p.delay = self.config.delay_floor;
            p.next_start = None;
            p.log_tail.clear();
            let info = ServerInfoLite {
                pid: record.pid,
                url: record.url.clone(),
                started_at: record.started_at.clone(),
            };
            self.attach(index, info, Reason::ReplacedByUser);
        }
    }

    /// Follows a running server: its pidfd in the poll, its event stream.
    fn attach(&mut self, index: usize, info: ServerInfoLite, reason: Reason) {
        // The record's identity (pid and start time, taken when the server
        // was started): a server that died since and whose pid was reused
        // is not taken for it (the supervisor may kill what it follows).
        let recorded = read_record(&self.projects[index].paths.record)
            .ok()
            .flatten()
            .filter(|r| r.pid == info.pid)
            .map(|r| r.identity());
        let identity = match recorded.map_or_else(|| ProcessIdentity::of(info.pid).ok(), Some) {
            Some(identity) if identity.is_alive() => identity,
            _ => {
                self.projects[index].last_pid = Some(info.pid);
                self.ended(index, info.pid, None, false);
                return;
            }
        };
        let pidfd = self
            .manager
            .child_pidfd(info.pid)
            .or_else(|| procutil::Pidfd::open_verified(&identity).ok().flatten());
        let token = pidfd.as_ref().and_then(|fd| self.watch.add_pidfd(fd).ok());
        let Some(token) = token else {
            self.projects[index].last_pid = Some(info.pid);
            self.ended(index, info.pid, None, false);
            return;
        };
        let p = &mut self.projects[index];
        let password = read_record(&p.paths.record)
            .ok()
            .flatten()
            .filter(|r| r.auth)
            .and_then(|r| p.manager.password_of(&r, &p.paths).ok().flatten());
        let now = Instant::now();
        let socket = crate::relay::relay_socket(&p.paths);
        let relay = match crate::relay::Relay::start(&socket, &info.url, password.as_deref(), None)
        {
            Ok(relay) => Some(relay),
            Err(e) => {
                let why = format!("no event relay at {}: {e}", socket.display());
                let path = p.path.clone();
                self.note(&path, why);
                None
            }
        };
        let p = &mut self.projects[index];
        p.server = Some(Server {
            pid: info.pid,
            identity,
            url: info.url,
            password,
            pidfd: token,
            started_at: statefile::parse_rfc3339(&info.started_at).unwrap_or(SystemTime::now()),
            attached: now,
            stream: None,
            stream_opened: now,
            connected: false,
            last_frame: now,
            failures: 0,
            last_failure: String::new(),
            reconnect_at: Some(now),
            over_memory_since: None,
            relay,
        });
        p.last_pid = Some(info.pid);
        p.next_start = None;
        self.open_stream(index);
        self.transition(index, SupervisorState::Running, reason, Some(info.pid));
        self.companion_due(index);
    }

    fn open_stream(&mut self, index: usize) {
        let config = &self.config;
        let shared = Arc::clone(&self.shared);
        let Some(server) = self.projects[index].server.as_mut() else {
            return;
        };
        server.reconnect_at = None;
        let mut builder =
            opencode_api::Client::builder(&server.url).connect_timeout(config.connect_window);
        if let Some(password) = &server.password {
            builder = builder.basic_auth(USERNAME, password);
        }
        let stream_config = StreamConfig::new()
            // The supervisor keeps its own, tighter, clocks; these only
            // bound the reader thread's blocking calls.
            .stall_timeout(config.stall + Duration::from_secs(1))
            .connect_timeout(config.connect_window)
            .initial_delay(config.delay_cap)
            .max_failures(Some(1))
            .notify(move || shared.waker.wake());
        server.stream_opened = Instant::now();
        server.connected = false;
        match builder
            .build()
            .and_then(|client| client.global_event_stream_with(&stream_config))
        {
            Ok(stream) => server.stream = Some(stream),
            Err(e) => {
                let reason = e.to_string();
                self.stream_failed(index, reason);
            }
        }
    }

    /// Takes every item the stream readers queued, without blocking.
    fn drain_streams(&mut self) {
        let verbose = self
            .shared
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(_, events)| *events);
        for index in 0..self.projects.len() {
            loop {
                let p = &mut self.projects[index];
                let Some(server) = p.server.as_mut() else {
                    break;
                };
                let Some(stream) = server.stream.as_mut() else {
                    break;
                };
                match stream.next(Instant::now()) {
                    Ok(None) => break,
                    Ok(Some(StreamItem::Connected)) => {
                        server.connected = true;
                        server.failures = 0;
                        server.last_frame = Instant::now();
                        p.events += 1;
                    }
                    Ok(Some(StreamItem::Event(event))) => {
                        server.last_frame = Instant::now();
                        p.events += 1;
                        if verbose {
                            let notice = Notice::Event {
                                project: p.path.clone(),
                                kind: event.payload.kind_name().to_string(),
                            };
                            self.shared.publish(&notice);
                        }
                    }
                    Ok(Some(StreamItem::Disconnected { reason, .. })) => {
                        self.stream_failed(index, reason);
                    }
                    Err(e) => {
                        self.stream_failed(index, e.to_string());
                    }
                }
            }
        }
    }

    /// One stream failure: reconnect with backoff; after
    /// `failures_before_check` in a row, ask `/global/health`, and replace a
    /// server that does not answer.
    fn stream_failed(&mut self, index: usize, reason: String) {
        let config = self.config.clone();
        let p = &mut self.projects[index];
        let Some(server) = p.server.as_mut() else {
            return;
        };
        server.stream = None;
        server.connected = false;
        server.failures += 1;
        server.last_failure = reason;
        p.reconnects += 1;
        if server.failures < config.failures_before_check.max(1) {
            let shift = (server.failures - 1).min(16);
            let delay = (config.delay_floor * (1u32 << shift)).min(config.delay_cap);
            server.reconnect_at = Some(Instant::now() + delay);
            return;
        }
        match crate::health::health(
            &server.url,
            server.password.as_deref(),
            config.health_timeout,
        ) {
            Ok(_) => {
                server.failures = 0;
                server.reconnect_at = Some(Instant::now() + config.delay_floor);
            }
            Err(failure) => {
                let health = match failure {
                    crate::health::HealthFailure::Unauthorized => {
                        "it refused ocm's credentials (401)".to_string()
                    }
                    crate::health::HealthFailure::Other(reason) => reason,
                };
                let reason = Reason::Hung {
                    failures: server.failures,
                    stream: server.last_failure.clone(),
                    health,
                };
                let pid = server.pid;
                self.transition(index, SupervisorState::Unhealthy, reason, Some(pid));
                self.kill(index, Duration::ZERO);
                self.projects[index].last_exit = Some("killed: it stopped answering".into());
                self.schedule_restart(index, true);
            }
        }
    }

    /// Ends the attached server's group on purpose (no `crashed`).
    fn kill(&mut self, index: usize, grace: Duration) {
        let Some(server) = self.projects[index].server.take() else {
            return;
        };
        self.watch.remove(server.pidfd);
        drop(server.stream);
        self.projects[index]
            .manager
            .end_server(&server.identity, grace);
    }

    /// The server's pidfd says it exited.
    fn server_exited(&mut self, index: usize) {
        let Some(server) = self.projects[index].server.take() else {
            return;
        };
        self.watch.remove(server.pidfd);
        let ran_long = server.attached.elapsed() >= self.config.reset_after;
        let pid = server.pid;
        drop(server.stream);
        let status = self.projects[index].manager.take_exit_status(pid);
        self.ended(index, pid, status, ran_long);
    }

    /// A server is gone: decide, under the project lock (so that an `ocm
    /// down` or `ocm restart` in progress has finished), whether the user
    /// did it or it crashed.
    fn ended(
        &mut self,
        index: usize,
        pid: u32,
        status: Option<procutil::ExitStatus>,
        ran_long: bool,
    ) {
        let paths = self.projects[index].paths.clone();
        let record = {
            let _lock = self.projects[index].manager.lock(&paths).ok();
            read_record(&paths.record).ok().flatten()
        };
        let (code, signal, detail) = match status {
            Some(s) if s != procutil::ExitStatus::UNKNOWN => (s.code, s.signal, None),
            _ => (
                None,
                None,
                Some("status unknown: not ocm's child".to_string()),
            ),
        };
        let exited = Reason::Exited {
            code,
            signal,
            detail,
        };
        self.projects[index].last_exit = Some(exited.to_string());
        if let Some(record) = &record {
            if record.desired == Desired::Down {
                self.transition(
                    index,
                    SupervisorState::Stopped,
                    Reason::StoppedByUser,
                    Some(pid),
                );
                return;
            }
            if record.pid != pid
                && record.status == RecordStatus::Running
                && record.identity().is_alive()
            {
                let info = ServerInfoLite {
                    pid: record.pid,
                    url: record.url.clone(),
                    started_at: record.started_at.clone(),
                };
                self.attach(index, info, Reason::ReplacedByUser);
                return;
            }
        }
        self.transition(index, SupervisorState::Crashed, exited, Some(pid));
        let clean = status.is_some_and(|s| s.success());
        match self.config.restart {
            RestartPolicy::Never => {}
            RestartPolicy::OnFailure if clean => {
                let restart = self.config.restart;
                self.transition(
                    index,
                    SupervisorState::Stopped,
                    Reason::Policy { restart },
                    Some(pid),
                );
            }
            _ => self.schedule_restart(index, ran_long),
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        for index in 0..self.projects.len() {
            if self.projects[index].next_start.is_some_and(|t| t <= now) {
                self.start(index, false);
            }
            if self.projects[index]
                .companion
                .next_start
                .is_some_and(|t| t <= now)
            {
                self.companion_due(index);
            }
            let config = &self.config;
            let (failure, reconnect) = match &self.projects[index].server {
                Some(s) if s.stream.is_some() && !s.connected => (
                    (now >= s.stream_opened + config.connect_window).then(|| {
                        format!(
                            "no server.connected within {:?} of connecting",
                            config.connect_window
                        )
                    }),
                    false,
                ),
                Some(s) if s.stream.is_some() => (
                    (now >= s.last_frame + config.stall)
                        .then(|| format!("no event for {:?}", config.stall)),
                    false,
                ),
                Some(s) => (None, s.reconnect_at.is_some_and(|t| t <= now)),
                None => (None, false),
            };
            if let Some(reason) = failure {
                self.stream_failed(index, reason);
            } else if reconnect {
                self.open_stream(index);
            }
            if self.projects[index].metrics_due <= now {
                self.memory_check(index);
                self.rotate_log(index);
                let p = &mut self.projects[index];
                let over = p
                    .server
                    .as_ref()
                    .is_some_and(|s| s.over_memory_since.is_some());
                p.metrics_due = now
                    + if over {
                        MEMORY_RECHECK
                    } else {
                        self.config.metrics_interval
                    };
                self.write_metrics(index);
            }
        }
    }

    /// Over `max_memory`: restart once no session is busy, or once the
    /// wait for that ran out.
    fn memory_check(&mut self, index: usize) {
        let Some(limit) = self.config.max_memory else {
            return;
        };
        let busy_wait = self.config.busy_wait;
        let timeout = self.config.health_timeout;
        let Some(server) = self.projects[index].server.as_mut() else {
            return;
        };
        let Ok(rss) = procutil::resident_memory(server.pid) else {
            return;
        };
        if rss <= limit {
            server.over_memory_since = None;
            return;
        }
        let since = *server.over_memory_since.get_or_insert_with(Instant::now);
        let mut builder = opencode_api::Client::builder(&server.url).timeout(timeout);
        if let Some(password) = &server.password {
            builder = builder.basic_auth(USERNAME, password);
        }
        let idle = builder
            .build()
            .and_then(|c| c.session_status())
            .is_ok_and(|busy| busy.is_empty());
        if !idle && since.elapsed() < busy_wait {
            return;
        }
        let pid = server.pid;
        self.transition(
            index,
            SupervisorState::Stopping,
            Reason::MemoryLimit { rss, limit },
            Some(pid),
        );
        let grace = self.projects[index].manager.config.stop_grace;
        self.kill(index, grace);
        self.projects[index].last_exit = Some(format!("stopped: {rss} bytes over {limit}"));
        self.start(index, false);
    }

    fn transition(
        &mut self,
        index: usize,
        state: SupervisorState,
        reason: Reason,
        pid: Option<u32>,
    ) {
        let p = &mut self.projects[index];
        let transition = Transition {
            project: p.path.clone(),
            state,
            previous: p.state,
            at: statefile::rfc3339_now(),
            message: reason.to_string(),
            reason,
            pid,
            restarts: p.restarts,
        };
        p.state = state;
        p.last_transition = Some(transition.clone());
        files::append_transition(&p.paths, &transition);
        // Written before subscribers hear of it: whoever reacts to the
        // notice and reads `supervisor.json` finds it there.
        self.write_metrics(index);
        self.shared.publish(&Notice::Transition(transition));
    }

    /// A running server's log past the size limit is rotated without
    /// stopping the server (copy, then truncate; it writes with O_APPEND).
    fn rotate_log(&self, index: usize) {
        let p = &self.projects[index];
        if p.server.is_none() {
            return;
        }
        let config = p.manager.config();
        match crate::logs::copy_truncate_if_needed(
            &p.paths.log,
            config.log_max_bytes,
            config.log_keep,
        ) {
            Ok(true) => self.note(
                &p.path,
                "rotated the server log (copy, then truncate)".into(),
            ),
            Ok(false) => {}
            Err(e) => self.note(&p.path, format!("cannot rotate the server log: {e}")),
        }
    }

    fn write_metrics(&self, index: usize) {
        let p = &self.projects[index];
        let server = p.server.as_ref();
        let info = SupervisorInfo {
            pid: std::process::id(),
            state: p.state,
            restarts: p.restarts,
            last_transition: p.last_transition.clone(),
            server_pid: server.map(|s| s.pid),
            uptime_seconds: server.map(|s| {
                SystemTime::now()
                    .duration_since(s.started_at)
                    .unwrap_or_default()
                    .as_secs()
            }),
            resident_memory_bytes: server.and_then(|s| procutil::resident_memory(s.pid).ok()),
            events_received: p.events,
            reconnects: p.reconnects,
            relay_clients: server
                .and_then(|s| s.relay.as_ref())
                .map_or(0, |r| r.clients_served()),
            last_event_age_ms: server.map(|s| s.last_frame.elapsed().as_millis() as u64),
            last_exit: p.last_exit.clone(),
            companion_pid: p.companion.pid(),
            companion_restarts: p.companion.restarts,
            log_tail: p.log_tail.clone(),
            updated_at: statefile::rfc3339_now(),
        };
        files::write_info(&p.paths, &info);
    }

    fn note(&self, project: &Path, message: String) {
        self.shared.publish(&Notice::Note {
            project: project.to_path_buf(),
            message,
        });
    }

    fn project_of_pidfd(&self, token: Token) -> Option<usize> {
        self.projects
            .iter()
            .position(|p| p.server.as_ref().is_some_and(|s| s.pidfd == token))
    }

    /// The end of supervision: streams closed, servers stopped only with
    /// `stop_on_exit`, metrics removed, locks released.
    fn shutdown(&mut self) {
        // A start in progress ends first (cut short by the manager's
        // interrupts, when it has them); its server is then stopped or kept
        // like any other.
        for index in 0..self.projects.len() {
            if let Some(thread) = self.projects[index].starting.take() {
                let _ = thread.join();
            }
            self.companion_shutdown(index);
        }
        let ended = self.shared.take_started();
        for (path, result) in ended {
            if let (Some(index), Started::Server(Ok(Some(info)))) =
                (self.projects.iter().position(|p| p.path == path), result)
            {
                self.projects[index].last_pid = Some(info.pid);
                if self.config.stop_on_exit {
                    let _ = self.projects[index].manager.stop(&path);
                }
            }
        }
        for index in 0..self.projects.len() {
            if let Some(server) = self.projects[index].server.as_mut() {
                server.stream = None;
            }
            if self.config.stop_on_exit && self.projects[index].server.is_some() {
                let pid = self.projects[index].last_pid;
                self.transition(
                    index,
                    SupervisorState::Stopping,
                    Reason::SupervisorExit,
                    pid,
                );
                if let Some(server) = self.projects[index].server.take() {
                    self.watch.remove(server.pidfd);
                }
                let path = self.projects[index].path.clone();
                let _ = self.projects[index].manager.stop(&path);
                self.transition(index, SupervisorState::Stopped, Reason::SupervisorExit, pid);
            }
            files::remove_info(&self.projects[index].paths);
        }
        self.projects.clear();
    }
}

/// What attaching needs of a server.
struct ServerInfoLite {
    pid: u32,
    url: String,
    started_at: String,
}

impl From<&ServerInfo> for ServerInfoLite {
    fn from(info: &ServerInfo) -> Self {
        ServerInfoLite {
            pid: info.pid,
            url: info.url.clone(),
            started_at: info.started_at.clone(),
        }
    }
}
