//! The test bed every end-to-end test of ocm stands on.
//!
//! End-to-end tests run the real `opencode` binary, never a fake of it, with
//! the offline [`mock_llm`] model. A [`TestBed`] gives each test its own temp
//! project folder, isolated `HOME` and XDG folders for the child, a temp ocm
//! state folder and a mock model, and it kills every process the test started
//! (found by a marker in their environment) when it is dropped, also when the
//! test panics.
//!
//! For the `ocm` binary, [`ocm`], [`ocm_with`] and [`run_bounded`] run one
//! call bounded by a deadline (killing it if it overruns) and return its
//! [`Run`]; [`fresh_project`] makes a project folder whose port is free.
//! For the library, [`manager_in`] configures a manager for a bed.
//! [`git_server::GitSshServer`] is a real sshd on loopback serving bare
//! git repositories, for tests that clone a project over SSH.
//!
//! ```no_run
//! let bed = e2e::TestBed::new();
//! let server = bed.start_opencode();
//! assert!(server.url.starts_with("http://127.0.0.1:"));
//! // Dropping `server` and `bed` kills opencode and removes the folders.
//! ```

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use mock_llm::{MockLlm, Reply, Script};

pub mod git_server;
pub mod mcp_clients;
pub mod mcp_stdio;

/// The pinned release and where `cargo xtask opencode` puts it: the same
/// answers the manager uses.
pub use manager::{OPENCODE_VERSION, opencode_cache_dir, opencode_in_prefix};

/// How long opencode may take to print its listening line in a test.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment variable that carries a test bed's marker into every
/// process it starts, so that [`TestBed`]'s drop can find and kill them.
pub const TEST_ID_VAR: &str = "OCM_TEST_ID";

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the opencode binary: `OPENCODE_BIN`, else the `cargo xtask opencode`
/// cache, else `PATH`.
pub fn find_opencode() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("OPENCODE_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        return if is_executable(&bin) {
            Ok(bin)
        } else {
            Err(format!(
                "OPENCODE_BIN={} is not an executable file",
                bin.display()
            ))
        };
    }
    if let Some(bin) = opencode_cache_dir().and_then(|dir| opencode_in_prefix(&dir)) {
        return Ok(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("opencode");
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "opencode not found: run `cargo xtask opencode` (installs opencode-ai@{OPENCODE_VERSION} \
         with npm into {}), or set OPENCODE_BIN to the binary; to skip the end-to-end tests \
         set OCM_SKIP_E2E=1",
        opencode_cache_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "~/.cache/ocm".into())
    ))
}

/// The opencode binary for tests. Panics with how to get it when it cannot
/// be found.
pub fn opencode_bin() -> PathBuf {
    find_opencode().unwrap_or_else(|message| panic!("{message}"))
}

/// True when the end-to-end tests are to be skipped: only when
/// `OCM_SKIP_E2E=1` is set by hand. Says so loudly on stderr.
pub fn e2e_skipped() -> bool {
    let skipped = std::env::var("OCM_SKIP_E2E").is_ok_and(|v| v == "1");
    if skipped {
        let name = std::thread::current()
            .name()
            .unwrap_or("an end-to-end test")
            .to_string();
        // Straight to the process's stderr, past the harness's capture, so a
        // skip is never silent; and counted, for the line at exit.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {name}: OCM_SKIP_E2E=1 is set, so the real opencode is not run"
        );
        if SKIPPED.fetch_add(1, Ordering::SeqCst) == 0 {
            // SAFETY: registering a plain extern "C" function with no
            // captured state; it only writes to stderr.
            unsafe { libc::atexit(report_skipped) };
        }
    }
    skipped
}

/// End-to-end tests this test binary skipped.
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn report_skipped() {
    let _ = writeln!(
        std::io::stderr(),
        "{} end-to-end test(s) of {} skipped (OCM_SKIP_E2E=1)",
        SKIPPED.load(Ordering::SeqCst),
        std::env::current_exe()
            .ok()
            .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default()
    );
}

/// Options for [`TestBed::start_opencode_with`].
#[derive(Debug, Default, Clone)]
pub struct ServeOptions {
    /// The port to pass to `--port` (`None`: 0, opencode picks).
    pub port: Option<u16>,
    /// Extra environment for the server, e.g. `OPENCODE_SERVER_PASSWORD`.
    pub env: Vec<(String, String)>,
    /// The working folder (`None`: the bed's project folder).
    pub cwd: Option<PathBuf>,
}

