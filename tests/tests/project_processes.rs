//! End-to-end: everything a project's server starts goes when the project
//! is stopped, a killed start leaves nothing unseen, and auth and the
//! server's address are the project's recorded configuration. Real
//! opencode, mock model (its scripted bash tool call plays the agent).

use std::path::Path;
use std::time::Duration;

use e2e::{TestBed, e2e_skipped, manager_in, poll_until, processes_with_env};
use manager::{Manager, PROJECT_HASH_VAR, Progress, Repair};
use mock_llm::{Reply, Script};
use opencode_api::{NewSession, PromptRequest};

/// What the agent runs: a process that outlives the tool call, in a
/// session of its own (as opencode runs every shell command).
const SLEEPER: &str =
    r#"{"command":"sleep 600 >/dev/null 2>&1 &","description":"Start a long sleep"}"#;

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

/// Sends `text` to a new session of `project`'s server (the mock's script
/// has the agent run its command); returns the server.
fn agent_runs(manager: &Manager, project: &Path, text: &str) -> manager::ServerInfo {
    let server = manager.ensure(project).expect("a server");
    let client = server.client().expect("a client");
    let session = client
        .create_session(&NewSession::titled(text))
        .expect("a session");
    let reply = client
        .prompt(&session.id, &PromptRequest::text(text))
        .expect("the prompt");
    assert!(reply.error().is_none(), "{:?}", reply.error());
    server
}

/// Has the agent start a sleeper in `project`'s server; returns its pid.
fn agent_starts_a_sleeper(manager: &Manager, project: &Path) -> u32 {
    let server = agent_runs(manager, project, "start the sleeper");
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

/// What the agent runs: a group of its own led by a marked `sleep 6012`,
/// with a member that carries no markers (`env -i`) and ignores SIGTERM.
const STUBBORN: &str = r#"{"command":"setsid sh -c 'env -i sh -c \"trap \\\"\\\" TERM; exec sleep 6011\" & exec sleep 6012' >/dev/null 2>&1 &","description":"Start a stubborn group"}"#;

/// The live processes running `sleep ARG`.
fn sleeping(arg: &str) -> Vec<u32> {
    procutil::all_pids()
        .unwrap_or_default()
        .into_iter()
        .filter(|&pid| procutil::cmdline(pid).is_ok_and(|c| c == ["sleep", arg]))
        .collect()
}

#[test]
fn a_group_member_without_markers_that_ignores_sigterm_goes_with_down() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::new().when(
        "start the group",
        Reply::text("started").tool_call("bash", STUBBORN),
    ));
    let manager = manager_in(&bed, |_| {});
    let project = bed.project.clone();
    agent_runs(&manager, &project, "start the group");
    let member = poll_until(Duration::from_secs(20), "the stubborn member", || {
        let found = sleeping("6011");
        (found.len() == 1 && sleeping("6012").len() == 1).then(|| found[0])
    });
    manager.stop(&project).expect("stop");
    let left = sleeping("6011");
    // Not left running whatever happens below.
    for pid in &left {
        e2e::send_signal(*pid as i32, libc::SIGKILL);
    }
    assert!(
        left.is_empty(),
        "the member {member} outlived down: {left:?}"
    );
    assert!(sleeping("6012").is_empty());
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

/// Starts opencode for `project` the way a `manager` start does, records
/// it as a start that was killed before it learned the pid (pid 0, the
/// start's nonce), and returns the server's pid.
fn interrupted_start(bed: &TestBed, manager: &Manager, project: &Path) -> u32 {
    let target = manager::project(project).expect("project");
    let paths = manager.paths(project).expect("paths");
    let nonce = "0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(&paths.dir).expect("state folder");
    let record = serde_json::json!({
        "schemaVersion": manager::SCHEMA_VERSION, "projectPath": target.path,
        "projectHash": target.hash, "pid": 0, "startTime": 0, "bootId": "",
        "port": 0, "hostname": "127.0.0.1", "url": "", "status": "starting",
        "logPath": paths.log, "startedAt": "2026-12-01T00:00:00.000Z",
        "lastHealthCheck": null, "opencodeVersion": null,
        "opencodeBin": e2e::opencode_bin(), "auth": false, "desired": "up", "nonce": nonce,
    });
    std::fs::write(&paths.record, record.to_string()).expect("write the record");
    let mut spec = procutil::SpawnSpec::new(e2e::opencode_bin())
        .args(["serve", "--hostname", "127.0.0.1", "--port", "0"])
        .cwd(project)
        .output(procutil::Output::AppendTo(paths.log.clone()))
        .env(PROJECT_HASH_VAR, &target.hash)
        .env(manager::STATE_ROOT_VAR, manager.state_root().as_os_str())
        .env(manager::SERVER_NONCE_VAR, nonce);
    for (name, value) in bed.child_env() {
        spec = spec.env(name, value);
    }
    let child = procutil::spawn_detached(&spec).expect("spawn opencode");
    let pid = child.pid();
    // Like the killed `ocm up`, this test does not keep it as a child to reap.
    std::mem::forget(child);
    poll_until(Duration::from_secs(30), "the server to listen", || {
        std::fs::read_to_string(&paths.log)
            .is_ok_and(|l| l.contains("listening on"))
            .then_some(())
    });
    pid
}

