//! End-to-end tests of the `ocm` binary against the real opencode: one
//! server per project, found again, repaired when it is dead, hung or its
//! record is corrupt, never touching what is not ocm's, and cleaned up
//! without leftovers.
//!
//! Each test has its own [`TestBed`] (state folder, HOME, XDG folders, mock
//! model), so the tests run in parallel. The `ocm` binary is built once per
//! run with the same cargo, profile and target folder as this test.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use e2e::{
    Run, TestBed, e2e_skipped, fresh_project, ocm, ocm_bin, ocm_with, path_str, pid_of, poll_until,
};
use procutil::ProcessIdentity;
use serde_json::Value;

/// How long init may take to reap a server ocm stopped (it is init's child
/// once the `ocm up` that spawned it has exited).
const REAP_DEADLINE: Duration = Duration::from_secs(30);
/// The health timeout ocm uses by default (manager::Config).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The state of a process (`R`, `S`, `T`, `Z`, ...) and its start time, or
/// `None` when the pid does not exist.
fn proc_state(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

/// Waits until the identified process is gone and reaped: no process, or
/// the pid belongs to another process. A zombie does not count as gone.
fn assert_reaped(identity: &ProcessIdentity) {
    poll_until(
        REAP_DEADLINE,
        &format!("pid {} to be reaped (no zombie)", identity.pid),
        || match proc_state(identity.pid) {
            None => Some(()),
            Some((_, start)) if start != identity.start_time => Some(()),
            Some(_) => None,
        },
    );
}

/// Sends SIGCONT and SIGKILL to a server's group on drop, unless it is gone
/// (a test that stops a server with SIGSTOP must not leave it stopped).
struct ServerGuard(ProcessIdentity);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if self.0.is_alive() {
            let pid = self.0.pid as libc::pid_t;
            // A group we verified is still the server's.
            e2e::send_signal(-pid, libc::SIGKILL);
            e2e::send_signal(-pid, libc::SIGCONT);
        }
    }
}