/// An isolated environment for one end-to-end test. See the crate docs.
#[derive(Debug)]
pub struct TestBed {
    /// The test's project folder.
    pub project: PathBuf,
    /// The ocm state folder (`OCM_STATE_DIR` for children).
    pub state_dir: PathBuf,
    /// HOME for children.
    pub home: PathBuf,
    /// The offline model every child is configured to use.
    pub mock: MockLlm,
    test_id: String,
    // Dropped last: the folders go after the processes are dead.
    root: tempfile::TempDir,
}

impl Default for TestBed {
    fn default() -> Self {
        TestBed::new()
    }
}

impl TestBed {
    /// A bed whose mock echoes every prompt (`echo: <prompt>`).
    pub fn new() -> TestBed {
        TestBed::with_script(Script::new())
    }

    /// A bed whose mock answers from `script`.
    pub fn with_script(script: Script) -> TestBed {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // The project's port (and the next, where a taken port sends the
        // server) is claimed like `fresh_project`'s, so that no two tests of
        // this binary meet on a port.
        let root = (0..200)
            .map(|_| {
                tempfile::Builder::new()
                    .prefix("ocm-e2e-")
                    .tempdir()
                    .expect("create a temp folder for the test bed")
            })
            .find(|root| claim_project_port(&root.path().join("project")).is_some())
            .expect("a test bed whose project port is free, in 200 tries");
        let base = root.path().to_path_buf();
        let test_id = format!(
            "{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            base.file_name().and_then(|n| n.to_str()).unwrap_or("bed")
        );
        for dir in ["project", "home", "data", "config", "state", "cache", "ocm"] {
            std::fs::create_dir_all(base.join(dir)).expect("create a test bed folder");
        }
        let mock = MockLlm::start(script).expect("start mock-llm on 127.0.0.1");
        TestBed {
            project: base.join("project"),
            state_dir: base.join("ocm"),
            home: base.join("home"),
            mock,
            test_id,
            root,
        }
    }

    /// The bed's root temp folder.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The marker value every child of this bed carries in [`TEST_ID_VAR`].
    pub fn test_id(&self) -> &str {
        &self.test_id
    }

    /// The live `ocm relay` processes this bed's commands started (they
    /// carry [`manager::RELAY_VAR`] and the bed's marker).
    pub fn relay_pids(&self) -> Vec<u32> {
        let mine = marked_pids(&format!("{TEST_ID_VAR}={}", self.test_id));
        processes_with_env(&format!("{}=", manager::RELAY_VAR))
            .into_iter()
            .filter(|pid| mine.contains(pid))
            .collect()
    }

    /// Creates another project folder in the bed and returns its path.
    pub fn new_project(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join("projects").join(name);
        std::fs::create_dir_all(&dir).expect("create a project folder");
        dir
    }

    /// The environment a child of this bed gets on top of `PATH`: isolated
    /// HOME and XDG folders, the mock model config, the ocm state folder, the
    /// opencode binary and the bed's marker.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let base = self.root.path();
        let path = |p: &str| base.join(p).display().to_string();
        let mut env = vec![
            ("HOME".to_string(), path("home")),
            ("XDG_DATA_HOME".to_string(), path("data")),
            ("XDG_CONFIG_HOME".to_string(), path("config")),
            ("XDG_STATE_HOME".to_string(), path("state")),
            ("XDG_CACHE_HOME".to_string(), path("cache")),
            ("OCM_STATE_DIR".to_string(), path("ocm")),
            (
                "OPENCODE_CONFIG_CONTENT".to_string(),
                self.mock.opencode_config(),
            ),
            (TEST_ID_VAR.to_string(), self.test_id.clone()),
        ];
        if let Ok(bin) = find_opencode() {
            env.push(("OPENCODE_BIN".to_string(), bin.display().to_string()));
        }
        env
    }

    /// A command for `program` with a clean environment: `PATH` plus
    /// [`TestBed::child_env`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command.envs(self.child_env());
        command
    }

    /// Starts `opencode serve --hostname 127.0.0.1 --port 0` in the project
    /// folder and waits for its listening line.
    pub fn start_opencode(&self) -> OpencodeServer {
        self.start_opencode_with(ServeOptions::default())
    }

    /// Starts opencode with `options` and waits for its listening line.
    /// Panics with the server's output if it exits or does not listen in time.
    pub fn start_opencode_with(&self, options: ServeOptions) -> OpencodeServer {
        use std::os::unix::process::CommandExt;
        let bin = opencode_bin();
        let port = options.port.unwrap_or(0);
        let mut command = self.command(&bin);
        command
            .args(["serve", "--hostname", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .current_dir(options.cwd.as_deref().unwrap_or(&self.project))
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let threads = vec![
            drain(stdout, Arc::clone(&log), Some(lines_tx)),
            drain(stderr, Arc::clone(&log), None),
        ];
        let mut server = OpencodeServer {
            url: String::new(),
            port: 0,
            pid: child.id(),
            child: Some(child),
            log,
            threads,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = portmap::parse_listening_line(&line) {
                        server.url = addr.url();
                        server.port = addr.port;
                        return server;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Taken, so that the drop does not signal its group by
                    // number once it is reaped: the id may be another
                    // group's by then.
                    let status = server.child.take().and_then(|mut c| c.wait().ok());
                    panic!(
                        "opencode exited before listening ({status:?}); output:\n{}",
                        server.log()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "opencode did not print its listening line within {START_TIMEOUT:?}; \
                         output:\n{}",
                        server.log()
                    );
                }
            }
        }
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        kill_marked_processes(&self.test_id);
    }
}

