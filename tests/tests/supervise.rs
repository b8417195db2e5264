//! End-to-end: `ocm supervise` keeps a real opencode server up: a SIGKILL
//! is seen through the pidfd and the server restarted; `ocm down` is obeyed
//! and `ocm up` taken back; a second supervisor leaves the project alone; a
//! supervisor killed leaves its servers running and the next one adopts
//! them; a crash loop ends `failed` (said by `ocm status`) and `ocm up`
//! clears it; a stopped (SIGSTOP) server is replaced. Counts are small
//! here; `cargo xtask chaos` runs the full ones.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use e2e::{TestBed, e2e_skipped, is_zombie, ocm_bin, poll_until};
use serde_json::Value;

/// A running `ocm supervise --json` and its transitions, line by line.
struct Supervise {
    child: Child,
    lines: Receiver<Value>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Supervise {
    fn start(bed: &TestBed, args: &[&str], env: &[(&str, &str)]) -> Supervise {
        let mut command = bed.command(ocm_bin());
        command
            .args(["supervise", "--json"])
            .args(args)
            .arg(&bed.project)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start ocm supervise");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Supervise {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// The next transition into `state`, skipping others, within `timeout`.
    fn expect(&self, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["state"] == state => return v,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no `{state}` transition within {timeout:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("ocm supervise ended before a `{state}` transition")
                }
            }
        }
    }

    /// Every transition that arrives within `window`.
    fn collect(&self, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        let mut all = Vec::new();
        while let Ok(v) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            all.push(v);
        }
        all
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM; it must end within a second or two (exit 0).
    fn terminate(mut self) -> i32 {
        e2e::send_signal(self.child.id() as i32, libc::SIGTERM);
        let began = Instant::now();
        let status = poll_until(Duration::from_secs(5), "ocm supervise to end", || {
            self.child.try_wait().expect("wait")
        });
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "took {:?} to stop",
            began.elapsed()
        );
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status.code().unwrap_or(-1)
    }
}

