//! Progress on stderr: a spinner line while a server starts or stops (only
//! when stderr is a terminal), and notes about what was found and repaired
//! (always, unless `--quiet`).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use manager::Progress;

/// How often the spinner redraws.
const TICK: Duration = Duration::from_millis(100);
/// A phase shorter than this is never drawn, so a reused server answers
/// without flicker.
const DRAW_AFTER: Duration = Duration::from_millis(150);
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// True when stderr is a terminal.
pub fn stderr_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Shows progress and notes on stderr. Owns the spinner thread: dropping
/// it clears the line, stops the thread and joins it.
#[derive(Debug)]
pub struct Reporter {
    shared: Arc<Shared>,
    spinner: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    quiet: bool,
}

#[derive(Debug)]
struct State {
    /// What is happening now; `None`: nothing to draw.
    phase: Option<String>,
    /// When the current operation began (the spinner shows the time since).
    since: Instant,
    /// The spinner line is on screen and must be cleared before a note.
    drawn: bool,
    stop: bool,
}

impl Reporter {
    /// A reporter; the spinner runs only when `spinner` is true (stderr is
    /// a terminal) and not `quiet`.
    pub fn new(quiet: bool, spinner: bool) -> Reporter {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                phase: None,
                since: Instant::now(),
                drawn: false,
                stop: false,
            }),
            wake: Condvar::new(),
            quiet,
        });
        let spinner = (spinner && !quiet).then(|| {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("ocm-spinner".into())
                .spawn(move || shared.spin())
                .ok()
        });
        Reporter {
            shared,
            spinner: spinner.flatten(),
        }
    }

    /// A reporter for the current stderr.
    pub fn for_stderr(quiet: bool) -> Reporter {
        Reporter::new(quiet, stderr_is_tty())
    }

    /// The callback to give [`manager::Manager::with_progress`].
    pub fn sink(&self) -> impl Fn(&Progress) + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move |progress: &Progress| shared.on_progress(progress)
    }

    /// Shows `text` as the current phase (on a terminal).
    pub fn phase(&self, text: impl Into<String>) {
        self.shared.set_phase(Some(text.into()));
    }

    /// A line on stderr, above the spinner.
    pub fn note(&self, text: &str) {
        self.shared.note(text);
    }

    /// Clears the spinner line; the operation is over.
    pub fn finish(&self) {
        self.shared.set_phase(None);
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stop = true;
            state.phase = None;
        }
        self.shared.wake.notify_all();
        if let Some(thread) = self.spinner.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_progress(&self, progress: &Progress) {
        match progress {
            Progress::Reused { pid, .. } => self.set_phase(Some(format!("reusing pid {pid}"))),
            Progress::Repaired(repair) => self.note(&repair.to_string()),
            Progress::PasswordNotApplied { pid } => self.note(&format!(
                "the running server (pid {pid}) has no password; the one given applies from its \
                 next start (`ocm restart`)"
            )),
            Progress::PasswordKept { file } => self.note(&format!(
                "the project's last server had a generated password; the new one keeps it \
                 ({}); `--no-password` starts one without",
                file.display()
            )),
            Progress::PasswordTurnedOff => {
                self.note("the project's last server had a password; this one has none, as asked")
            }
            Progress::PortTaken { port, holder } => {
                let by = holder
                    .as_ref()
                    .map(|h| format!(" by {}", h.describe(60)))
                    .unwrap_or_default();
                self.note(&format!("port {port} is taken{by}; trying the next one"));
            }
            Progress::Starting { port, attempt, .. } => {
                let on = port.map(|p| format!(" on port {p}")).unwrap_or_default();
                let again = if *attempt > 1 {
                    " (second attempt)"
                } else {
                    ""
                };
                self.set_phase(Some(format!("starting opencode{on}{again}")));
            }
            Progress::WaitingForListen { pid } => {
                self.set_phase(Some(format!("waiting for opencode (pid {pid}) to listen")));
            }
            Progress::Listening { port, .. } => {
                self.set_phase(Some(format!("listening on port {port}; checking health")));
            }
            Progress::Healthy { .. } => self.set_phase(None),
            Progress::Retrying { reason } => {
                self.note(&format!("start failed ({reason}); trying once more"));
            }
            Progress::Stopping { pid } => {
                self.set_phase(Some(format!("stopping opencode (pid {pid})")));
            }
            Progress::WaitingForLock { .. } => {
                self.set_phase(Some(
                    "waiting for another ocm working on this project".to_string(),
                ));
            }
            // Kinds of progress added later are not shown until ocm knows them.
            _ => {}
        }
    }

    fn set_phase(&self, phase: Option<String>) {
        let mut state = self.lock();
        if state.phase.is_none() && phase.is_some() {
            state.since = Instant::now();
        }
        state.phase = phase;
        if state.phase.is_none() && state.drawn {
            clear_line();
            state.drawn = false;
        }
        drop(state);
        self.wake.notify_all();
    }

    fn note(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut state = self.lock();
        if state.drawn {
            clear_line();
            state.drawn = false;
        }
        let mut stderr = std::io::stderr().lock();
        // Notes quote paths, command lines and server messages.
        let _ = writeln!(stderr, "ocm: {}", crate::escape::escape(text));
        let _ = stderr.flush();
    }

    /// The spinner thread: redraws every tick until stopped.
    fn spin(&self) {
        let mut frame = 0usize;
        let mut state = self.lock();
        loop {
            if state.stop {
                if state.drawn {
                    clear_line();
                }
                return;
            }
            if let Some(phase) = &state.phase {
                let elapsed = state.since.elapsed();
                if elapsed >= DRAW_AFTER {
                    let mut stderr = std::io::stderr().lock();
                    let _ = write!(
                        stderr,
                        "\r\x1b[2K{} {phase} {:.1} s",
                        FRAMES[frame % FRAMES.len()],
                        elapsed.as_secs_f64()
                    );
                    let _ = stderr.flush();
                    state.drawn = true;
                    frame += 1;
                }
                state = self
                    .wake
                    .wait_timeout(state, TICK)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            } else {
                state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

fn clear_line() {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "\r\x1b[2K");
    let _ = stderr.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spinner_thread_stops_on_drop() {
        let reporter = Reporter::new(true, true);
        // quiet: no thread at all.
        assert!(reporter.spinner.is_none());
        drop(reporter);
        let reporter = Reporter::new(false, true);
        assert!(reporter.spinner.is_some());
        let sink = reporter.sink();
        sink(&Progress::Starting {
            project: "/p".into(),
            port: Some(28001),
            attempt: 1,
        });
        sink(&Progress::Healthy {
            url: "http://127.0.0.1:28001".into(),
            elapsed: Duration::from_millis(5),
        });
        reporter.phase("stopping");
        // Drop joins the thread; a hang here fails the test by timeout.
        drop(reporter);
    }
}
