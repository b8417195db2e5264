//! Starts: each on a thread of its own (the supervisor's poll goes on),
//! what it came to, and the backoff and start limit before the next one.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{Engine, LOG_TAIL_LINES, ServerInfoLite};
use crate::report::ServerInfo;
use crate::supervise::{Reason, Started, SupervisorState, WatchOutcome};
use crate::{Error, Manager};

impl Engine {
    /// The manager of a project's server: the engine's, unless the
    /// project source gives the project a configuration of its own (with
    /// the same state root, and the engine's interrupts).
    pub(super) fn project_manager(&self, path: &Path) -> Result<Arc<Manager>, Error> {
        let setup = match &self.projects_source {
            Some(source) => source(path).map_err(|reason| Error::Supervise {
                reason: format!("{}: {reason}", path.display()),
            })?,
            None => None,
        };
        let config = setup.and_then(|setup| setup.config);
        let Some(config) = config else {
            return Ok(Arc::clone(&self.manager));
        };
        let mut manager = Manager::new(config)?;
        if manager.state_root() != self.manager.state_root() {
            return Err(Error::Supervise {
                reason: format!(
                    "the configuration given for {} names the state root {}, not {}",
                    path.display(),
                    manager.state_root().display(),
                    self.manager.state_root().display()
                ),
            });
        }
        manager.interrupts = self.manager.interrupts.clone();
        manager.interrupt_means_down = self.manager.interrupt_means_down;
        Ok(Arc::new(manager))
    }

    /// Starts (or adopts) the project's server and attaches to it.
    pub(super) fn start(&mut self, index: usize, bring_up: bool) {
        let now = Instant::now();
        // Any start after this supervisor's first one is a restart.
        let restart = !self.projects[index].starts.is_empty()
            || self.projects[index].last_pid.is_some()
            || self.projects[index].restarts > 0;
        {
            let p = &mut self.projects[index];
            p.next_start = None;
            if restart {
                p.restarts += 1;
            }
            p.starts.push_back(now);
        }
        self.transition(
            index,
            SupervisorState::Starting,
            Reason::Start { restart },
            None,
        );
        let path = self.projects[index].path.clone();
        let manager = Arc::clone(&self.projects[index].manager);
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name("ocm-supervisor-start".into())
            .spawn({
                let path = path.clone();
                move || {
                    let result = Started::Server(if bring_up {
                        manager.ensure(&path).map(Some)
                    } else {
                        manager.supervised_start(&path)
                    });
                    shared
                        .started
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((path, result));
                    shared.waker.wake();
                }
            });
        match thread {
            Ok(thread) => self.projects[index].starting = Some(thread),
            Err(e) => {
                let error = Error::Supervise {
                    reason: format!("cannot start a thread for the start: {e}"),
                };
                self.start_ended(index, Err(error));
            }
        }
    }

    /// Takes the starts that ended on their threads.
    pub(super) fn starts_ended(&mut self) {
        let ended = self.shared.take_started();
        for (path, result) in ended {
            let Some(index) = self.projects.iter().position(|p| p.path == path) else {
                continue;
            };
            match result {
                Started::Server(result) => {
                    if let Some(thread) = self.projects[index].starting.take() {
                        let _ = thread.join();
                    }
                    self.start_ended(index, result);
                }
                Started::Companion(result) => self.companion_started(index, result),
            }
        }
    }

    /// What a start came to: attached, left stopped, or a failure to retry;
    /// then the `watch` calls waiting on it are answered.
    fn start_ended(&mut self, index: usize, result: Result<Option<ServerInfo>, Error>) {
        match result {
            Ok(Some(info)) => {
                let reason = if info.reused {
                    Reason::Adopted
                } else {
                    Reason::Started
                };
                self.attach(index, ServerInfoLite::from(&info), reason);
            }
            Ok(None) => {
                self.transition(index, SupervisorState::Stopped, Reason::StoppedByUser, None);
            }
            Err(e) => {
                let message = e.to_string();
                self.projects[index].last_exit = Some(format!("start failed: {message}"));
                self.transition(
                    index,
                    SupervisorState::Crashed,
                    Reason::StartFailed { message },
                    None,
                );
                self.schedule_restart(index, false);
            }
        }
        let p = &mut self.projects[index];
        let outcome = WatchOutcome::Watching {
            project: p.path.clone(),
            pid: p.server.as_ref().map(|s| s.pid),
        };
        for reply in p.replies.drain(..) {
            let _ = reply.send(Ok(outcome.clone()));
        }
    }

    /// Backoff before the next start, or `failed` past the start limit.
    pub(super) fn schedule_restart(&mut self, index: usize, reset: bool) {
        let config = &self.config;
        let now = Instant::now();
        let p = &mut self.projects[index];
        while p
            .starts
            .front()
            .is_some_and(|t| now.duration_since(*t) > config.start_window)
        {
            p.starts.pop_front();
        }
        if config.start_limit > 0 && p.starts.len() >= config.start_limit as usize {
            let reason = Reason::StartLimit {
                starts: p.starts.len() as u32,
                within_secs: config.start_window.as_secs(),
            };
            p.log_tail = crate::logs::last_lines(&p.paths.log, 0, LOG_TAIL_LINES);
            p.next_start = None;
            self.transition(index, SupervisorState::Failed, reason, None);
            return;
        }
        if reset {
            p.delay = config.delay_floor;
        }
        let delay = p.delay;
        p.delay = (delay * 2).min(config.delay_cap);
        p.next_start = Some(now + delay);
        let ms = delay.as_millis() as u64;
        self.transition(index, SupervisorState::Backoff, Reason::Delay { ms }, None);
    }
}