impl Drop for Supervise {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ocm(bed: &TestBed, args: &[&str]) -> std::process::Output {
    bed.command(ocm_bin())
        .args(args)
        .arg(&bed.project)
        .output()
        .expect("run ocm")
}

fn status_json(bed: &TestBed) -> Value {
    let out = ocm(bed, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

fn count(var: &str, ci_count: usize, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if ci() { ci_count } else { default })
}

fn pid_of(v: &Value) -> u32 {
    v["pid"].as_u64().expect("a pid") as u32
}

/// Gone and reaped: no zombie left.
fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

#[test]
fn sigkills_are_seen_at_once_and_the_server_restarted() {
    if e2e_skipped() {
        return;
    }
    let kills = count("OCM_CHAOS_KILLS", 3, 5);
    let bed = TestBed::new();
    // Back-to-back kills: the delay's cap low, or each would wait up to 30 s.
    let sup = Supervise::start(&bed, &["--max-restarts", "0", "--max-delay", "1"], &[]);
    let mut pid = pid_of(&sup.expect("running", Duration::from_secs(60)));
    let mut detect = Vec::new();
    for round in 1..=kills {
        let killed_at = Instant::now();
        e2e::send_signal(pid as i32, libc::SIGKILL);
        let crashed = sup.expect("crashed", Duration::from_secs(10));
        detect.push(killed_at.elapsed());
        assert_eq!(pid_of(&crashed), pid);
        assert_eq!(crashed["reason"]["kind"], "exited");
        assert_eq!(crashed["reason"]["signal"], 9, "{crashed}");
        let running = sup.expect("running", Duration::from_secs(60));
        assert_eq!(running["restarts"], round as u64, "{running}");
        let new_pid = pid_of(&running);
        assert_ne!(new_pid, pid);
        assert!(gone(pid), "the killed server lingers (not reaped)");
        pid = new_pid;
    }
    detect.sort();
    eprintln!("kill -> crashed: median {:?}", detect[detect.len() / 2]);
    // One server, the last one; `ocm status` shows the supervisor.
    assert_eq!(bed.opencode_pids(), vec![pid]);
    let status = status_json(&bed);
    assert_eq!(status["supervisor"]["pid"], sup.pid(), "{status}");
    assert_eq!(status["supervisor"]["state"], "running", "{status}");
    assert_eq!(status["supervisor"]["restarts"], kills as u64, "{status}");
    assert_eq!(sup.terminate(), 0);
    // The server outlives its supervisor; status no longer names one.
    assert!(alive(pid));
    assert!(status_json(&bed).get("supervisor").is_none());
    let transitions = std::fs::read_to_string(
        bed.state_dir
            .join("servers")
            .join(manager::project(&bed.project).unwrap().hash)
            .join("transitions.jsonl"),
    )
    .expect("transitions.jsonl");
    assert_eq!(
        transitions
            .lines()
            .filter(|l| l.contains("\"state\":\"crashed\""))
            .count(),
        kills
    );
}

#[test]
fn down_is_obeyed_and_up_is_taken_back_and_a_second_supervisor_stays_out() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let sup = Supervise::start(&bed, &[], &[]);
    let first = pid_of(&sup.expect("running", Duration::from_secs(60)));

    // A second supervisor says who has the project and watches nothing.
    let second = bed
        .command(ocm_bin())
        .args(["supervise"])
        .arg(&bed.project)
        .output()
        .expect("second ocm supervise");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("supervised by pid {}", sup.pid())),
        "{stderr}"
    );

    assert!(ocm(&bed, &["down"]).status.success());
    let stopped = sup.expect("stopped", Duration::from_secs(10));
    assert_eq!(stopped["reason"]["kind"], "stopped-by-user", "{stopped}");
    assert_eq!(stopped["message"], "stopped by the user");
    let stay = Duration::from_secs(count("OCM_CHAOS_DOWN_SECS", 3, 5) as u64);
    let meanwhile = sup.collect(stay);
    assert!(meanwhile.is_empty(), "{meanwhile:?}");
    assert!(bed.opencode_pids().is_empty());

    assert!(ocm(&bed, &["up"]).status.success());
    let back = sup.expect("running", Duration::from_secs(30));
    assert_eq!(back["reason"]["kind"], "replaced-by-user", "{back}");
    let second_pid = pid_of(&back);
    assert_ne!(second_pid, first);
    // Supervised again: a crash is restarted.
    e2e::send_signal(second_pid as i32, libc::SIGKILL);
    sup.expect("crashed", Duration::from_secs(10));
    sup.expect("running", Duration::from_secs(60));
    // `ocm restart` is not a crash.
    assert!(ocm(&bed, &["restart"]).status.success());
    let after = sup.expect("running", Duration::from_secs(30));
    assert_eq!(after["reason"]["kind"], "replaced-by-user", "{after}");
    assert_eq!(sup.terminate(), 0);
}

#[test]
fn a_killed_supervisor_leaves_servers_running_and_the_next_adopts_them() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let mut sup = Supervise::start(&bed, &[], &[]);
    let pid = pid_of(&sup.expect("running", Duration::from_secs(60)));
    e2e::send_signal(sup.pid() as i32, libc::SIGKILL);
    let _ = sup.child.wait();
    drop(sup);
    assert!(alive(pid));
    let sup = Supervise::start(&bed, &[], &[]);
    let adopted = sup.expect("running", Duration::from_secs(30));
    assert_eq!(adopted["reason"]["kind"], "adopted", "{adopted}");
    assert_eq!(pid_of(&adopted), pid);
    // Not its child: the crash is seen, its status cannot be.
    e2e::send_signal(pid as i32, libc::SIGKILL);
    let crashed = sup.expect("crashed", Duration::from_secs(10));
    assert_eq!(pid_of(&crashed), pid);
    assert!(
        crashed["message"]
            .as_str()
            .unwrap()
            .contains("not ocm's child"),
        "{crashed}"
    );
    sup.expect("running", Duration::from_secs(60));
    assert_eq!(sup.terminate(), 0);
}

