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

/// A start that takes its time runs beside the supervisor's poll: another
/// server's crash is seen, and restarted, while it is still starting.
#[test]
fn a_slow_start_does_not_delay_what_is_seen_of_another_server() {
    if e2e_skipped() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let bed = TestBed::new();
    let (fast, _) = e2e::fresh_project(&bed, "fast");
    let (slow, _) = e2e::fresh_project(&bed, "slow");
    let pid_file = bed.home.join("slow.pid");
    // The slow project's "opencode" writes its pid and sleeps (and fails at
    // once when run again, by the start's retry); the others get the real
    // one.
    let script = bed.home.join("opencode-or-sleep");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$PWD\" in */slow-*) [ -e '{0}' ] && exit 1; echo $$ > '{0}'; exec sleep 120;; esac\nexec '{1}' \"$@\"\n",
            pid_file.display(),
            e2e::opencode_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let manager = Manager::new(Config {
        opencode_bin: Some(script),
        state_root: Some(bed.state_dir.clone()),
        env_set: bed.child_env(),
        start_timeout: Duration::from_secs(90),
        ..Config::default()
    })
    .unwrap();
    let supervisor = Supervisor::start(manager, SuperviseConfig::default()).unwrap();
    let rx = supervisor.subscribe(false);
    let fast_pid = match supervisor.watch(&fast).unwrap() {
        WatchOutcome::Watching { pid: Some(pid), .. } => pid,
        other => panic!("{other:?}"),
    };
    expect(&rx, SupervisorState::Running, Duration::from_secs(5));
    let slow_path = std::fs::canonicalize(&slow).unwrap();
    let supervisor = std::sync::Arc::new(supervisor);
    let slow_watch = {
        let supervisor = std::sync::Arc::clone(&supervisor);
        let slow = slow.clone();
        std::thread::spawn(move || supervisor.watch(&slow))
    };
    // The slow start is under way once its "opencode" wrote its pid.
    let slow_pid: i32 = poll_until(Duration::from_secs(30), "the slow start to begin", || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    e2e::send_signal(-(fast_pid as i32), libc::SIGKILL);
    let seen = Instant::now();
    let mut fast_states = Vec::new();
    while fast_states.last() != Some(&SupervisorState::Running) {
        let t = expect_any(&rx, Duration::from_secs(60));
        if t.project == slow_path {
            assert_eq!(
                t.state,
                SupervisorState::Starting,
                "the slow project moved on before the fast one was seen: {t:?}"
            );
            continue;
        }
        fast_states.push(t.state);
    }
    assert_eq!(
        fast_states,
        [
            SupervisorState::Crashed,
            SupervisorState::Backoff,
            SupervisorState::Starting,
            SupervisorState::Running
        ],
        "restarted in {:?}",
        seen.elapsed()
    );
    assert!(
        !slow_watch.is_finished(),
        "the slow start is still going on"
    );
    // The slow "opencode" ends: that start fails, and `watch` returns.
    e2e::send_signal(slow_pid, libc::SIGKILL);
    let outcome = slow_watch.join().unwrap().unwrap();
    assert!(
        matches!(outcome, WatchOutcome::Watching { pid: None, .. }),
        "{outcome:?}"
    );
    let failed = expect(&rx, SupervisorState::Crashed, Duration::from_secs(30));
    assert!(
        matches!(failed.reason, Reason::StartFailed { .. }),
        "{failed:?}"
    );
    drop(rx);
    std::sync::Arc::try_unwrap(supervisor)
        .expect("the watch thread is done")
        .stop();
}

/// The next transition, whatever its state.
fn expect_any(rx: &Receiver<Notice>, timeout: Duration) -> Transition {
    let deadline = Instant::now() + timeout;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Notice::Transition(t)) => return t,
            Ok(_) => {}
            Err(e) => panic!("no transition within {timeout:?}: {e}"),
        }
    }
}