/// Kills and reaps a child of the test on drop.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ocm logs -f` running in the background, its stdout lines on a channel.
struct Follower {
    child: ChildGuard,
    lines: mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn start(bed: &TestBed, project: &Path) -> Follower {
        let mut child = bed
            .command(ocm_bin())
            .args(["logs", path_str(project), "-f", "-n", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ocm logs -f");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower {
            child: ChildGuard(child),
            lines,
            reader: Some(reader),
        }
    }

    /// Waits for a line containing `needle`; panics with what came instead.
    fn expect_line(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(line) => seen.push(line),
                Err(_) => panic!("ocm logs -f never printed {needle:?}; it printed {seen:?}"),
            }
        }
    }

    /// Ctrl-C: ends it with SIGINT; returns how it ended.
    fn interrupt(mut self) -> std::process::ExitStatus {
        // Our own child, not yet reaped.
        e2e::send_signal(self.child.0.id() as libc::pid_t, libc::SIGINT);
        let status = self.child.0.wait().expect("wait for ocm logs -f");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Starts the server with `ocm up --json` and returns its JSON.
fn up(bed: &TestBed, project: &Path) -> Value {
    ocm(bed, ["up", path_str(project), "--json"]).ok().json()
}

/// The keys the README promises in JSON output: the list ocm's own tests
/// and the tidy check use, not a copy of it.
#[path = "../../crates/ocm/src/json_keys.rs"]
#[allow(dead_code)]
mod json_keys;
use json_keys::{COMMON_KEYS, EXTRA_KEYS};

/// Asserts that `value` reports on `project` with all of [`COMMON_KEYS`].
fn assert_reports_on(value: &Value, project: &str) {
    for key in COMMON_KEYS {
        assert!(value.get(key).is_some(), "{key} missing: {value}");
    }
    assert_eq!(value["project"], project, "{value}");
}

/// Asserts that `value`, the `--json` output of `command`, has the keys
/// [`EXTRA_KEYS`] promises for it.
fn assert_extra_keys(command: &str, value: &Value) {
    let (_, keys) = EXTRA_KEYS
        .iter()
        .find(|(name, _)| *name == command)
        .unwrap_or_else(|| panic!("EXTRA_KEYS has no row for {command}"));
    for key in *keys {
        assert!(
            value.get(key).is_some(),
            "{command}: {key} missing: {value}"
        );
    }
}

fn identity(pid: u32) -> ProcessIdentity {
    ProcessIdentity::of(pid).unwrap_or_else(|e| panic!("pid {pid} is not running: {e}"))
}

#[test]
fn up_reuses_the_server_and_everyday_commands_work() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (project, project_port) = fresh_project(&bed, "everyday");
    let p = path_str(&project);

    // Nothing runs yet: url and status never start anything.
    let url = ocm(&bed, ["url", p]).code(3);
    assert!(url.stdout.is_empty(), "{url:#?}");
    assert!(url.stderr.contains("no server is running"), "{url:#?}");
    let status = ocm(&bed, ["status", p, "--json"]).code(3).json();
    assert_eq!(status["status"], "stopped", "{status}");
    assert!(bed.opencode_pids().is_empty());

    let first = up(&bed, &project);
    assert_eq!(first["reused"], false, "{first}");
    assert_eq!(first["healthy"], true, "{first}");
    assert_eq!(first["project"], p, "{first}");
    let pid = pid_of(&first);
    let port = first["port"].as_u64().expect("port") as u16;
    let server_url = first["url"].as_str().expect("url").to_string();
    assert_eq!(port, project_port, "{first}");
    assert_eq!(server_url, format!("http://127.0.0.1:{port}"));
    for key in ["status", "startedAt", "logPath"] {
        assert!(!first[key].is_null(), "{key} missing: {first}");
    }
    let server = identity(pid);

    // The second `up` finds the same server.
    let second = up(&bed, &project);
    assert_eq!(second["reused"], true, "{second}");
    assert_eq!(pid_of(&second), pid);
    assert_eq!(second["url"], server_url.as_str());
    let human = ocm(&bed, ["up", p]).ok();
    assert!(
        human
            .stdout
            .starts_with(&format!("running at {server_url} (pid {pid})")),
        "{human:#?}"
    );
    assert_eq!(bed.opencode_pids(), vec![pid]);

    // port, url, status.
    let printed_port = ocm(&bed, ["port", p]).ok();
    assert_eq!(printed_port.stdout.trim(), port.to_string());
    assert_eq!(ocm(&bed, ["url", p]).ok().stdout.trim(), server_url);
    let status = ocm(&bed, ["status", p, "--json"]).ok().json();
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(pid_of(&status), pid);
    let block = ocm(&bed, ["status", p]).ok().stdout;
    assert!(block.contains("running (healthy)"), "{block}");
    assert!(block.contains(&server_url), "{block}");

    // --json of port and url: the same status object, plus (port) the
    // deterministic port and the hash.
    let port_json = ocm(&bed, ["port", p, "--json"]).ok().json();
    assert_reports_on(&port_json, p);
    assert_extra_keys("port", &port_json);
    assert_eq!(port_json["status"], "running", "{port_json}");
    assert_eq!(port_json["port"], port, "{port_json}");
    assert_eq!(port_json["projectPort"], project_port, "{port_json}");
    assert_eq!(
        port_json["projectHash"],
        portmap::project_hash(&project).expect("hash").as_str(),
        "{port_json}"
    );
    assert_eq!(pid_of(&port_json), pid);
    let url_json = ocm(&bed, ["url", p, "--json"]).ok().json();
    assert_reports_on(&url_json, p);
    assert_eq!(url_json["url"], server_url.as_str(), "{url_json}");
    assert_eq!(pid_of(&url_json), pid);

    // exec: the server's environment, the command's exit status.
    let echoed = ocm(&bed, ["exec", p, "--", "sh", "-c", "echo $OPENCODE_SERVER"]).ok();
    assert_eq!(echoed.stdout.trim(), server_url, "{echoed:#?}");
    ocm(&bed, ["exec", p, "--", "sh", "-c", "exit 7"]).code(7);
    let missing = ocm(&bed, ["exec", p, "--", "/nonexistent/command"]).code(127);
    assert!(missing.stderr.contains("cannot run"), "{missing:#?}");

    // logs: the server's own output.
    let logs = ocm(&bed, ["logs", p, "-n", "5"]).ok();
    let lines: Vec<&str> = logs.stdout.lines().collect();
    assert!(!lines.is_empty() && lines.len() <= 5, "{logs:#?}");
    let listening = format!("opencode server listening on {server_url}");
    assert!(lines.contains(&listening.as_str()), "{logs:#?}");
    let one = ocm(&bed, ["logs", p, "-n", "1"]).ok();
    assert_eq!(one.stdout.lines().count(), 1, "{one:#?}");
    let logs_json = ocm(&bed, ["logs", p, "--json"]).ok().json();
    assert_reports_on(&logs_json, p);
    assert_extra_keys("logs", &logs_json);
    assert_eq!(logs_json["status"], "running", "{logs_json}");
    assert_eq!(pid_of(&logs_json), pid);
    assert!(
        logs_json["lines"]
            .as_array()
            .is_some_and(|l| l.iter().any(|line| line == listening.as_str())),
        "{logs_json}"
    );

    // ls: an array with the project.
    let listed = ocm(&bed, ["ls", "--json"]).ok().json();
    let entries = listed.as_array().expect("ls --json is an array");
    let entry = entries
        .iter()
        .find(|e| e["project"] == p)
        .unwrap_or_else(|| panic!("the project is not listed: {listed}"));
    assert_eq!(entry["status"], "running", "{entry}");
    assert_eq!(pid_of(entry), pid);

    // down: no opencode process left, and no zombie.
    let down = ocm(&bed, ["down", p]).ok();
    assert!(down.stdout.starts_with("stopped the server"), "{down:#?}");
    assert!(!server.is_alive(), "pid {pid} still runs after ocm down");
    assert!(bed.opencode_pids().is_empty(), "{:?}", bed.opencode_pids());
    assert_reaped(&server);
    let again = ocm(&bed, ["down", p, "--json"]).ok().json();
    assert_eq!(again["wasRunning"], false, "{again}");
    assert_eq!(again["status"], "stopped", "{again}");
    let again = ocm(&bed, ["down", p]).ok();
    assert!(again.stdout.contains("not running"), "{again:#?}");
    ocm(&bed, ["url", p]).code(3);
    let status = ocm(&bed, ["status", p]).code(3);
    assert!(status.stdout.contains("stopped"), "{status:#?}");
    let port_json = ocm(&bed, ["port", p, "--json"]).ok().json();
    assert_reports_on(&port_json, p);
    assert_eq!(port_json["status"], "stopped", "{port_json}");
    assert_eq!(port_json["projectPort"], project_port, "{port_json}");

    // gc removes the stopped project's state.
    let state = statefile::ProjectPaths::new(
        &bed.state_dir,
        &portmap::project_hash(&project).expect("hash"),
    )
    .dir;
    assert!(state.is_dir());
    let gc = ocm(&bed, ["gc", "--json"]).ok().json();
    assert_extra_keys("gc", &gc);
    let removed = gc["removed"]
        .as_array()
        .and_then(|r| r.iter().find(|e| e["stateDir"] == path_str(&state)))
        .unwrap_or_else(|| panic!("gc did not report removing {}: {gc}", state.display()));
    assert_reports_on(removed, p);
    assert_eq!(removed["status"], "stopped", "{removed}");
    assert!(!state.exists(), "{} survived gc", state.display());
    assert_eq!(
        ocm(&bed, ["ls", "--json"]).ok().json(),
        Value::Array(vec![])
    );
}

