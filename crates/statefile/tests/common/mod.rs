//! Shared test support: sample records that check themselves, and child
//! processes that re-execute the test binary in a "child role".
//!
//! A test binary that spawns children defines
//! `#[test] #[ignore] fn child_role() { common::child_main() }`; the parent
//! runs `<own exe> child_role --exact --ignored --nocapture` with
//! `STATEFILE_TEST_ROLE` and the role's parameters in the environment.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use statefile::Error;

mod record;
pub use record::{RecordStatus, SCHEMA_VERSION, ServerRecord, read_record};

/// The env var that selects the role of a child process.
pub const ROLE_VAR: &str = "STATEFILE_TEST_ROLE";

/// Generous upper bound for anything a child is asked to do.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// A record whose every field is derived from `n`, with a payload of about
/// `payload` bytes, so that a mix of two records is detected by
/// [`check_record`] even if it happened to parse.
pub fn sample_record(n: u64, payload: usize) -> ServerRecord {
    let unit = format!("{n:x}.");
    let repeats = payload / unit.len() + 1;
    ServerRecord {
        schema_version: SCHEMA_VERSION,
        project_path: PathBuf::from(format!("/projects/p{n}")),
        project_hash: format!("{n:032x}"),
        pid: (n % u64::from(u32::MAX)) as u32,
        start_time: n.wrapping_mul(31),
        boot_id: format!("boot-{n}"),
        port: 28000 + (n % 1000) as u16,
        hostname: "127.0.0.1".into(),
        url: format!("http://127.0.0.1:{}", 28000 + n % 1000),
        status: RecordStatus::Running,
        log_path: PathBuf::from(format!("/state/{n}/server.log")),
        started_at: "2026-11-21T10:00:00.123Z".into(),
        last_health_check: Some(format!("n={n}")),
        opencode_version: Some(unit.repeat(repeats)),
        opencode_bin: PathBuf::from("/bin/opencode"),
        auth: false,
    }
}

/// Recovers `n` from a record written by [`sample_record`] and checks that
/// every field agrees with it.
pub fn check_record(record: &ServerRecord) -> Result<u64, String> {
    let n_text = record
        .last_health_check
        .as_deref()
        .and_then(|s| s.strip_prefix("n="))
        .ok_or_else(|| format!("no n in {:?}", record.last_health_check))?;
    let n: u64 = n_text
        .parse()
        .map_err(|e| format!("bad n {n_text:?}: {e}"))?;
    let payload_len = record.opencode_version.as_ref().map_or(0, String::len);
    let unit_len = format!("{n:x}.").len();
    let expected = sample_record(n, payload_len.saturating_sub(unit_len));
    if *record == expected {
        Ok(n)
    } else {
        Err(format!("record for n={n} has mixed fields"))
    }
}

/// Reads the record, which must exist and be consistent; returns its `n`.
pub fn read_valid(path: &Path) -> Result<u64, String> {
    match read_record(path) {
        Ok(Some(record)) => check_record(&record),
        Ok(None) => Err(format!("{} is missing", path.display())),
        Err(err) => Err(format!("read error: {err}")),
    }
}

/// A small xorshift generator with a fixed seed, so that every run makes the
/// same choices; tests print the seed with their results.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift never leaves zero.
        Rng(seed | 1)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// A child process running this test binary in a role. Killed and reaped on
/// drop, also when the test panics; its stdin is a pipe whose closing tells
/// long-running roles to exit, so nothing outlives the test.
pub struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    seen: Vec<String>,
    reaped: bool,
}

