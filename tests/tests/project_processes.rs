//! End-to-end: everything a project's server starts goes when the project
//! is stopped, a killed start leaves nothing unseen, and auth and the
//! server's address are the project's recorded configuration. Real
//! opencode, mock model (its scripted bash tool call plays the agent).

use std::path::Path;
use std::time::Duration;

use e2e::{TestBed, e2e_skipped, poll_until, processes_with_env};
use manager::{Config, Manager, PROJECT_HASH_VAR, Progress, Repair};
use mock_llm::{Reply, Script};
use opencode_api::{NewSession, PromptRequest};

/// What the agent runs: a process that outlives the tool call, in a
/// session of its own (as opencode runs every shell command).
const SLEEPER: &str =
    r#"{"command":"sleep 600 >/dev/null 2>&1 &","description":"Start a long sleep"}"#;

fn manager_in(bed: &TestBed, configure: impl FnOnce(&mut Config)) -> Manager {
    let mut config = Config {
        opencode_bin: Some(e2e::opencode_bin()),
        state_root: Some(bed.state_dir.clone()),
        env_set: bed.child_env(),
        ..Config::default()
    };
    configure(&mut config);
    Manager::new(config).expect("a valid configuration")
}

fn sleeper_bed() -> TestBed {
    TestBed::with_script(Script::new().when(
        "start the sleeper",
        Reply::text("started").tool_call("bash", SLEEPER),
    ))
}

/// Processes carrying `project`'s marker (the server and all it started).
fn marked(project: &Path) -> Vec<u32> {
    let hash = manager::project(project).expect("hash").hash;
    processes_with_env(&format!("{PROJECT_HASH_VAR}={hash}"))
}

/// The `sleep 600` processes the agent started for `project`.
fn sleepers(project: &Path) -> Vec<u32> {
    marked(project)
        .into_iter()
        .filter(|&pid| procutil::cmdline(pid).is_ok_and(|c| c == ["sleep", "600"]))
        .collect()
}

/// Has the agent start a sleeper in `project`'s server; returns its pid.
fn agent_starts_a_sleeper(manager: &Manager, project: &Path) -> u32 {
    let server = manager.ensure(project).expect("a server");
    let client = server.client().expect("a client");
    let session = client
        .create_session(&NewSession::titled("sleeper"))
        .expect("a session");
    let reply = client
        .prompt(&session.id, &PromptRequest::text("start the sleeper"))
        .expect("the prompt");
    assert!(reply.error().is_none(), "{:?}", reply.error());
    let found = poll_until(Duration::from_secs(20), "the agent's sleeper", || {
        let found = sleepers(project);
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(found.len(), 1, "{found:?}");
    // It left the server's process group: signalling the group misses it.
    let group = procutil::process_group_id(found[0]).expect("its group");
    assert_ne!(group, server.pid, "the sleeper is in the server's group");
    found[0]
}

#[test]
fn the_agents_commands_go_with_down_restart_destroy_and_gc() {
    if e2e_skipped() {
        return;
    }
    let bed = sleeper_bed();
    let manager = manager_in(&bed, |_| {});
    let project = bed.project.clone();

    // down
    let sleeper = agent_starts_a_sleeper(&manager, &project);
    let report = manager.stop(&project).expect("stop");
    assert!(report.leftovers_stopped.contains(&sleeper), "{report:?}");
    assert!(report.orphans_stopped.is_empty(), "{report:?}");
    assert_eq!(marked(&project), Vec::<u32>::new());

    // restart: only the new server is left.
    agent_starts_a_sleeper(&manager, &project);
    let fresh = manager.restart(&project).expect("restart");
    assert_eq!(marked(&project), vec![fresh.pid]);

    // destroy
    agent_starts_a_sleeper(&manager, &project);
    manager.destroy(&project).expect("destroy");
    assert_eq!(marked(&project), Vec::<u32>::new());

    // gc: the server crashed, its sleeper lives on; gc removes the project
    // and what its server left running.
    let sleeper = agent_starts_a_sleeper(&manager, &project);
    let server = manager.ensure(&project).expect("the server");
    e2e::send_signal(server.pid as i32, libc::SIGKILL);
    poll_until(Duration::from_secs(10), "the server to die", || {
        (!marked(&project).contains(&server.pid)).then_some(())
    });
    assert_eq!(
        sleepers(&project),
        vec![sleeper],
        "the sleeper outlived its server"
    );
    let report = manager.gc().expect("gc");
    assert!(report.leftovers_stopped.contains(&sleeper), "{report:?}");
    assert_eq!(marked(&project), Vec::<u32>::new());
}

#[test]
fn a_replacement_after_a_crash_stops_what_the_dead_server_left() {
    if e2e_skipped() {
        return;
    }
    let bed = sleeper_bed();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let manager =
        manager_in(&bed, |_| {}).with_progress(move |p| sink.lock().unwrap().push(p.clone()));
    let sleeper = agent_starts_a_sleeper(&manager, &bed.project);
    let first = manager.ensure(&bed.project).expect("the server");
    e2e::send_signal(first.pid as i32, libc::SIGKILL);
    poll_until(Duration::from_secs(10), "the server to die", || {
        (!marked(&bed.project).contains(&first.pid)).then_some(())
    });
    let second = manager.ensure(&bed.project).expect("a new server");
    assert_ne!(second.pid, first.pid);
    assert_eq!(marked(&bed.project), vec![second.pid]);
    assert!(seen.lock().unwrap().iter().any(|p| matches!(
        p,
        Progress::Repaired(Repair::LeftoversStopped { pids }) if pids.contains(&sleeper)
    )));
    manager.stop(&bed.project).expect("stop");
}