#[test]
fn a_project_folder_that_does_not_exist_is_said_so() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    // Nothing recorded: status and url say so (exit 3); up, restart and
    // exec refuse it as bad usage (exit 2). None suggests `ocm up`.
    let never = bed.root().join("never-created");
    let n = path_str(&never);
    for args in [["status", n], ["url", n]] {
        let run = ocm(&bed, args).code(3);
        assert!(run.stdout.is_empty(), "{run:#?}");
        assert!(run.stderr.contains("does not exist"), "{run:#?}");
        assert!(!run.stderr.contains("ocm up"), "{run:#?}");
    }
    let json = ocm(&bed, ["status", n, "--json"]).code(3).json();
    assert_eq!(json["exitCode"], 3, "{json}");
    assert!(
        json["error"].as_str().is_some_and(|e| e.contains(n)),
        "{json}"
    );
    for args in [
        vec!["up", n],
        vec!["restart", n],
        vec!["exec", n, "--", "true"],
    ] {
        let run = ocm(&bed, &args).code(2);
        assert!(run.stderr.contains("does not exist"), "{run:#?}");
        assert!(run.stderr.contains("hint: "), "{run:#?}");
    }
    assert!(!never.exists(), "ocm created {n}");

    // A server whose folder is deleted while it runs: shown, with a note;
    // gc reports it and leaves it running.
    let (project, _) = fresh_project(&bed, "deleted");
    let p = path_str(&project);
    let pid = pid_of(&up(&bed, &project));
    let server = identity(pid);
    std::fs::remove_dir_all(&project).expect("delete the project folder");
    let status = ocm(&bed, ["status", p]).ok();
    assert!(status.stdout.contains("running (healthy)"), "{status:#?}");
    assert!(status.stderr.contains("no longer exists"), "{status:#?}");
    let url = ocm(&bed, ["url", p]).ok();
    assert!(url.stdout.starts_with("http://127.0.0.1:"), "{url:#?}");
    assert!(url.stderr.contains("no longer exists"), "{url:#?}");
    let json = ocm(&bed, ["status", p, "--json"]).ok().json();
    assert_reports_on(&json, p);
    assert_eq!(json["projectExists"], false, "{json}");
    assert_eq!(pid_of(&json), pid);
    let gc = ocm(&bed, ["gc", "--json"]).ok().json();
    let gone = gc["projectGone"]
        .as_array()
        .and_then(|g| g.iter().find(|e| e["project"] == p))
        .unwrap_or_else(|| panic!("gc did not report the deleted project: {gc}"));
    assert_reports_on(gone, p);
    assert_eq!(pid_of(gone), pid);
    assert!(gone["stateDir"].is_string(), "{gone}");
    assert_eq!(bed.opencode_pids(), vec![pid], "gc left the server running");

    // Stopped, its record is still there: shown as stopped, and the hint
    // is to clean up, not to start it.
    ocm(&bed, ["down", p]).ok();
    assert_reaped(&server);
    let status = ocm(&bed, ["status", p]).code(3);
    assert!(status.stdout.contains("stopped"), "{status:#?}");
    assert!(status.stderr.contains("no longer exists"), "{status:#?}");
    let url = ocm(&bed, ["url", p]).code(3);
    assert!(url.stderr.contains("ocm destroy"), "{url:#?}");
    assert!(!url.stderr.contains("ocm up"), "{url:#?}");
    ocm(&bed, ["destroy", p]).ok();
    let status = ocm(&bed, ["status", p]).code(3);
    assert!(status.stderr.contains("does not exist"), "{status:#?}");
    assert!(bed.opencode_pids().is_empty());
}

