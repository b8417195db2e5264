//! The sandbox library end to end with a `file://` repository: `up` clones
//! and starts the server and the default companion (`ocm mcp --http`), both
//! healthy; a second `up` fetches and reuses them; `down` stops both;
//! `restart` replaces both; `destroy` leaves no process, no sandbox or
//! state folder; no secret reaches
//! argv, a log, a record or the JSON.

use std::path::Path;
use std::time::Duration;

use e2e::{TestBed, e2e_skipped, ocm_bin, opencode_bin};
use sandbox::{EnvMode, Outcome, SandboxConfig, SandboxName, Sandboxes, Up, UpOptions};

fn sandboxes(bed: &TestBed) -> Sandboxes {
    let mut config = SandboxConfig::new(ocm_bin());
    config.data_root = Some(bed.root().join("sandbox-data"));
    config.mode = EnvMode::Development;
    config.manager = manager::Config {
        opencode_bin: Some(opencode_bin()),
        state_root: Some(bed.state_dir.clone()),
        env_set: bed.child_env(),
        ..manager::Config::default()
    };
    Sandboxes::new(config).unwrap()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !e2e::is_zombie(pid)
}

/// The HTTP status of a response, whether the agent reports it as an error
/// or not.
fn code(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> u16 {
    match result {
        Ok(response) => response.status().as_u16(),
        Err(ureq::Error::StatusCode(code)) => code,
        Err(other) => panic!("no HTTP answer: {other}"),
    }
}

fn secret(env_text: &str, key: &str) -> String {
    env_text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap()
        .to_string()
}

#[test]
fn up_status_down_destroy_with_a_file_url() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let url = e2e::git_server::file_repo(&bed);
    let sandboxes = sandboxes(&bed);
    let name: SandboxName = "lib-e2e".parse().unwrap();
    let options = UpOptions {
        git_url: Some(url.clone()),
        ssh_key: None,
    };

    let Up::Ready(status) = sandboxes.up(&name, &options).unwrap() else {
        panic!("a file:// URL needs no key");
    };
    assert_eq!(status.status, Outcome::Success, "{status:?}");
    assert_eq!(status.git_url.as_deref(), Some(url.as_str()));
    assert!(
        status.warnings.iter().any(|w| w.contains("review")),
        "{status:?}"
    );
    let server = status.server.clone().unwrap();
    let companion = status.companion.clone().unwrap();
    assert!(server.healthy);
    assert!((4100..=4199).contains(&server.port.unwrap()));
    assert!(companion.answered && companion.alive);
    assert!((5100..=5199).contains(&companion.port));
    assert!(status.last_health_check.is_some());
    assert_eq!(
        std::fs::read_to_string(status.repo.join("README.md")).unwrap(),
        "# origin\n"
    );
    let folder = sandboxes.folder(&name);
    let env_text = std::fs::read_to_string(folder.join(".env")).unwrap();
    let password = secret(&env_text, "OPENCODE_SERVER_PASSWORD");
    let token = secret(&env_text, "MCP_TOOL_BEARER_TOKEN");

    // The companion asks for the token; the server for the password.
    let agent = e2e::http_agent(Duration::from_secs(5));
    let mcp = format!("{}/mcp", companion.url);
    assert_eq!(code(agent.post(&mcp).send("{}")), 401);
    let health = format!("{}/global/health", server.url.clone().unwrap());
    assert_eq!(code(agent.get(&health).call()), 401);

    // Again: fetched, the same processes.
    let Up::Ready(again) = sandboxes.up(&name, &UpOptions::default()).unwrap() else {
        panic!("still no key needed");
    };
    assert_eq!(again.status, Outcome::Success);
    assert_eq!(again.server.as_ref().unwrap().pid, server.pid);
    assert_eq!(again.companion.as_ref().unwrap().pid, companion.pid);
    let listed = sandboxes.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, Outcome::Success);

    // No secret on argv, in a log, a record or the JSON.
    for pid in [server.pid.unwrap(), companion.pid] {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let argv = String::from_utf8_lossy(&argv);
        assert!(
            !argv.contains(&password) && !argv.contains(&token),
            "{argv}"
        );
    }
    let json = serde_json::to_string(&again).unwrap();
    let mut all = Vec::new();
    all.extend(e2e::files_under(&bed.state_dir));
    all.extend(e2e::files_under(&folder));
    for path in all
        .iter()
        .filter(|p| !p.starts_with(&status.repo) && !p.ends_with(".env"))
    {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        assert!(
            !text.contains(&password) && !text.contains(&token),
            "{}",
            path.display()
        );
    }
    assert!(!json.contains(&password) && !json.contains(&token));

    // Down: both stopped.
    let down = sandboxes.down(&name).unwrap();
    assert!(down.companion_stopped);
    assert_eq!(down.server_pid, server.pid);
    assert!(!alive(server.pid.unwrap()) && !alive(companion.pid));
    let stopped = sandboxes.status(&name).unwrap();
    assert_eq!(stopped.status, Outcome::Error);

    // Up again, restart (both new), then destroy: nothing left.
    let Up::Ready(up) = sandboxes.up(&name, &UpOptions::default()).unwrap() else {
        panic!("no key needed");
    };
    let restarted = sandboxes.restart(&name).unwrap();
    assert_eq!(restarted.status, Outcome::Success, "{restarted:?}");
    let (server_pid, companion_pid) = (
        restarted.server.as_ref().unwrap().pid.unwrap(),
        restarted.companion.as_ref().unwrap().pid,
    );
    assert_ne!(Some(server_pid), up.server.as_ref().unwrap().pid);
    assert_ne!(companion_pid, up.companion.as_ref().unwrap().pid);
    assert!(!alive(up.companion.as_ref().unwrap().pid));
    let state_dir = e2e::manager_in(&bed, |_| {})
        .paths(&status.repo)
        .unwrap()
        .dir;
    assert!(state_dir.exists());
    let destroyed = sandboxes.destroy(&name).unwrap();
    assert_eq!(destroyed.folder, folder);
    assert!(!folder.exists());
    assert!(!state_dir.exists(), "{}", state_dir.display());
    assert!(!alive(server_pid) && !alive(companion_pid));
    assert!(sandboxes.list().unwrap().is_empty());
}
