//! End-to-end, in-process: `manager::Supervisor` as an embedder uses it.
//! A server over its memory limit with a busy session (the mock stalls its
//! reply) is not restarted until the session is idle; `watch_all` picks up a
//! project brought up later by `ocm up`. Real opencode, mock model.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use e2e::{TestBed, e2e_skipped, ocm_bin, poll_until};
use manager::{
    Config, Manager, Notice, Reason, SuperviseConfig, Supervisor, SupervisorState, Transition,
    WatchOutcome,
};
use mock_llm::{Reply, Script};
use opencode_api::{NewSession, PromptRequest};

fn manager_in(bed: &TestBed) -> Manager {
    Manager::new(Config {
        opencode_bin: Some(e2e::opencode_bin()),
        state_root: Some(bed.state_dir.clone()),
        env_set: bed.child_env(),
        ..Config::default()
    })
    .expect("a valid configuration")
}

/// The next transition into `state` within `timeout`; the others are
/// returned too, for the caller's checks.
fn expect(rx: &Receiver<Notice>, state: SupervisorState, timeout: Duration) -> Transition {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Notice::Transition(t)) if t.state == state => return t,
            Ok(_) => {}
            Err(e) => panic!("no {state} transition within {timeout:?}: {e}"),
        }
    }
}

fn transitions_within(rx: &Receiver<Notice>, window: Duration) -> Vec<Transition> {
    let deadline = Instant::now() + window;
    let mut all = Vec::new();
    while let Ok(notice) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Notice::Transition(t) = notice {
            all.push(t);
        }
    }
    all
}

fn ocm_up(bed: &TestBed, dir: &std::path::Path) -> serde_json::Value {
    let out = bed
        .command(ocm_bin())
        .args(["up", "--json"])
        .arg(dir)
        .output()
        .expect("ocm up");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn over_the_memory_limit_a_busy_server_is_restarted_only_once_idle() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(
        Script::new().when("keep me busy", Reply::text("partial answer").stall_after(1)),
    );
    let up = ocm_up(&bed, &bed.project);
    let url = up["url"].as_str().unwrap().to_string();
    let first = up["pid"].as_u64().unwrap() as u32;
    let client = opencode_api::Client::builder(&url)
        .directory(&bed.project)
        .build()
        .unwrap();
    let session = client.create_session(&NewSession::titled("busy")).unwrap();
    client
        .prompt_async(&session.id, &PromptRequest::text("keep me busy"))
        .unwrap();
    poll_until(Duration::from_secs(30), "the session to be busy", || {
        (!client.session_status().unwrap().is_empty()).then_some(())
    });

    let supervisor = Supervisor::start(
        manager_in(&bed),
        SuperviseConfig {
            max_memory: Some(1 << 20),
            metrics_interval: Duration::from_millis(300),
            ..SuperviseConfig::default()
        },
    )
    .unwrap();
    let rx = supervisor.subscribe(false);
    let outcome = supervisor.watch(&bed.project).unwrap();
    assert!(
        matches!(outcome, WatchOutcome::Watching { pid: Some(pid), .. } if pid == first),
        "{outcome:?}"
    );
    let adopted = expect(&rx, SupervisorState::Running, Duration::from_secs(10));
    assert_eq!(adopted.reason, Reason::Adopted);
    // Far over the limit, but busy: left alone.
    let meanwhile = transitions_within(&rx, Duration::from_secs(3));
    assert!(meanwhile.is_empty(), "{meanwhile:?}");

    client.abort(&session.id).unwrap();
    let stopping = expect(&rx, SupervisorState::Stopping, Duration::from_secs(30));
    assert!(
        matches!(stopping.reason, Reason::MemoryLimit { limit, .. } if limit == 1 << 20),
        "{stopping:?}"
    );
    assert_eq!(stopping.pid, Some(first));
    let running = expect(&rx, SupervisorState::Running, Duration::from_secs(60));
    assert_ne!(running.pid, Some(first));
    drop(supervisor);
    let _ = bed
        .command(ocm_bin())
        .arg("down")
        .arg(&bed.project)
        .output();
}

#[test]
fn watch_all_picks_up_a_project_brought_up_later() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let supervisor = Supervisor::start(manager_in(&bed), SuperviseConfig::default()).unwrap();
    let rx = supervisor.subscribe(true);
    assert_eq!(supervisor.watch_all().unwrap(), vec![]);
    let later = bed.new_project("later");
    let up = ocm_up(&bed, &later);
    let pid = up["pid"].as_u64().unwrap() as u32;
    let running = expect(&rx, SupervisorState::Running, Duration::from_secs(30));
    assert_eq!(running.pid, Some(pid));
    assert_eq!(running.reason, Reason::Adopted);
    // Events are delivered to a subscriber that asked for them.
    poll_until(Duration::from_secs(15), "an event", || {
        matches!(rx.try_recv(), Ok(Notice::Event { .. })).then_some(())
    });
    e2e::send_signal(pid as i32, libc::SIGKILL);
    let crashed = expect(&rx, SupervisorState::Crashed, Duration::from_secs(10));
    assert_eq!(crashed.pid, Some(pid));
    expect(&rx, SupervisorState::Running, Duration::from_secs(60));
    drop(supervisor);
    let _ = bed.command(ocm_bin()).arg("down").arg(&later).output();
}

#[test]
fn a_running_servers_log_past_the_limit_is_rotated_without_stopping_it() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let up = ocm_up(&bed, &bed.project);
    let pid = up["pid"].as_u64().unwrap() as u32;
    let log = std::path::PathBuf::from(up["logPath"].as_str().unwrap());
    let manager = Manager::new(Config {
        opencode_bin: Some(e2e::opencode_bin()),
        state_root: Some(bed.state_dir.clone()),
        env_set: bed.child_env(),
        log_max_bytes: 64 * 1024,
        ..Config::default()
    })
    .expect("a valid configuration");
    let supervisor = Supervisor::start(
        manager,
        SuperviseConfig {
            metrics_interval: Duration::from_millis(300),
            ..SuperviseConfig::default()
        },
    )
    .unwrap();
    let rx = supervisor.subscribe(false);
    supervisor.watch(&bed.project).unwrap();
    expect(&rx, SupervisorState::Running, Duration::from_secs(10));
    // The log grows past the limit while the server runs.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&b"filler line\n".repeat(10_000)).unwrap();
    }
    let rotated = log.with_extension("log.1");
    poll_until(Duration::from_secs(10), "the log to be rotated", || {
        rotated.exists().then_some(())
    });
    assert!(std::fs::metadata(&log).unwrap().len() < 64 * 1024);
    assert!(
        std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("filler line")
    );
    // The same server, still answering, still writing to its log.
    let status = bed
        .command(ocm_bin())
        .args(["status", "--json"])
        .arg(&bed.project)
        .output()
        .expect("ocm status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["pid"], pid);
    drop(supervisor);
    let _ = bed
        .command(ocm_bin())
        .arg("down")
        .arg(&bed.project)
        .output();
}