#[test]
fn sixteen_simultaneous_ups_start_one_server() {
    if e2e_skipped() {
        return;
    }
    let bed = Arc::new(TestBed::new());
    let (project, _) = fresh_project(&bed, "crowd");
    ocm_bin();
    const CALLERS: usize = 16;
    let barrier = Arc::new(Barrier::new(CALLERS));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let bed = Arc::clone(&bed);
            let barrier = Arc::clone(&barrier);
            let project = project.clone();
            std::thread::spawn(move || {
                barrier.wait();
                ocm(&bed, ["up", path_str(&project), "--json"])
            })
        })
        .collect();
    let runs: Vec<Run> = callers
        .into_iter()
        .map(|c| c.join().expect("a caller thread"))
        .collect();
    let answers: Vec<Value> = runs.into_iter().map(|r| r.ok().json()).collect();
    let url = answers[0]["url"].clone();
    assert!(url.is_string(), "{}", answers[0]);
    for answer in &answers {
        assert_eq!(answer["url"], url, "{answer}");
        assert_eq!(answer["pid"], answers[0]["pid"], "{answer}");
    }
    let started = answers.iter().filter(|a| a["reused"] == false).count();
    assert_eq!(
        started, 1,
        "exactly one caller starts the server: {answers:?}"
    );
    let pid = pid_of(&answers[0]);
    assert_eq!(bed.opencode_pids(), vec![pid]);
    let server = identity(pid);

    // destroy: the server is stopped and no state is left.
    let state = statefile::ProjectPaths::new(
        &bed.state_dir,
        &portmap::project_hash(&project).expect("hash"),
    )
    .dir;
    assert!(state.is_dir());
    let destroyed = ocm(&bed, ["destroy", path_str(&project), "--json"])
        .ok()
        .json();
    assert_eq!(destroyed["wasRunning"], true, "{destroyed}");
    assert_eq!(destroyed["removed"], path_str(&state), "{destroyed}");
    assert!(!state.exists(), "{} survived destroy", state.display());
    assert!(bed.opencode_pids().is_empty());
    assert_reaped(&server);
}

