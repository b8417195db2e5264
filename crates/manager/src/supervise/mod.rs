//! Supervision: a [`Supervisor`] watches projects' servers and keeps them
//! healthy by itself: crashes through a pidfd per server, hangs through one
//! `/global/event` stream per server, restarts with backoff and a start
//! limit, the user's `desired` state respected, transitions and metrics in
//! the project's state folder.
//!
//! Threads: one supervisor thread (one poll(2) over every pidfd, the state
//! folders' inotify watches and a waker the stream readers ring) plus, per
//! watched server, one reader thread for its stream, or, while the server
//! is being started, one thread running that start (so that a slow start
//! never delays what the supervisor sees of the other servers).

mod engine;
mod files;
mod ops;
mod types;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use procutil::waker::Waker;

use crate::{Error, Manager};

pub(crate) use files::read_info;
pub use files::{SupervisorInfo, supervise_lock_holder};
pub use types::{Notice, Reason, RestartPolicy, SuperviseConfig, SupervisorState, Transition};

/// What [`Supervisor::watch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchOutcome {
    /// This supervisor watches the project now; its server's pid when one
    /// runs.
    Watching {
        /// The project folder.
        project: PathBuf,
        /// The server's pid, when one runs.
        pid: Option<u32>,
    },
    /// Another supervisor (this pid) holds the project's `supervise.lock`:
    /// this one leaves it alone.
    HeldBy {
        /// The project folder.
        project: PathBuf,
        /// The other supervisor's pid, when it wrote one.
        pid: Option<u32>,
    },
}

/// Requests from the handle to the supervisor thread.
pub(crate) enum Command {
    Watch {
        project: PathBuf,
        reply: Sender<Result<WatchOutcome, Error>>,
    },
    WatchAll {
        reply: Sender<Result<Vec<WatchOutcome>, Error>>,
    },
}

/// What a start thread came to.
pub(crate) enum Started {
    /// The server's start (or adoption; `None`: the user wants it down).
    Server(Result<Option<crate::ServerInfo>, Error>),
    /// The companion's (`None`: not started, the user wants the project
    /// down).
    Companion(Result<Option<crate::CompanionInfo>, Error>),
}

/// A start that ended on its thread: the project folder and what came of
/// it.
pub(crate) type StartResult = (PathBuf, Started);

/// What a supervisor is told of one project beyond its own manager (see
/// [`Supervisor::start_with`]).
#[derive(Debug, Clone, Default)]
pub struct ProjectSetup {
    /// The configuration of this project's server (its password, port
    /// policy, binary), when it is not the supervisor's manager's. Its
    /// state root must be the same.
    pub config: Option<crate::Config>,
    /// What to keep running beside the server.
    pub companion: Option<crate::CompanionSpec>,
}

/// Tells a supervisor what is special about a project: given the project
/// folder, its [`ProjectSetup`] (`None`: nothing), or why it cannot be
/// known (the project is then not watched, or its companion not started).
/// Called on the supervisor's threads when the project is taken and each
/// time its companion is to be started.
pub type ProjectSource = Arc<dyn Fn(&Path) -> Result<Option<ProjectSetup>, String> + Send + Sync>;

/// What the handle and the supervisor thread share.
pub(crate) struct Shared {
    pub(crate) waker: Waker,
    pub(crate) commands: Mutex<Vec<Command>>,
    /// Starts that ended, for the supervisor thread to take.
    pub(crate) started: Mutex<Vec<StartResult>>,
    pub(crate) stop: std::sync::atomic::AtomicBool,
    pub(crate) subscribers: Mutex<Vec<(Sender<Notice>, bool)>>,
}