/// Kills every process whose environment carries `OCM_TEST_ID=<test_id>`,
/// and waits (bounded) until they are gone. Returns how many were found.
///
/// Each process is signalled through a pidfd opened before its marker is
/// read again, so a pid that was reused meanwhile is never hit. A marked
/// process that leads its own group gets the whole group killed (its
/// children carry the marker too, but may have cleared their environment);
/// while the leader is alive its group id cannot be reused. Only this
/// process's own marked children are reaped: reaping any child
/// (`waitpid(-1)`) would steal exit statuses from other tests running in
/// parallel.
pub fn kill_marked_processes(test_id: &str) -> usize {
    let marker = format!("{TEST_ID_VAR}={test_id}");
    let mut found = marked_pids(&marker);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Also what a dying process started meanwhile.
        for &pid in &found {
            kill_if_marked(pid, &marker);
            reap_if_our_child(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
        let left = marked_pids(&marker);
        if left.is_empty() || Instant::now() >= deadline {
            return found.len();
        }
        for pid in left {
            if !found.contains(&pid) {
                found.push(pid);
            }
        }
    }
}

/// SIGKILLs `pid` (and its group, when it leads one) if it still carries
/// `marker` once a pidfd pins it.
fn kill_if_marked(pid: u32, marker: &str) {
    let Ok(Some(pidfd)) = procutil::Pidfd::open(pid) else {
        return;
    };
    // Read after the pin: if the pid was reused before it, this reads the
    // new process, which is then the one pinned.
    let still_marked = has_env_var(pid, &|var| var == marker.as_bytes());
    if !still_marked {
        return;
    }
    // Its group, if it leads one, through procutil rather than
    // `kill(-pid)`: the leader may be reaped right after the check above
    // and its group id go to another group, which a number would reach.
    // The identity is the pinned process's if that is still unreaped after
    // reading it; signal_group verifies it again, signals through a pidfd,
    // and refuses our own group.
    if let Ok(identity) = procutil::ProcessIdentity::of(pid)
        && pidfd.send_signal(0).is_ok()
    {
        let _ = procutil::signal_group(&identity, libc::SIGKILL);
    }
    // Through the pidfd: never reaches a process that got the pid since.
    let _ = pidfd.send_signal(libc::SIGKILL);
}

/// Whether an entry (`NAME=value`) of `pid`'s environment `matches`: read
/// whole also while the process execs (see `procutil::environ`).
fn has_env_var(pid: u32, matches: &dyn Fn(&[u8]) -> bool) -> bool {
    procutil::environ(pid).is_ok_and(|env| env.entries().any(matches))
}

/// Reaps `pid` if it is an exited child of this process.
fn reap_if_our_child(pid: u32) {
    let mut status = 0;
    // SAFETY: waitpid on one pid with WNOHANG; ECHILD when not ours.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
}

/// Sends `signal` to `pid`, or to the process group `-pid`, as kill(2)
/// does; false when that failed. Tests signal raw pids through this, so
/// that `unsafe` stays in this file (the tidy check allows it here). The
/// caller makes sure the pid is still the process it means.
pub fn send_signal(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) takes no pointers and touches no memory of ours.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// A client of the event relay at `socket` (`events.sock` in a project's
/// state folder), past its hello: waits up to 20 s for the relay to take
/// clients (its stream's first heartbeat comes within 10 s).
pub fn relay_client(socket: &Path) -> BufReader<std::os::unix::net::UnixStream> {
    poll_until(Duration::from_secs(20), "the relay to take clients", || {
        let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut lines = BufReader::new(stream);
        let mut hello = String::new();
        lines.read_line(&mut hello).ok()?;
        let hello: serde_json::Value = serde_json::from_str(&hello).ok()?;
        assert_eq!(hello["relay"], "ocm-events", "{hello}");
        Some(lines)
    })
}

/// Pids of live (not zombie) processes, other than this one, whose
/// environment has a variable starting with `prefix` (`NAME=` for any value).
pub fn processes_with_env(prefix: &str) -> Vec<u32> {
    pids_with_env_var(|var| var.starts_with(prefix.as_bytes()))
}

/// Pids of live processes whose environment holds exactly `marker`.
fn marked_pids(marker: &str) -> Vec<u32> {
    pids_with_env_var(|var| var == marker.as_bytes())
}

fn pids_with_env_var(matches: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter(|&pid| has_env_var(pid, &matches))
        .filter(|&pid| !is_zombie(pid))
        .collect()
}

/// True when `pid` is a zombie or gone.
pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 1..];
            after
                .split_whitespace()
                .next()
                .map(|s| s == "Z" || s == "X")
        })
        .unwrap_or(true)
}