#[test]
fn dead_and_hung_servers_are_replaced() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (project, _) = fresh_project(&bed, "repair");
    let p = path_str(&project);

    // Killed with SIGKILL: status says dead, up starts a new one.
    let first = pid_of(&up(&bed, &project));
    let first_identity = identity(first);
    // Someone follows the log meanwhile.
    let follower = Follower::start(&bed, &project);
    // The server this test just started (verified alive).
    e2e::send_signal(first as libc::pid_t, libc::SIGKILL);
    poll_until(Duration::from_secs(10), "the killed server to die", || {
        (!first_identity.is_alive()).then_some(())
    });
    let status = ocm(&bed, ["status", p, "--json"]).code(3).json();
    assert_eq!(status["status"], "dead", "{status}");
    let second_run = ocm(&bed, ["up", p, "--json"]).ok();
    assert!(second_run.stderr.contains("had died"), "{second_run:#?}");
    let second = second_run.json();
    assert_eq!(second["reused"], false, "{second}");
    let second_url = second["url"].as_str().expect("url").to_string();
    let second = pid_of(&second);
    assert_ne!(second, first);
    assert_eq!(bed.opencode_pids(), vec![second]);
    // The follower saw the new server start, and Ctrl-C ends it.
    follower.expect_line(&format!("opencode server listening on {second_url}"));
    let ended = follower.interrupt();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(ended.signal(), Some(libc::SIGINT), "{ended:?}");
    }

    // Stopped with SIGSTOP: the port is open but nothing answers.
    let hung = ServerGuard(identity(second));
    // The group of the server this test started.
    e2e::send_signal(-(second as libc::pid_t), libc::SIGSTOP);
    poll_until(Duration::from_secs(10), "the server to be stopped", || {
        matches!(proc_state(second), Some(('T', _))).then_some(())
    });
    let status = ocm(&bed, ["status", p, "--json"]).code(3).json();
    assert_eq!(status["status"], "unhealthy", "{status}");
    let start_timeout = Duration::from_secs(20);
    let began = Instant::now();
    let third_run = ocm(
        &bed,
        [
            "up",
            p,
            "--json",
            "--timeout",
            &start_timeout.as_secs().to_string(),
        ],
    )
    .ok();
    let took = began.elapsed();
    assert!(third_run.stderr.contains("unhealthy"), "{third_run:#?}");
    let third = third_run.json();
    assert_eq!(third["reused"], false, "{third}");
    let third = pid_of(&third);
    assert_ne!(third, second);
    // A generous bound: one health timeout to find it hung, at most the stop
    // grace (5 s) to end it, one start.
    let bound = HEALTH_TIMEOUT + Duration::from_secs(5) + start_timeout;
    assert!(
        took < bound,
        "replacing a hung server took {took:?} (bound {bound:?})"
    );
    assert!(!hung.0.is_alive(), "the hung server {second} still exists");
    assert_eq!(bed.opencode_pids(), vec![third]);
    assert_reaped(&hung.0);
}