#[test]
fn a_start_killed_before_recording_its_pid_is_seen_and_replaced() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let manager = manager_in(&bed, |_| {});
    let project = bed.project.clone();
    let orphan = interrupted_start(&bed, &manager, &project);
    let status = manager.status(&project).expect("status");
    assert_eq!(status.status, manager::ServerState::Unhealthy, "{status:?}");
    assert_eq!(status.pid, Some(orphan), "{status:?}");
    let listed = manager.list().expect("ls");
    assert!(listed.iter().any(|s| s.pid == Some(orphan)), "{listed:?}");
    // gc leaves it for `up` (it is a server, not a leftover) ...
    let report = manager.gc().expect("gc");
    assert!(report.removed.is_empty(), "{report:?}");
    assert!(marked(&project).contains(&orphan));
    // ... which replaces it.
    let server = manager.ensure(&project).expect("up");
    assert_ne!(server.pid, orphan);
    assert_eq!(marked(&project), vec![server.pid]);
    manager.stop(&project).expect("stop");
}

#[test]
fn a_wrapper_that_backgrounds_the_server_and_exits_leaves_nothing() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let wrapper = bed.root().join("oc-backgrounds");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nsetsid {} serve --hostname \"$3\" --port \"$5\" >/dev/null 2>&1 &\nexit 0\n",
            e2e::opencode_bin().display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let manager = manager_in(&bed, |c| c.opencode_bin = Some(wrapper.clone()));
    let err = manager.ensure(&bed.project).unwrap_err();
    assert!(matches!(err, manager::Error::StartFailed { .. }), "{err}");
    // Give a server the wrapper started time to appear if it survived.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        marked(&bed.project),
        Vec::<u32>::new(),
        "the backgrounded server survived"
    );
}

/// Every file under the state folder, as text.
fn state_text(bed: &TestBed) -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n != "password") {
                out.push_str(&String::from_utf8_lossy(
                    &std::fs::read(&path).unwrap_or_default(),
                ));
            }
        }
    }
    let mut out = String::new();
    walk(&bed.state_dir, &mut out);
    out
}

#[test]
fn a_replacement_after_a_crash_keeps_the_projects_password() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let generated = manager_in(&bed, |c| c.password = manager::PasswordPolicy::Generate);
    let first = generated
        .ensure(&bed.project)
        .expect("a server with a password");
    let password = first.password().expect("a password").to_string();
    e2e::send_signal(first.pid as i32, libc::SIGKILL);
    poll_until(Duration::from_secs(10), "the server to die", || {
        (!marked(&bed.project).contains(&first.pid)).then_some(())
    });
    // A plain `up` (no password flag): the replacement keeps the password.
    let plain =
        manager_in(&bed, |_| {}).with_progress(move |p| sink.lock().unwrap().push(p.clone()));
    let second = plain.ensure(&bed.project).expect("a replacement");
    assert_ne!(second.pid, first.pid);
    assert_eq!(second.password(), Some(password.as_str()));
    let open = e2e::http_agent(Duration::from_secs(2))
        .get(&format!("{}/global/health", second.url))
        .call()
        .expect("an answer");
    assert_eq!(
        open.status(),
        401,
        "the replacement answers without the password"
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|p| matches!(p, Progress::PasswordKept { .. }))
    );
    // Turning it off is explicit, and said.
    let off = manager_in(&bed, |c| c.password = manager::PasswordPolicy::Off);
    let third = off
        .restart(&bed.project)
        .expect("restart without a password");
    assert!(!third.has_auth());
    assert!(
        !state_text(&bed).contains(&password),
        "the password is in the state folder"
    );
    off.stop(&bed.project).expect("stop");
}

