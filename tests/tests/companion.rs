//! A companion beside a project's server (`Manager::ensure_companion`),
//! with a real companion: `ocm mcp --http 127.0.0.1:{port} --token-env ...`.
//! It starts and answers, is reused, keeps its token off argv, stops with
//! its group; one that exits at once or cannot get its port is an error
//! that says why; a dead one is replaced; the server's restart and stop
//! leave it running; destroy and gc leave none.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::{TEST_ID_VAR, TestBed, e2e_skipped, manager_in, ocm_bin, processes_with_env};
use manager::{CompanionSpec, Error, Manager, PortPolicy, Termination};

const TOKEN_VAR: &str = "MCP_TOOL_BEARER_TOKEN";
const TOKEN: &str = "companion-token-7d3e91c0aa";
const START: Duration = Duration::from_secs(30);

/// A range of ports that were free a moment ago (the kernel's pick, and
/// what follows it).
fn free_range() -> PortPolicy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    PortPolicy::Range(port..=port.saturating_add(20))
}

/// `ocm mcp --http` for `project`, its token in the environment, in the
/// bed's isolated environment (so the bed's drop kills it whatever happens).
fn mcp_spec(bed: &TestBed, project: &Path) -> CompanionSpec {
    let mut env = bed.child_env();
    env.push((TOKEN_VAR.into(), TOKEN.into()));
    CompanionSpec {
        command: vec![
            ocm_bin().display().to_string(),
            "mcp".into(),
            "--http".into(),
            "127.0.0.1:{port}".into(),
            "--token-env".into(),
            TOKEN_VAR.into(),
            "--allow".into(),
            project.display().to_string(),
        ],
        env,
        port: free_range(),
        start_timeout: START,
    }
}

fn sh_spec(bed: &TestBed, script: &str) -> CompanionSpec {
    CompanionSpec {
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: bed.child_env(),
        port: free_range(),
        start_timeout: START,
    }
}

fn setup(name: &str) -> (TestBed, Manager, PathBuf) {
    let bed = TestBed::new();
    let manager = manager_in(&bed, |_| {});
    let project = bed.new_project(name);
    (bed, manager, project)
}

/// Live companion processes of this bed (carrying `OCM_COMPANION` and the
/// bed's marker).
fn companions(bed: &TestBed) -> Vec<u32> {
    let of_bed = processes_with_env(&format!("{TEST_ID_VAR}={}", bed.test_id()));
    processes_with_env(&format!("{}=", manager::COMPANION_VAR))
        .into_iter()
        .filter(|pid| of_bed.contains(pid))
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !e2e::is_zombie(pid)
}

/// The status line of a GET / to the port.
fn status_line(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_companion_starts_answers_is_reused_keeps_its_token_off_argv_and_stops_with_its_group() {
    if e2e_skipped() {
        return;
    }
    let (bed, manager, project) = setup("answers");
    let spec = mcp_spec(&bed, &project);
    let info = manager.ensure_companion(&project, &spec).unwrap();
    assert_eq!(info.url, format!("http://127.0.0.1:{}", info.port));
    assert!(info.command.contains(&format!("127.0.0.1:{}", info.port)));
    // It answers, and wants its token.
    assert!(
        status_line(info.port).contains(" 401 "),
        "{}",
        status_line(info.port)
    );
    let status = manager.companion_status(&project).unwrap().unwrap();
    assert!(status.alive);
    assert!(status.answered_ms.is_some(), "{status:?}");
    assert_eq!(status.info, info);
    // The token reached it through its environment, never argv or the record.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", info.pid)).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(TOKEN));
    let environ = std::fs::read(format!("/proc/{}/environ", info.pid)).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains(&format!("{TOKEN_VAR}={TOKEN}")));
    let record = manager.paths(&project).unwrap().dir.join("companion.json");
    let record = std::fs::read_to_string(record).unwrap();
    assert!(!record.contains(TOKEN), "{record}");
    assert!(record.contains(&info.pid.to_string()), "{record}");
    assert!(!format!("{spec:?}").contains(TOKEN));
    // Asked again: the same process.
    let again = manager.ensure_companion(&project, &spec).unwrap();
    assert_eq!(again.pid, info.pid);
    // Another command: the old one goes, a new one comes.
    let mut other = spec.clone();
    other.command.push("--allow".into());
    other.command.push(bed.root().display().to_string());
    let replaced = manager.ensure_companion(&project, &other).unwrap();
    assert_ne!(replaced.pid, info.pid);
    assert!(!alive(info.pid), "the replaced companion still runs");
    assert_eq!(companions(&bed), vec![replaced.pid]);
    // Stopped with its group: nothing of it is left.
    let how = manager.stop_companion(&project).unwrap();
    assert!(
        matches!(how, Some(Termination::ExitedOnTerm | Termination::Killed)),
        "{how:?}"
    );
    assert!(!alive(replaced.pid));
    assert!(companions(&bed).is_empty(), "{:?}", companions(&bed));
    assert!(manager.companion_status(&project).unwrap().is_none());
    assert_eq!(manager.stop_companion(&project).unwrap(), None);
}