#[test]
fn a_recorded_pid_of_another_program_is_never_signalled() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (project, project_port) = fresh_project(&bed, "foreign-pid");
    let p = path_str(&project);
    // A session leader with ocm's state folder in its environment: only the
    // project marker tells it from a server of this project.
    let sleeper = bed
        .command("setsid")
        .args(["sleep", "300"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start setsid sleep");
    let sleeper = ChildGuard(sleeper);
    let pid = sleeper.0.id();
    let sleep_identity = poll_until(Duration::from_secs(10), "sleep to run", || {
        let identity = ProcessIdentity::of(pid).ok()?;
        let cmdline = procutil::cmdline(pid).ok()?;
        (cmdline.first().is_some_and(|c| c.ends_with("sleep"))).then_some(identity)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let session: u32 = stat[stat.rfind(')').expect("stat") + 1..]
        .split_whitespace()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .expect("session id");
    assert_eq!(session, pid, "the sleep should lead its own session");

    let hash = portmap::project_hash(&project).expect("hash");
    let paths = statefile::ProjectPaths::new(&bed.state_dir, &hash);
    let record = manager::ServerRecord {
        schema_version: manager::SCHEMA_VERSION,
        project_path: project.clone(),
        project_hash: hash.clone(),
        pid,
        start_time: sleep_identity.start_time,
        boot_id: sleep_identity.boot_id.clone(),
        port: project_port,
        hostname: "127.0.0.1".into(),
        url: format!("http://127.0.0.1:{project_port}"),
        status: manager::RecordStatus::Running,
        log_path: paths.log.clone(),
        started_at: statefile::rfc3339_now(),
        last_health_check: None,
        opencode_version: Some(e2e::OPENCODE_VERSION.into()),
        opencode_bin: e2e::opencode_bin(),
        auth: false,
        desired: manager::Desired::Up,
        nonce: None,
        extra: Default::default(),
    };
    statefile::ensure_dir(&paths.dir).expect("state folder");
    statefile::write_atomic(&paths.record, &record).expect("write the record");

    let status = ocm(&bed, ["status", p, "--json"]).code(3).json();
    assert_eq!(status["status"], "dead", "{status}");
    assert!(
        status["detail"]
            .as_str()
            .is_some_and(|d| d.contains("another program")),
        "{status}"
    );

    let down = ocm(&bed, ["down", p, "--json"]).ok();
    assert!(down.stderr.contains("left alone"), "{down:#?}");
    let down = down.json();
    assert_eq!(down["leftAlone"], pid, "{down}");
    assert_eq!(down["wasRunning"], false, "{down}");
    assert!(sleep_identity.is_alive(), "ocm down signalled the sleep");
    assert!(
        matches!(proc_state(pid), Some(('S', _))),
        "the sleep is not sleeping: {:?}",
        proc_state(pid)
    );

    // The same record once more, for `up`.
    statefile::write_atomic(&paths.record, &record).expect("write the record");
    let started = ocm(&bed, ["up", p, "--json"]).ok();
    assert!(started.stderr.contains("left it alone"), "{started:#?}");
    let server = pid_of(&started.json());
    assert_ne!(server, pid);
    assert_eq!(bed.opencode_pids(), vec![server]);
    assert!(sleep_identity.is_alive(), "ocm up signalled the sleep");
    ocm(&bed, ["down", p]).ok();
    assert!(sleep_identity.is_alive(), "ocm down signalled the sleep");
    assert!(matches!(proc_state(pid), Some(('S', _))));
}

#[test]
fn corrupt_records_are_moved_aside_and_up_succeeds() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (project, _) = fresh_project(&bed, "corrupt");
    let p = path_str(&project);
    let paths = statefile::ProjectPaths::new(
        &bed.state_dir,
        &portmap::project_hash(&project).expect("hash"),
    );
    up(&bed, &project);
    let good = std::fs::read(&paths.record).expect("the record");
    let mut future: Value = serde_json::from_slice(&good).expect("the record is JSON");
    future["schemaVersion"] = Value::from(99);
    future["somethingNew"] = Value::from("from a newer ocm");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("not JSON", b"\x00\xff this is not { JSON".to_vec()),
        (
            "wrong shape",
            br#"{"schemaVersion": 1, "pid": "twelve", "port": []}"#.to_vec(),
        ),
    ];
    for (kind, bytes) in cases {
        std::fs::write(&paths.record, &bytes).expect("write the bad record");
        // status reads it without panicking and without starting anything.
        let status = ocm(&bed, ["status", p, "--json"]).code(3).json();
        assert_eq!(status["status"], "dead", "{kind}: {status}");
        let run = ocm(&bed, ["up", p, "--json"]).ok();
        assert!(run.stderr.contains("moved it to"), "{kind}: {run:#?}");
        let answer = run.json();
        assert_eq!(answer["healthy"], true, "{kind}: {answer}");
        assert_eq!(
            bed.opencode_pids(),
            vec![pid_of(&answer)],
            "{kind}: exactly the new server runs"
        );
        let kept = std::fs::read_dir(&paths.dir)
            .expect("the state folder")
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("server.json.corrupt-")
            })
            .any(|e| std::fs::read(e.path()).is_ok_and(|b| b == bytes));
        assert!(
            kept,
            "{kind}: no server.json.corrupt-* holds the original bytes"
        );
        let record = manager::read_record(&paths.record)
            .expect("a good record again")
            .expect("a record");
        assert_eq!(record.pid, pid_of(&answer), "{kind}");
    }

    // A record from a newer ocm is not corrupt: this ocm refuses to judge
    // it (exit 1, with what to do), touches nothing and starts nothing.
    let newer = serde_json::to_vec(&future).expect("JSON");
    std::fs::write(&paths.record, &newer).expect("write the newer record");
    let running = bed.opencode_pids();
    assert_eq!(running.len(), 1, "{running:?}");
    let status = ocm(&bed, ["status", p, "--json"]).code(3).json();
    assert_eq!(status["status"], "dead", "{status}");
    let refused = ocm(&bed, ["up", p]).code(1);
    assert!(refused.stderr.contains("newer ocm"), "{refused:#?}");
    assert!(refused.stderr.contains("hint: "), "{refused:#?}");
    let json = ocm(&bed, ["up", p, "--json"]).code(1).json();
    assert_eq!(json["exitCode"], 1, "{json}");
    assert!(
        json["hint"].as_str().is_some_and(|h| h.contains("mv ")),
        "{json}"
    );
    ocm(&bed, ["down", p]).code(1);
    assert_eq!(
        std::fs::read(&paths.record).expect("the record is still there"),
        newer,
        "the newer record was changed"
    );
    assert_eq!(
        bed.opencode_pids(),
        running,
        "a server was started or stopped"
    );
    // Moved away as the hint says, this ocm takes over: `down` stops the
    // server the record no longer names.
    let aside = paths.record.with_extension("json.newer");
    std::fs::rename(&paths.record, &aside).expect("move the record away");
    let down = ocm(&bed, ["down", p, "--json"]).ok().json();
    assert_eq!(
        down["orphansStopped"],
        Value::from(running.clone()),
        "{down}"
    );
    assert!(bed.opencode_pids().is_empty());
    assert_eq!(std::fs::read(&aside).expect("the moved record"), newer);
}