/// A real opencode server started by a [`TestBed`]. Dropping it kills its
/// process group and reaps it.
#[derive(Debug)]
pub struct OpencodeServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    /// Its pid (and process group id).
    pub pid: u32,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl OpencodeServer {
    /// Everything the server printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sends `signal` to the server's process group (e.g. `libc::SIGSTOP`).
    pub fn signal(&self, signal: i32) {
        if self.child.is_some() {
            // SAFETY: kill(2) on our own child's group.
            unsafe { libc::kill(-(self.pid as libc::pid_t), signal) };
        }
    }

    /// Kills the server's process group with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's group; SIGCONT first so a
            // stopped group dies at once.
            unsafe {
                libc::kill(-(self.pid as libc::pid_t), libc::SIGKILL);
                libc::kill(-(self.pid as libc::pid_t), libc::SIGCONT);
            }
            let _ = child.wait();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for OpencodeServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies a child's output into `log`, forwarding each line to `lines`.
fn drain(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Ok(mut log) = log.lock() {
                log.push_str(&text);
            }
            if let Some(tx) = &lines {
                let _ = tx.send(text.trim_end().to_string());
            }
            line.clear();
        }
    })
}

/// An HTTP agent for tests: no TLS, statuses not turned into errors, and a
/// bound on every call.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Calls `check` until it returns `Some`, or panics after `timeout` saying
/// what was awaited. For state that only polling can observe (a record on
/// disk, a message the server stores asynchronously).
pub fn poll_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

impl TestBed {
    /// Pids of live `opencode serve` processes whose environment carries
    /// this bed's marker: what a test expects to be exactly its own servers.
    pub fn opencode_pids(&self) -> Vec<u32> {
        let marker = format!("{TEST_ID_VAR}={}", self.test_id);
        marked_pids(&marker)
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
                    cmd.split(|&b| b == 0).any(|arg| arg == b"serve")
                        && String::from_utf8_lossy(&cmd).contains("opencode")
                })
            })
            .collect()
    }
}

/// The target folder and profile folder of this test executable.
pub fn target_and_profile() -> (PathBuf, PathBuf, String) {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("the target folder")
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(OsStr::to_str)
        .expect("a profile folder name")
        .to_string();
    (target_dir, profile_dir, profile)
}

/// `cargo ARGS` for this workspace, with this test's target folder and
/// profile.
pub fn cargo(args: &[&str]) -> Command {
    let (target_dir, _, profile) = target_and_profile();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut command = Command::new(env!("CARGO"));
    command
        .args(args)
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    command
}

/// The `ocm` binary next to this test's executable, built once per run.
pub fn ocm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let output = cargo(&["build", "--quiet", "-p", "ocm"])
            .output()
            .expect("run cargo build -p ocm");
        assert!(
            output.status.success(),
            "cargo build -p ocm failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bin = target_and_profile().1.join("ocm");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// No single `ocm` call may take longer: the lock timeout (90 s) plus a
/// start is the worst legitimate case. [`ocm`] and [`ocm_with`] kill a call
/// that overruns it.
pub const OCM_DEADLINE: Duration = Duration::from_secs(150);

/// What one `ocm` call did, and how long it took.
#[derive(Debug)]
pub struct Run {
    /// The arguments it was given (for messages).
    pub args: Vec<String>,
    /// Its exit status; -1 when a signal ended it.
    pub code: i32,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// From its spawn until it exited.
    pub took: Duration,
}

impl Run {
    /// Asserts exit status 0.
    pub fn ok(self) -> Run {
        self.code(0)
    }

    /// Asserts the exit status, showing the whole run when it differs, and
    /// that it did not panic.
    pub fn code(self, expected: i32) -> Run {
        assert_eq!(
            self.code, expected,
            "ocm {:?}: unexpected exit status: {self:#?}",
            self.args
        );
        assert!(!self.stderr.contains("panicked"), "ocm panicked: {self:#?}");
        self
    }

    /// Stdout parsed as one JSON value; panics with the whole run when it
    /// is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self:#?}"))
    }
}