/// The next note that contains `text`, within `timeout`.
fn expect_note(rx: &Receiver<Notice>, text: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Notice::Note { message, .. }) if message.contains(text) => return message,
            Ok(_) => {}
            Err(e) => panic!("no note with {text:?} within {timeout:?}: {e}"),
        }
    }
}

fn pid_in(note: &str) -> u32 {
    let after = note.split("(pid ").nth(1).expect("a pid in the note");
    after[..after.find(')').unwrap()].parse().unwrap()
}

/// A project source with a companion: it is kept running beside the
/// server, restarted when it dies, and left stopped when the project is
/// down.
#[test]
fn a_watched_companion_is_restarted_when_it_dies_and_left_down_with_the_project() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let project = bed.project.clone();
    let base = 20_000 + (std::process::id() % 400) as u16 * 10;
    let spec = manager::CompanionSpec {
        command: vec![
            ocm_bin().display().to_string(),
            "mcp".into(),
            "--http".into(),
            "127.0.0.1:{port}".into(),
            "--token-env".into(),
            "COMPANION_TOKEN".into(),
            "--allow".into(),
            project.display().to_string(),
        ],
        env: [
            bed.child_env(),
            vec![(
                "COMPANION_TOKEN".to_string(),
                "t0ken-of-the-test".to_string(),
            )],
        ]
        .concat(),
        port: manager::PortPolicy::Range(base..=base + 9),
        start_timeout: Duration::from_secs(30),
    };
    let source: manager::ProjectSource = std::sync::Arc::new(move |_: &std::path::Path| {
        Ok(Some(manager::ProjectSetup {
            config: None,
            companion: Some(spec.clone()),
        }))
    });
    let supervisor =
        Supervisor::start_with(manager_in(&bed), SuperviseConfig::default(), Some(source)).unwrap();
    let rx = supervisor.subscribe(false);
    supervisor.watch(&project).unwrap();
    let first = pid_in(&expect_note(
        &rx,
        "companion running",
        Duration::from_secs(30),
    ));
    let manager = manager_in(&bed);
    assert_eq!(
        manager
            .companion_status(&project)
            .unwrap()
            .unwrap()
            .info
            .pid,
        first
    );
    // Killed: seen, and a new one runs and answers.
    e2e::send_signal(-(first as i32), libc::SIGKILL);
    expect_note(
        &rx,
        &format!("companion (pid {first}) exited"),
        Duration::from_secs(5),
    );
    let second = pid_in(&expect_note(
        &rx,
        "companion running",
        Duration::from_secs(30),
    ));
    assert_ne!(second, first);
    let status = manager.companion_status(&project).unwrap().unwrap();
    assert!(status.alive && status.answered_ms.is_some(), "{status:?}");
    let info = poll_until(
        Duration::from_secs(5),
        "the metrics to name the companion",
        || {
            manager
                .status(&project)
                .ok()?
                .supervisor
                .filter(|i| i.companion_pid == Some(second))
        },
    );
    assert_eq!(info.companion_restarts, 1, "{info:?}");
    // The server's crash and restart leave the companion alone.
    let server = manager.status(&project).unwrap().pid.unwrap();
    e2e::send_signal(-(server as i32), libc::SIGKILL);
    expect(&rx, SupervisorState::Running, Duration::from_secs(60));
    assert_eq!(
        manager
            .companion_status(&project)
            .unwrap()
            .unwrap()
            .info
            .pid,
        second
    );
    // The user takes the project down: the companion stays down too.
    manager.stop(&project).unwrap();
    manager.stop_companion(&project).unwrap();
    expect_note(
        &rx,
        "left stopped: the project is down",
        Duration::from_secs(5),
    );
    assert!(
        transitions_within(&rx, Duration::from_secs(2))
            .iter()
            .all(|t| t.state != SupervisorState::Starting),
        "something was started again"
    );
    assert!(manager.companion_status(&project).unwrap().is_none());
    supervisor.stop();
}