#[test]
fn records_of_other_schema_versions_are_read_or_moved_aside() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (project, _) = fresh_project(&bed, "schemas");
    let p = path_str(&project);
    let paths = statefile::ProjectPaths::new(
        &bed.state_dir,
        &portmap::project_hash(&project).expect("hash"),
    );
    let first = up(&bed, &project);
    // A record as the previous ocm wrote it (schema 1, no `desired`), for
    // the server that runs: it is read and the server reused.
    let live: Value = serde_json::from_slice(&std::fs::read(&paths.record).expect("record"))
        .expect("the record is JSON");
    let fixture = include_str!("../../crates/manager/tests/fixtures/server-schema-1.json");
    let mut old: Value = serde_json::from_str(fixture).expect("the fixture is JSON");
    for key in [
        "projectPath",
        "projectHash",
        "pid",
        "startTime",
        "bootId",
        "port",
        "url",
        "logPath",
        "startedAt",
        "opencodeBin",
    ] {
        old[key] = live[key].clone();
    }
    assert_eq!(old["schemaVersion"], 1);
    assert!(old.get("desired").is_none());
    std::fs::write(
        &paths.record,
        serde_json::to_vec_pretty(&old).expect("JSON"),
    )
    .expect("write the schema-1 record");
    let again = up(&bed, &project);
    assert_eq!(again["reused"], true, "{again}");
    assert_eq!(pid_of(&again), pid_of(&first));

    // A record from a newer ocm whose server no longer runs: moved aside
    // (kept), and `up` starts a server.
    ocm(&bed, ["down", p]).ok();
    assert!(bed.opencode_pids().is_empty());
    let newer = br#"{"schemaVersion": 99, "pid": 1, "somethingNew": true}"#;
    std::fs::write(&paths.record, newer).expect("write the newer record");
    let run = ocm(&bed, ["up", p, "--json"]).ok();
    assert!(run.stderr.contains("newer ocm"), "{run:#?}");
    let started = run.json();
    assert_eq!(started["healthy"], true, "{started}");
    assert_eq!(bed.opencode_pids(), vec![pid_of(&started)]);
    let kept = std::fs::read_dir(&paths.dir)
        .expect("the state folder")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("server.json.newer-")
        })
        .any(|e| std::fs::read(e.path()).is_ok_and(|b| b == newer));
    assert!(kept, "no server.json.newer-* holds the newer record");
    ocm(&bed, ["down", p]).ok();
}