#[test]
fn a_crash_loop_backs_off_then_fails_and_up_clears_it() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let script = bed.root().join("crash.sh");
    std::fs::write(&script, "#!/bin/sh\necho crash-loop-marker >&2\nexit 1\n").unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    let sup = Supervise::start(
        &bed,
        &["--max-restarts", "4", "--within", "120"],
        &[("OPENCODE_BIN", script.to_str().unwrap())],
    );
    let mut delays = Vec::new();
    let failed = loop {
        let v = sup.expect_any(Duration::from_secs(60));
        match v["state"].as_str().unwrap() {
            "backoff" => delays.push(v["reason"]["ms"].as_u64().unwrap()),
            "failed" => break v,
            "running" => panic!("a crash loop ran: {v}"),
            _ => {}
        }
    };
    assert_eq!(delays, vec![100, 200, 400], "{failed}");
    assert_eq!(failed["reason"]["kind"], "start-limit", "{failed}");
    let status = status_json(&bed);
    assert_eq!(status["supervisor"]["state"], "failed", "{status}");
    let tail = status["supervisor"]["logTail"].to_string();
    assert!(tail.contains("crash-loop-marker"), "{status}");
    // Nothing more is tried until the user acts.
    assert!(sup.collect(Duration::from_secs(2)).is_empty());
    assert!(ocm(&bed, &["up"]).status.success());
    let back = sup.expect("running", Duration::from_secs(30));
    assert_eq!(back["reason"]["kind"], "replaced-by-user", "{back}");
    assert_eq!(sup.terminate(), 0);
}

#[test]
fn a_stopped_server_is_found_hung_and_replaced() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let sup = Supervise::start(&bed, &["--stall", "2"], &[]);
    let pid = pid_of(&sup.expect("running", Duration::from_secs(60)));
    let stopped_at = Instant::now();
    e2e::send_signal(pid as i32, libc::SIGSTOP);
    let unhealthy = sup.expect("unhealthy", Duration::from_secs(30));
    assert_eq!(unhealthy["reason"]["kind"], "hung", "{unhealthy}");
    assert_eq!(pid_of(&unhealthy), pid);
    let running = sup.expect("running", Duration::from_secs(60));
    eprintln!("SIGSTOP -> running again: {:?}", stopped_at.elapsed());
    assert_ne!(pid_of(&running), pid);
    assert!(gone(pid), "the stopped server was not killed and reaped");
    assert_eq!(bed.opencode_pids(), vec![pid_of(&running)]);
    assert_eq!(sup.terminate(), 0);
}

#[test]
fn stop_on_exit_stops_the_servers_when_supervision_ends() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let sup = Supervise::start(&bed, &["--stop-on-exit"], &[]);
    let pid = pid_of(&sup.expect("running", Duration::from_secs(60)));
    assert_eq!(sup.terminate(), 0);
    assert!(
        gone(pid) || !alive(pid),
        "the server outlived --stop-on-exit"
    );
    assert!(bed.opencode_pids().is_empty());
    let status = status_json(&bed);
    assert_eq!(status["status"], "stopped", "{status}");
}

impl Supervise {
    fn expect_any(&self, timeout: Duration) -> Value {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no transition within {timeout:?}: {e}"))
    }
}