#[test]
fn a_given_password_that_is_gone_is_asked_for_not_dropped() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let given = manager_in(&bed, |c| {
        c.password = manager::PasswordPolicy::Fixed("given-secret-4711".into());
    });
    let first = given.ensure(&bed.project).expect("a server");
    e2e::send_signal(first.pid as i32, libc::SIGKILL);
    poll_until(Duration::from_secs(10), "the server to die", || {
        (!marked(&bed.project).contains(&first.pid)).then_some(())
    });
    let err = manager_in(&bed, |_| {}).ensure(&bed.project).unwrap_err();
    assert!(
        matches!(err, manager::Error::PasswordNeeded { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("given-secret-4711"));
    assert!(
        marked(&bed.project).is_empty(),
        "an open server was started"
    );
    assert!(!state_text(&bed).contains("given-secret-4711"));
}

#[test]
fn a_host_name_is_recorded_as_the_literal_the_server_bound() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let manager = manager_in(&bed, |c| c.hostname = "localhost".into());
    let server = manager.ensure(&bed.project).expect("a server on localhost");
    assert_eq!(server.hostname, "127.0.0.1");
    assert_eq!(server.url, format!("http://127.0.0.1:{}", server.port));
    let record = manager
        .record(&bed.project)
        .expect("record")
        .expect("a record");
    assert_eq!(record.hostname, "127.0.0.1");
    assert!(
        record.url.starts_with("http://127.0.0.1:"),
        "{}",
        record.url
    );
    // Someone else listening on [::1] at the same port hears nothing from
    // ocm: not from a reuse, not from a status.
    let Ok(impostor) = std::net::TcpListener::bind(("::1", server.port)) else {
        eprintln!("no IPv6 loopback here: the [::1] part of this test cannot run");
        manager.stop(&bed.project).expect("stop");
        return;
    };
    impostor.set_nonblocking(true).expect("nonblocking");
    let again = manager.ensure(&bed.project).expect("reuse");
    assert!(again.reused);
    manager.status(&bed.project).expect("status");
    assert!(
        matches!(impostor.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "ocm connected to [::1]"
    );
    manager.stop(&bed.project).expect("stop");
}

#[test]
fn the_log_marks_every_start_with_its_pid() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let manager = manager_in(&bed, |_| {});
    let first = manager.ensure(&bed.project).expect("a server");
    let second = manager.restart(&bed.project).expect("a restart");
    let log = std::fs::read_to_string(&first.log_path).expect("the log");
    let marks: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("--- ocm start "))
        .collect();
    assert_eq!(marks.len(), 2, "{log}");
    assert!(
        marks[0].ends_with(&format!(" pid {} ---", first.pid)),
        "{log}"
    );
    assert!(
        marks[1].ends_with(&format!(" pid {} ---", second.pid)),
        "{log}"
    );
    // Each run's mark comes before what that run said.
    let first_mark = log.find(marks[0]).expect("mark");
    let first_listen = log.find("listening on").expect("a listening line");
    assert!(first_mark < first_listen, "{log}");
    manager.stop(&bed.project).expect("stop");
}

#[test]
fn a_stop_whose_record_cannot_be_written_says_the_server_is_stopped() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let manager = manager_in(&bed, |_| {});
    let server = manager.ensure(&bed.project).expect("a server");
    let record = manager.paths(&bed.project).expect("paths").record;
    // The record mounted over itself, read-only, for this one `ocm down`,
    // in a mount namespace of its own: the lock and the stop work, the
    // record cannot be replaced.
    let script = format!(
        "mount --bind -o ro '{record}' '{record}' || exit 99; exec '{ocm}' down '{project}'",
        record = record.display(),
        ocm = e2e::ocm_bin().display(),
        project = bed.project.display(),
    );
    let out = bed
        .command("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    if matches!(out.status.code(), Some(99))
        || out.status.code() == Some(1) && out.stderr.starts_with(b"unshare:")
    {
        eprintln!(
            "cannot make a read-only mount here ({}): this test cannot run",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        manager.stop(&bed.project).expect("stop");
        return;
    }
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("(pid {}) is stopped", server.pid)),
        "{said}"
    );
    assert!(said.contains("could not be updated"), "{said}");
    assert!(
        !said.contains(".tmp-"),
        "a temp file is named instead: {said}"
    );
    assert!(marked(&bed.project).is_empty(), "the server still runs");
}