#[test]
fn a_foreign_listener_on_the_project_port_is_left_alone() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (project, project_port) = fresh_project(&bed, "taken-port");
    let p = path_str(&project);
    let listener = TcpListener::bind(("127.0.0.1", project_port)).expect("bind the project's port");
    let run = ocm(&bed, ["up", p, "--json"]).ok();
    assert!(
        run.stderr
            .contains(&format!("port {project_port} is taken")),
        "{run:#?}"
    );
    let answer = run.json();
    let port = answer["port"].as_u64().expect("port") as u16;
    assert_ne!(port, project_port, "{answer}");
    assert!(
        (portmap::PROJECT_PORT_BASE..portmap::PROJECT_PORT_BASE + portmap::PROJECT_PORT_SPAN)
            .contains(&port),
        "{answer}"
    );
    let status = ocm(&bed, ["status", p, "--json"]).ok().json();
    assert_eq!(status["port"], port, "{status}");
    assert_eq!(status["projectPort"], project_port, "{status}");
    assert_eq!(
        ocm(&bed, ["port", p]).ok().stdout.trim(),
        project_port.to_string()
    );
    // Found again on the recorded port.
    let again = up(&bed, &project);
    assert_eq!(again["reused"], true, "{again}");
    assert_eq!(again["port"], port, "{again}");

    // The listener still works.
    let _client = TcpStream::connect_timeout(
        &([127, 0, 0, 1], project_port).into(),
        Duration::from_secs(5),
    )
    .expect("connect to the foreign listener");
    listener.set_nonblocking(false).expect("blocking listener");
    let (_accepted, peer) = listener.accept().expect("accept a connection");
    assert!(peer.ip().is_loopback());
    ocm(&bed, ["down", p]).ok();
}

#[test]
fn bad_usage_and_missing_opencode_have_their_own_exit_codes() {
    let bed = TestBed::new();
    let p = path_str(&bed.project);
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["up", "--port", "seventy"],
        vec!["up", p, "extra"],
        vec!["exec", p],
        vec!["logs", p, "-n", "x"],
        vec!["status", "--bogus"],
    ] {
        let run = ocm(&bed, &args).code(2);
        assert!(run.stderr.starts_with("ocm: error: "), "{run:#?}");
        assert!(run.stderr.contains("hint: "), "{run:#?}");
    }
    let json = ocm(&bed, ["up", "--port", "0", "--json"]).code(2).json();
    assert_eq!(json["exitCode"], 2, "{json}");

    for args in [vec!["--help"], vec!["up", "--help"], vec!["help", "exec"]] {
        let run = ocm(&bed, &args).ok();
        assert!(run.stdout.contains("Usage: ocm"), "{run:#?}");
    }
    let version = ocm(&bed, ["--version"]).ok();
    assert!(version.stdout.starts_with("ocm "), "{version:#?}");

    // No opencode: exit 4 with how to get it; nothing is left running.
    let missing = ocm_with(
        &bed,
        ["up", p],
        &[
            ("OPENCODE_BIN", "/nonexistent/opencode"),
            ("PATH", "/usr/bin:/bin"),
        ],
    )
    .code(4);
    assert!(
        missing.stderr.contains("opencode not found"),
        "{missing:#?}"
    );
    assert!(missing.stderr.contains("OPENCODE_BIN"), "{missing:#?}");

    // No log yet: a plain error with a hint.
    let logs = ocm(&bed, ["logs", p]).code(1);
    assert!(logs.stderr.contains("no server log"), "{logs:#?}");

    // The log cannot be created (a folder is in its place): a failed start.
    let broken = bed.root().join("broken-opencode");
    std::fs::write(&broken, "#!/nonexistent/interpreter\n").expect("write the script");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
    }
    let broken_env = [("OPENCODE_BIN", path_str(&broken))];
    let log = statefile::ProjectPaths::new(
        &bed.state_dir,
        &portmap::project_hash(&bed.project).expect("hash"),
    )
    .log;
    std::fs::create_dir_all(log.join("in-the-way")).expect("a folder where the log goes");
    let run = ocm_with(&bed, ["up", p], &broken_env).code(4);
    assert!(run.stderr.contains(path_str(&log)), "{run:#?}");
    std::fs::remove_dir_all(&log).expect("remove the folder");

    // A binary that cannot be executed (its interpreter does not exist):
    // the spawn fails, and that is a failed start too.
    for args in [vec!["up", p], vec!["exec", p, "--", "true"]] {
        let run = ocm_with(&bed, &args, &broken_env).code(4);
        assert!(run.stderr.contains(path_str(&broken)), "{run:#?}");
    }
    let json = ocm_with(&bed, ["restart", p, "--json"], &broken_env)
        .code(4)
        .json();
    assert_eq!(json["exitCode"], 4, "{json}");
    assert!(bed.opencode_pids().is_empty());
}
