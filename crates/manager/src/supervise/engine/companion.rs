//! The companion of a watched project, when the engine has a companion
//! source: started (or adopted) on a thread once the server runs, its exit
//! seen through its pidfd, restarted after a delay that grows like the
//! server's (and goes back to the floor once it ran long enough), left
//! stopped when the user wants the project down.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use procutil::ProcessIdentity;
use procutil::watch::Token;

use super::Engine;
use crate::record::{Desired, read_record};
use crate::supervise::Started;
use crate::{CompanionInfo, Error};

/// What the engine follows of a project's companion.
pub(super) struct Watched {
    /// The running companion: its pid, pidfd and when it was attached.
    running: Option<(u32, Token, Instant)>,
    /// The thread of a start in progress.
    starting: Option<JoinHandle<()>>,
    /// When the next start is due (after an exit or a failed start).
    pub(super) next_start: Option<Instant>,
    delay: Duration,
    /// Starts after the first.
    pub(super) restarts: u32,
}

impl Watched {
    pub(super) fn new(delay_floor: Duration) -> Watched {
        Watched {
            running: None,
            starting: None,
            next_start: None,
            delay: delay_floor,
            restarts: 0,
        }
    }

    /// The running companion's pid.
    pub(super) fn pid(&self) -> Option<u32> {
        self.running.map(|(pid, _, _)| pid)
    }
}

impl Engine {
    /// Starts the companion on a thread when the project has one, its
    /// server runs, and none runs or is being started.
    pub(super) fn companion_due(&mut self, index: usize) {
        let Some(source) = self.projects_source.clone() else {
            return;
        };
        let p = &mut self.projects[index];
        p.companion.next_start = None;
        if p.server.is_none() || p.companion.running.is_some() || p.companion.starting.is_some() {
            return;
        }
        let path = p.path.clone();
        let record_path = p.paths.record.clone();
        let manager = Arc::clone(&p.manager);
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name("ocm-supervisor-companion".into())
            .spawn({
                let path = path.clone();
                move || {
                    let down = read_record(&record_path)
                        .ok()
                        .flatten()
                        .is_some_and(|r| r.desired == Desired::Down);
                    let result = match source(&path) {
                        Err(reason) => Err(Error::Supervise { reason }),
                        Ok(setup) => match setup.and_then(|setup| setup.companion) {
                            Some(spec) if !down => manager.ensure_companion(&path, &spec).map(Some),
                            _ => Ok(None),
                        },
                    };
                    shared
                        .started
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((path, Started::Companion(result)));
                    shared.waker.wake();
                }
            });
        match thread {
            Ok(thread) => self.projects[index].companion.starting = Some(thread),
            Err(e) => self.companion_started(
                index,
                Err(Error::Supervise {
                    reason: format!("cannot start a thread for the companion: {e}"),
                }),
            ),
        }
    }

    /// What a companion start came to: followed, or retried later.
    pub(super) fn companion_started(
        &mut self,
        index: usize,
        result: Result<Option<CompanionInfo>, Error>,
    ) {
        if let Some(thread) = self.projects[index].companion.starting.take() {
            let _ = thread.join();
        }
        let path = self.projects[index].path.clone();
        match result {
            Ok(Some(info)) => {
                let pidfd = ProcessIdentity::of(info.pid).ok().and_then(|identity| {
                    self.projects[index]
                        .manager
                        .child_pidfd(info.pid)
                        .or_else(|| procutil::Pidfd::open_verified(&identity).ok().flatten())
                });
                match pidfd.and_then(|fd| self.watch.add_pidfd(&fd).ok()) {
                    Some(token) => {
                        self.projects[index].companion.running =
                            Some((info.pid, token, Instant::now()));
                        self.note(
                            &path,
                            format!("companion running (pid {}) at {}", info.pid, info.url),
                        );
                    }
                    None => self.companion_retry(index, format!("companion {} is gone", info.pid)),
                }
            }
            Ok(None) => {}
            Err(e) => self.companion_retry(index, format!("companion failed to start: {e}")),
        }
        self.write_metrics(index);
    }

    /// The companion's pidfd says it exited.
    pub(super) fn companion_exited(&mut self, index: usize) {
        let Some((pid, token, attached)) = self.projects[index].companion.running.take() else {
            return;
        };
        self.watch.remove(token);
        let how = match self.projects[index].manager.take_exit_status(pid) {
            Some(status) if status != procutil::ExitStatus::UNKNOWN => status.to_string(),
            _ => "status unknown: not ocm's child".to_string(),
        };
        if attached.elapsed() >= self.config.reset_after {
            self.projects[index].companion.delay = self.config.delay_floor;
        }
        let down = read_record(&self.projects[index].paths.record)
            .ok()
            .flatten()
            .is_some_and(|r| r.desired == Desired::Down);
        if down {
            let path = self.projects[index].path.clone();
            self.note(
                &path,
                format!("companion (pid {pid}) exited ({how}); left stopped: the project is down"),
            );
            self.write_metrics(index);
            return;
        }
        self.companion_retry(index, format!("companion (pid {pid}) exited ({how})"));
        self.write_metrics(index);
    }

    /// Says what happened and schedules the next start.
    fn companion_retry(&mut self, index: usize, what: String) {
        let cap = self.config.delay_cap;
        let c = &mut self.projects[index].companion;
        let delay = c.delay;
        c.delay = (delay * 2).min(cap);
        c.next_start = Some(Instant::now() + delay);
        c.restarts += 1;
        let path = self.projects[index].path.clone();
        self.note(
            &path,
            format!("{what}; restarting it in {} ms", delay.as_millis()),
        );
    }

    pub(super) fn companion_of_pidfd(&self, token: Token) -> Option<usize> {
        self.projects
            .iter()
            .position(|p| p.companion.running.is_some_and(|(_, t, _)| t == token))
    }

    /// Supervision ends: a companion start in progress ends first; with
    /// `stop_on_exit` the companion is stopped.
    pub(super) fn companion_shutdown(&mut self, index: usize) {
        if let Some(thread) = self.projects[index].companion.starting.take() {
            let _ = thread.join();
        }
        if let Some((_, token, _)) = self.projects[index].companion.running.take() {
            self.watch.remove(token);
            if self.config.stop_on_exit {
                let path = self.projects[index].path.clone();
                let _ = self.projects[index].manager.stop_companion(&path);
            }
        }
    }
}