/// Runs `command` (an `ocm` call, possibly behind a wrapper such as
/// `setpriv`) with stdin closed and its output captured, bounded by
/// `deadline`: a call that overruns it is killed with SIGKILL and the test
/// panics. `args` names the call in messages.
pub fn run_bounded(mut command: Command, args: Vec<String>, deadline: Duration) -> Run {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = command.spawn().expect("start ocm");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(deadline) {
        Ok(output) => output.expect("wait for ocm"),
        Err(_) => {
            // Our own child, not reaped yet (its waiter has not returned),
            // so the pid is still its.
            send_signal(pid as libc::pid_t, libc::SIGKILL);
            let _ = waiter.join();
            panic!("ocm {args:?} did not finish within {deadline:?}");
        }
    };
    let took = started.elapsed();
    let _ = waiter.join();
    Run {
        args,
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took,
    }
}

/// Runs `ocm ARGS` in the bed's environment, in the bed's project folder,
/// bounded by [`OCM_DEADLINE`].
pub fn ocm<I, S>(bed: &TestBed, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    ocm_with(bed, args, &[])
}

/// [`ocm`] with `env` on top of the bed's environment.
pub fn ocm_with<I, S>(bed: &TestBed, args: I, env: &[(&str, &str)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    ocm_within(bed, args, env, OCM_DEADLINE)
}

/// [`ocm_with`] bounded by `deadline` instead of [`OCM_DEADLINE`].
pub fn ocm_within<I, S>(bed: &TestBed, args: I, env: &[(&str, &str)], deadline: Duration) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut command = bed.command(ocm_bin());
    command
        .args(&args)
        .envs(env.iter().copied())
        .current_dir(&bed.project);
    let args = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    run_bounded(command, args, deadline)
}

/// A new project folder in the bed, named after `name`, whose deterministic
/// port (and the next one, where a taken port sends the server) is free now
/// and not handed out to another test of this test binary, so parallel
/// tests do not meet on a port. Returns the folder and its port.
pub fn fresh_project(bed: &TestBed, name: &str) -> (PathBuf, u16) {
    for attempt in 0..200 {
        let dir = bed.new_project(&format!("{name}-{attempt}"));
        if let Some(port) = claim_project_port(&dir) {
            return (dir, port);
        }
    }
    panic!("no project folder with a free port found in 200 tries");
}

/// Claims the deterministic port of the project folder `dir` and the next
/// one for this test binary: `Some(port)` when neither was claimed before
/// and both are free now.
fn claim_project_port(dir: &Path) -> Option<u16> {
    static CLAIMED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let port = portmap::port_for_project(dir).expect("the project's port");
    let next = if port == portmap::PROJECT_PORT_BASE + portmap::PROJECT_PORT_SPAN - 1 {
        portmap::PROJECT_PORT_BASE
    } else {
        port + 1
    };
    let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
    if claimed.contains(&port) || claimed.contains(&next) {
        return None;
    }
    if portmap::is_port_free("127.0.0.1", port) && portmap::is_port_free("127.0.0.1", next) {
        claimed.extend([port, next]);
        return Some(port);
    }
    None
}

/// Every file under `dir`, recursively (none when it cannot be read).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

/// `path` as text; the bed's temp paths are UTF-8.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// The `pid` of an `ocm --json` answer; panics showing the answer when it
/// has none.
pub fn pid_of(value: &serde_json::Value) -> u32 {
    value["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid in {value}")) as u32
}

/// A [`manager::Manager`] whose servers live in the bed: its state folder,
/// its isolated HOME and XDG folders, its mock model and its cleanup
/// marker; `configure` changes the rest of the configuration.
pub fn manager_in(bed: &TestBed, configure: impl FnOnce(&mut manager::Config)) -> manager::Manager {
    let mut config = manager::Config {
        opencode_bin: Some(opencode_bin()),
        state_root: Some(bed.state_dir.clone()),
        env_set: bed.child_env(),
        ..manager::Config::default()
    };
    configure(&mut config);
    manager::Manager::new(config).expect("a valid configuration")
}