impl ChildProc {
    pub fn spawn(role: &str, env: &[(&str, String)]) -> ChildProc {
        let exe = std::env::current_exe().expect("current exe");
        let mut command = Command::new(exe);
        command
            .args(["child_role", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads=1"])
            .env(ROLE_VAR, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn child test process");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProc {
            child,
            stdin,
            lines: rx,
            reader: Some(reader),
            seen: Vec::new(),
            reaped: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for an output line containing `marker` and returns it.
    pub fn wait_for_line(&mut self, marker: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(marker) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {marker:?} from child within {timeout:?}; output: {:?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("child ended without {marker:?}; output: {:?}", self.seen)
                }
            }
        }
    }

    /// Waits (at most `timeout`) for the child to end by itself; returns its
    /// status and all its output lines.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "child did not finish within {timeout:?}; output: {:?}",
                        self.seen
                    )
                }
            }
        }
        // stdout is closed: the process is exiting, wait returns promptly.
        let status = self.child.wait().expect("wait for child");
        self.reaped = true;
        (status, std::mem::take(&mut self.seen))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for killed child");
        self.reaped = true;
        status
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.stdin.take();
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| panic!("child needs {name}")))
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("child needs {name}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Exits the child when the parent closes our stdin (the parent's drop
/// guard, or the parent dying): no child outlives its test.
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Entry point of the child roles. Without the role variable (a plain
/// `cargo test -- --ignored` run) it only says so.
pub fn child_main() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        println!("child_role is started by the other tests with {ROLE_VAR} set");
        return;
    };
    exit_when_stdin_closes();
    match role.as_str() {
        // Writes and reads the shared record ITER times; every read must be
        // a complete, consistent record.
        "write-read" => {
            let path = env_path("RECORD");
            let id = env_u64("ID");
            let iterations = env_u64("ITER");
            let payload = env_u64("PAYLOAD") as usize;
            for i in 0..iterations {
                statefile::write_atomic(&path, &sample_record(id * 1_000_000 + i, payload))
                    .unwrap_or_else(|e| panic!("write failed: {e}"));
                if let Err(problem) = read_valid(&path) {
                    panic!("child {id} iteration {i}: {problem}");
                }
            }
            say(&format!("DONE id={id} iterations={iterations}"));
        }
        // Writes big records without end until killed, saying `WROTE <count>`
        // after each complete write. The records are serialized once up front
        // (as write_atomic does) so that the time goes to the file operations
        // a kill should interrupt.
        "endless-writer" => {
            let path = env_path("RECORD");
            let payload = env_u64("PAYLOAD") as usize;
            let records: Vec<Vec<u8>> = (1..=4)
                .map(|n| {
                    let mut bytes =
                        serde_json::to_vec_pretty(&sample_record(n, payload)).expect("serialize");
                    bytes.push(b'\n');
                    bytes
                })
                .collect();
            say("WRITER-STARTED");
            for (count, bytes) in (1u64..).zip(records.iter().cycle()) {
                statefile::write_private(&path, bytes)
                    .unwrap_or_else(|e| panic!("write failed: {e}"));
                say(&format!("WROTE {count}"));
            }
        }
        // ITER critical sections under the lock: a journal line at entry and
        // at exit, and a read-modify-write of a counter.
        "lock-counter" => {
            let lock = env_path("LOCK");
            let counter = env_path("COUNTER");
            let journal = env_path("JOURNAL");
            let id = env_u64("ID");
            for _ in 0..env_u64("ITER") {
                let guard = statefile::lock(&lock, CHILD_DEADLINE).expect("lock");
                append(&journal, &format!("B {id}\n"));
                let value: u64 = std::fs::read_to_string(&counter)
                    .expect("read counter")
                    .trim()
                    .parse()
                    .expect("counter is a number");
                std::thread::yield_now();
                std::fs::write(&counter, format!("{}\n", value + 1)).expect("write counter");
                append(&journal, &format!("E {id}\n"));
                drop(guard);
            }
            say(&format!("DONE id={id}"));
        }
        // The lock is held by the parent: lock() must time out with the
        // right error.
        "lock-expect-timeout" => {
            let lock = env_path("LOCK");
            let timeout = Duration::from_millis(env_u64("TIMEOUT_MS"));
            match statefile::lock(&lock, timeout) {
                Err(err @ Error::LockTimeout { .. }) => {
                    let Error::LockTimeout { path, waited } = &err else {
                        unreachable!()
                    };
                    assert_eq!(path, &lock);
                    assert!(*waited >= timeout, "waited {waited:?} < {timeout:?}");
                    say(&format!("TIMEOUT-ERROR {err}"));
                }
                Err(other) => panic!("expected LockTimeout, got {other:?}"),
                Ok(_) => panic!("got the lock although the parent holds it"),
            }
        }
        // Waits for the parent to release the START file, then takes the
        // lock ITER times, holding it HOLD_MIN_MS..=HOLD_MAX_MS each time
        // (the work of a command), and reports each wait: `GOT id wait_ms`
        // or `TIMEOUT id wait_ms`.
        "lock-fair" => {
            let lock = env_path("LOCK");
            let id = env_u64("ID");
            let (min, max) = (env_u64("HOLD_MIN_MS"), env_u64("HOLD_MAX_MS"));
            let timeout = Duration::from_millis(env_u64("TIMEOUT_MS"));
            let start = std::fs::File::open(env_path("START")).expect("open START");
            say("READY");
            start.lock_shared().expect("wait for the start");
            drop(start);
            let mut rng = Rng::new(0xFA1 + id);
            for _ in 0..env_u64("ITER") {
                let asked = Instant::now();
                match statefile::lock(&lock, timeout) {
                    Ok(guard) => {
                        let waited = asked.elapsed().as_millis();
                        std::thread::sleep(Duration::from_millis(min + rng.below(max - min + 1)));
                        drop(guard);
                        say(&format!("GOT {id} {waited}"));
                    }
                    Err(Error::LockTimeout { waited, .. }) => {
                        say(&format!("TIMEOUT {id} {}", waited.as_millis()));
                    }
                    Err(other) => panic!("lock failed: {other}"),
                }
            }
            say(&format!("DONE id={id}"));
        }
        // Waits for the lock (TIMEOUT_MS), says `GOT <ms waited>` and exits,
        // releasing it.
        "lock-wait" => {
            let lock = env_path("LOCK");
            let asked = Instant::now();
            let timeout = Duration::from_millis(env_u64("TIMEOUT_MS"));
            let guard = statefile::lock(&lock, timeout).expect("lock");
            say(&format!("GOT {}", asked.elapsed().as_millis()));
            drop(guard);
        }
        // Takes the lock and holds it until killed or stdin closes.
        "lock-hold" => {
            let lock = env_path("LOCK");
            let _guard = statefile::lock(&lock, CHILD_DEADLINE).expect("lock");
            say("LOCKED");
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown child role {other:?}"),
    }
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open journal");
    file.write_all(text.as_bytes()).expect("append journal");
}