#[test]
fn sigterm_during_a_start_stops_supervising_at_once_and_leaves_nothing() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let pid_file = bed.root().join("hanging.pid");
    let script = bed.root().join("hang.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 120\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    let sup = Supervise::start(&bed, &[], &[("OPENCODE_BIN", script.to_str().unwrap())]);
    sup.expect("starting", Duration::from_secs(30));
    let hanging: u32 = poll_until(Duration::from_secs(30), "the start to spawn", || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    assert!(alive(hanging));
    // `terminate` checks that it ends within 2 s, with exit 0.
    assert_eq!(sup.terminate(), 0);
    assert!(
        gone(hanging),
        "the start's process {hanging} was left running"
    );
    // Ending supervision is not the user taking the server down: a later
    // `ocm supervise --all` still brings it up.
    let record: Value = serde_json::from_slice(
        &std::fs::read(
            bed.state_dir
                .join("servers")
                .join(manager::project(&bed.project).unwrap().hash)
                .join("server.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["desired"], "up", "{record}");
}

/// The supervisor's event relay of the bed's project, once it takes
/// clients (its stream proven subscribed: up to a heartbeat, 10 s, after
/// the server is up): the connection, past the hello.
fn relay_client(bed: &TestBed) -> BufReader<std::os::unix::net::UnixStream> {
    let dir = status_json(bed)["stateDir"]
        .as_str()
        .expect("stateDir")
        .to_string();
    e2e::relay_client(&Path::new(&dir).join("events.sock"))
}

/// The `done` line of `ocm prompt --json TEXT`.
fn prompt_done(bed: &TestBed, text: &str) -> Value {
    let out = bed
        .command(ocm_bin())
        .args(["prompt", "--json"])
        .arg(&bed.project)
        .arg(text)
        .output()
        .expect("ocm prompt");
    done_of(&out).0
}

/// The `done` line of a finished `ocm prompt --json` (which must have
/// exited 0), and all it printed.
fn done_of(out: &std::process::Output) -> (Value, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_str(stdout.lines().last().expect("a line")).unwrap();
    assert_eq!(done["type"], "done", "{stdout}");
    (done, stdout)
}

#[test]
fn prompts_are_told_through_the_supervisors_event_relay() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(
        e2e::Script::new().default_reply(e2e::Reply::text("told by the relay")),
    );
    let supervise = Supervise::start(&bed, &[], &[]);
    supervise.expect("running", Duration::from_secs(60));
    let mut watcher = relay_client(&bed);
    let done = prompt_done(&bed, "hello");
    assert_eq!(done["text"], "told by the relay", "{done}");
    // The relay handed the turn's frames on, in the server's own form.
    let message = done["messageId"].as_str().unwrap().to_string();
    let mut line = String::new();
    let told = poll_until(Duration::from_secs(10), "the prompt's frames", || {
        line.clear();
        watcher.read_line(&mut line).expect("a frame");
        let frame: Value = serde_json::from_str(&line).expect("JSON");
        assert!(frame["payload"]["type"].is_string(), "{frame}");
        line.contains(&message).then_some(frame)
    });
    assert_eq!(told["payload"]["type"], "message.updated", "{told}");
    // ocm prompt took its events from the relay too: two clients (the
    // watcher and the prompt), in the metrics written every 10 s.
    poll_until(Duration::from_secs(15), "two relay clients", || {
        (status_json(&bed)["supervisor"]["relayClients"].as_u64() >= Some(2)).then_some(())
    });
    assert_eq!(supervise.terminate(), 0);
}

#[test]
fn a_relay_that_ends_mid_turn_leaves_the_turn_to_the_servers_stream() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(
        e2e::Script::new().default_reply(
            e2e::Reply::text("one two three four five six seven eight nine ten")
                .chunk_delay(Duration::from_millis(300)),
        ),
    );
    let mut supervise = Supervise::start(&bed, &[], &[]);
    supervise.expect("running", Duration::from_secs(60));
    drop(relay_client(&bed));
    let prompt = {
        let mut command = bed.command(ocm_bin());
        command
            .args(["prompt", "--json"])
            .arg(&bed.project)
            .arg("count")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().expect("ocm prompt")
    };
    // Mid-turn: the supervisor (and its relay) is killed; the server runs on.
    std::thread::sleep(Duration::from_millis(1200));
    supervise.child.kill().expect("kill the supervisor");
    let _ = supervise.child.wait();
    let (done, stdout) = done_of(&prompt.wait_with_output().expect("ocm prompt"));
    assert_eq!(
        done["text"], "one two three four five six seven eight nine ten",
        "{stdout}"
    );
    // The text events add up to the reply, none twice.
    let streamed: String = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "text")
        .map(|v| v["delta"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(streamed, done["text"].as_str().unwrap(), "{stdout}");
}