#[test]
fn a_companion_that_exits_at_once_is_an_error_with_its_status_and_output() {
    let (bed, manager, project) = setup("exits");
    let started = Instant::now();
    let err = manager
        .ensure_companion(&project, &sh_spec(&bed, "echo boom >&2; exit 3"))
        .unwrap_err();
    // Seen at once, not after the start timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    match &err {
        Error::CompanionExited {
            status, log_tail, ..
        } => {
            assert_eq!(status.code, Some(3), "{err}");
            assert!(log_tail.iter().any(|l| l.contains("boom")), "{err}");
        }
        other => panic!("expected CompanionExited, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("boom") && text.contains('3'), "{text}");
    assert!(manager.companion_status(&project).unwrap().is_none());
}

#[test]
fn a_companion_that_never_answers_is_stopped_after_its_timeout() {
    let (bed, manager, project) = setup("silent");
    let mut spec = sh_spec(&bed, "echo waiting; exec sleep 300");
    spec.start_timeout = Duration::from_secs(1);
    let err = manager.ensure_companion(&project, &spec).unwrap_err();
    assert!(matches!(err, Error::CompanionNotReady { .. }), "{err}");
    assert!(err.to_string().contains("waiting"), "{err}");
    assert!(companions(&bed).is_empty(), "{:?}", companions(&bed));
}

#[test]
fn a_fixed_port_held_by_another_listener_is_an_error_naming_it() {
    let (bed, manager, project) = setup("held");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut spec = sh_spec(&bed, "exec sleep 300");
    spec.port = PortPolicy::Fixed(port);
    match manager.ensure_companion(&project, &spec) {
        Err(Error::PortInUse {
            port: p, holder, ..
        }) => {
            assert_eq!(p, port);
            assert_eq!(holder.map(|h| h.pid), Some(std::process::id()));
        }
        other => panic!("expected PortInUse, got {other:?}"),
    }
    assert!(companions(&bed).is_empty());
    spec.port = PortPolicy::Auto;
    let err = manager.ensure_companion(&project, &spec).unwrap_err();
    assert!(matches!(err, Error::CompanionPortPolicy { .. }), "{err}");
}

#[test]
fn a_killed_companion_is_replaced_by_the_next_ensure() {
    if e2e_skipped() {
        return;
    }
    let (bed, manager, project) = setup("killed");
    let spec = mcp_spec(&bed, &project);
    let first = manager.ensure_companion(&project, &spec).unwrap();
    assert!(e2e::send_signal(first.pid as i32, libc::SIGKILL));
    e2e::poll_until(Duration::from_secs(10), "the companion dies", || {
        manager.reap();
        (!alive(first.pid)).then_some(())
    });
    let status = manager.companion_status(&project).unwrap().unwrap();
    assert!(!status.alive && status.answered_ms.is_none(), "{status:?}");
    let second = manager.ensure_companion(&project, &spec).unwrap();
    assert_ne!(second.pid, first.pid);
    assert!(status_line(second.port).starts_with("HTTP/1.1 "));
    manager.stop_companion(&project).unwrap();
}

#[test]
fn the_servers_restart_and_stop_leave_the_companion_and_destroy_stops_it() {
    if e2e_skipped() {
        return;
    }
    let (bed, manager, project) = setup("restart");
    let server = manager.ensure(&project).unwrap();
    let companion = manager
        .ensure_companion(&project, &mcp_spec(&bed, &project))
        .unwrap();
    let restarted = manager.restart(&project).unwrap();
    assert_ne!(restarted.pid, server.pid);
    assert!(
        alive(companion.pid),
        "the server's restart took the companion"
    );
    // A server that died is repaired by the next ensure: same.
    assert!(e2e::send_signal(restarted.pid as i32, libc::SIGKILL));
    e2e::poll_until(Duration::from_secs(10), "the server dies", || {
        manager.reap();
        (!alive(restarted.pid)).then_some(())
    });
    let repaired = manager.ensure(&project).unwrap();
    assert_ne!(repaired.pid, restarted.pid);
    assert!(
        alive(companion.pid),
        "the server's repair took the companion"
    );
    manager.stop(&project).unwrap();
    assert!(alive(companion.pid), "the server's stop took the companion");
    let status = manager.companion_status(&project).unwrap().unwrap();
    assert!(status.alive && status.answered_ms.is_some(), "{status:?}");
    manager.destroy(&project).unwrap();
    assert!(!alive(companion.pid), "destroy left the companion");
    assert!(companions(&bed).is_empty(), "{:?}", companions(&bed));
}

#[test]
fn gc_stops_the_companion_of_a_project_it_removes_and_orphans_of_none() {
    if e2e_skipped() {
        return;
    }
    let (bed, manager, project) = setup("gc");
    let companion = manager
        .ensure_companion(&project, &mcp_spec(&bed, &project))
        .unwrap();
    // An orphan of another project: its record is gone (a crash, a hand).
    let other = bed.new_project("gc-orphan");
    let orphan = manager
        .ensure_companion(&other, &mcp_spec(&bed, &other))
        .unwrap();
    std::fs::remove_dir_all(manager.paths(&other).unwrap().dir).unwrap();
    let report = manager.gc().unwrap();
    assert!(
        report
            .removed
            .contains(&manager.paths(&project).unwrap().dir),
        "{report:?}"
    );
    assert!(!alive(companion.pid), "gc left the companion");
    assert!(!alive(orphan.pid), "gc left the orphan companion");
    assert!(companions(&bed).is_empty(), "{:?}", companions(&bed));
}

/// One JSON-RPC call to an `ocm mcp --http` companion, with the token.
fn call_tool(port: u16, tool: &str, project: &Path) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": {"project": project}}})
    .to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n\
         MCP-Protocol-Version: 2025-11-25\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn a_server_the_companion_starts_is_the_projects_server_not_part_of_the_companion() {
    if e2e_skipped() {
        return;
    }
    let (bed, manager, project) = setup("through");
    let companion = manager
        .ensure_companion(&project, &mcp_spec(&bed, &project))
        .unwrap();
    let answer = call_tool(companion.port, "opencode_start", &project);
    let started = &answer["result"]["structuredContent"];
    assert_eq!(started["status"], "running", "{answer}");
    let pid = started["pid"].as_u64().unwrap() as u32;
    // Recognised as the project's server by this process's manager.
    let status = manager.status(&project).unwrap();
    assert_eq!(status.pid, Some(pid), "{status:?}");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        !String::from_utf8_lossy(&environ).contains(manager::COMPANION_VAR),
        "the server carries the companion's marker"
    );
    // The bearer token is the companion's: the agent's shell commands in
    // the server cannot read it.
    assert!(
        !String::from_utf8_lossy(&environ).contains(TOKEN),
        "the server inherited the companion's bearer token"
    );
    // Its restart is the server's alone.
    let restarted = manager.restart(&project).unwrap();
    assert_ne!(restarted.pid, pid);
    assert!(!alive(pid), "the old server still runs");
    assert!(
        alive(companion.pid),
        "the server's restart took the companion"
    );
    manager.destroy(&project).unwrap();
    assert!(!alive(companion.pid) && !alive(restarted.pid));
}