impl Shared {
    /// The starts that ended on their threads since the last call.
    pub(crate) fn take_started(&self) -> Vec<StartResult> {
        std::mem::take(&mut *self.started.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Sends a notice to every subscriber that wants it, forgetting those
    /// that are gone.
    pub(crate) fn publish(&self, notice: &Notice) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers.retain(|(tx, events)| {
            if matches!(notice, Notice::Event { .. }) && !events {
                return true;
            }
            tx.send(notice.clone()).is_ok()
        });
    }
}

/// Watches servers and keeps them up; see the module documentation.
///
/// ```no_run
/// use manager::{Config, Manager, SuperviseConfig, Supervisor};
///
/// let supervisor = Supervisor::start(Manager::new(Config::from_env())?, SuperviseConfig::default())?;
/// let notices = supervisor.subscribe(false);
/// supervisor.watch(std::path::Path::new("."))?;
/// for notice in notices.iter().take(3) {
///     println!("{notice}");
/// }
/// # Ok::<(), manager::Error>(())
/// ```
///
/// Dropping it stops the supervisor thread and joins it: within a second,
/// unless a start is in progress, which it lets end first (give the
/// manager [`Manager::with_interrupts`] to cut such a start short on
/// SIGINT or SIGTERM). The servers keep running unless
/// [`SuperviseConfig::stop_on_exit`] says otherwise.
pub struct Supervisor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Starts the supervisor thread; it watches nothing yet.
    pub fn start(manager: Manager, config: SuperviseConfig) -> Result<Supervisor, Error> {
        Supervisor::start_with(manager, config, None)
    }

    /// [`start`](Self::start), with `projects` saying what is special
    /// about a project: a configuration of its own (its server is started
    /// with a manager of that configuration), and a companion, watched too:
    /// started (or adopted) once its server runs, its exit seen through its
    /// pidfd and followed by a restart after a delay that grows like the
    /// server's, unless the user wants the project down.
    pub fn start_with(
        manager: Manager,
        config: SuperviseConfig,
        projects: Option<ProjectSource>,
    ) -> Result<Supervisor, Error> {
        config.validate()?;
        let waker = Waker::new().map_err(|e| Error::Supervise {
            reason: e.to_string(),
        })?;
        let shared = Arc::new(Shared {
            waker,
            commands: Mutex::new(Vec::new()),
            started: Mutex::new(Vec::new()),
            stop: std::sync::atomic::AtomicBool::new(false),
            subscribers: Mutex::new(Vec::new()),
        });
        // Its interrupts end supervision, not what the user wants of a
        // server whose start they cut short.
        let mut manager = manager;
        manager.interrupt_means_down = false;
        let mut engine = engine::Engine::new(manager, config, Arc::clone(&shared), projects)?;
        let thread = std::thread::Builder::new()
            .name("ocm-supervisor".into())
            .spawn(move || engine.run())
            .map_err(|e| Error::Supervise {
                reason: format!("cannot start the supervisor thread: {e}"),
            })?;
        Ok(Supervisor {
            shared,
            thread: Some(thread),
        })
    }

    /// A channel of every transition from now on (and, with `events`, every
    /// event received from a watched server). It closes when the supervisor
    /// stops.
    pub fn subscribe(&self, events: bool) -> Receiver<Notice> {
        let (tx, rx) = mpsc::channel();
        self.shared
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((tx, events));
        rx
    }

    /// Brings the project's server up (adopting a running one, setting
    /// `desired: up`) and watches it. Blocks while the server starts (up to
    /// the manager's start-up timeout, twice); the other watched servers
    /// are followed meanwhile. A start that fails is not an error here: the
    /// project is watched and retried per the policy.
    pub fn watch(&self, project: &Path) -> Result<WatchOutcome, Error> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::Watch {
            project: project.to_path_buf(),
            reply,
        });
        rx.recv().map_err(|_| Error::Supervise {
            reason: "the supervisor thread ended".into(),
        })?
    }

    /// Watches every project under the state root whose `desired` is `up`,
    /// now and whenever one is brought up later (through inotify on the
    /// state root).
    pub fn watch_all(&self) -> Result<Vec<WatchOutcome>, Error> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::WatchAll { reply });
        rx.recv().map_err(|_| Error::Supervise {
            reason: "the supervisor thread ended".into(),
        })?
    }

    fn send(&self, command: Command) {
        self.shared
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(command);
        self.shared.waker.wake();
    }

    /// Stops watching (and, with `stop_on_exit`, stops the servers) and joins
    /// the thread. Also done on drop.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}
