//! `ocm supervise` of a sandbox's clone: the server is restarted with the
//! sandbox's own configuration (its password and port range from `.env`),
//! and the companion beside it is watched too: killed, it is restarted.
//! Real opencode, mock model, a `file://` repository.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use e2e::{TestBed, e2e_skipped, ocm_bin, opencode_bin};
use sandbox::{EnvMode, SandboxConfig, SandboxName, Sandboxes, Up, UpOptions};
use serde_json::Value;

/// The sandboxes where `ocm supervise` (given the bed's environment, whose
/// `XDG_DATA_HOME` is `<bed>/data`) looks for them.
fn sandboxes(bed: &TestBed) -> Sandboxes {
    let mut config = SandboxConfig::new(ocm_bin());
    config.data_root = Some(bed.root().join("data").join("ocm"));
    config.mode = EnvMode::Development;
    config.manager = manager::Config {
        opencode_bin: Some(opencode_bin()),
        state_root: Some(bed.state_dir.clone()),
        env_set: bed.child_env(),
        ..manager::Config::default()
    };
    Sandboxes::new(config).unwrap()
}

/// The next line of `ocm supervise --json` for which `wanted` holds.
fn next(lines: &Receiver<Value>, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(v) if wanted(&v) => return v,
            Ok(_) => {}
            Err(e) => panic!("no {what} from ocm supervise: {e}"),
        }
    }
}

fn note_pid(v: &Value) -> u32 {
    let note = v["note"].as_str().unwrap();
    let after = note.split("(pid ").nth(1).unwrap();
    after[..after.find(')').unwrap()].parse().unwrap()
}

#[test]
fn supervise_restarts_a_sandboxs_server_with_its_password_and_its_companion() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let sandboxes = sandboxes(&bed);
    let name: SandboxName = "watched".parse().unwrap();
    let options = UpOptions {
        git_url: Some(e2e::git_server::file_repo(&bed)),
        ssh_key: None,
    };
    let Up::Ready(up) = sandboxes.up(&name, &options).unwrap() else {
        panic!("a file:// URL needs no key");
    };
    let server_pid = up.server.as_ref().unwrap().pid.unwrap();
    let companion_pid = up.companion.as_ref().unwrap().pid;
    let repo = sandboxes.repo(&name);

    let mut child = bed
        .command(ocm_bin())
        .args(["supervise", "--json"])
        .arg(&repo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx
                .send(serde_json::from_str::<Value>(&line).unwrap())
                .is_err()
            {
                break;
            }
        }
    });
    // Adopted: the same server, the same companion.
    let running = next(&lines, "running", |v| v["state"] == "running");
    assert_eq!(running["pid"], server_pid, "{running}");
    let note = next(&lines, "the companion", |v| {
        v["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("companion running"))
    });
    assert_eq!(note_pid(&note), companion_pid, "{note}");

    // The server killed: restarted as the sandbox starts it (its password,
    // its port range), so the sandbox finds it healthy.
    e2e::send_signal(-(server_pid as i32), libc::SIGKILL);
    next(&lines, "crashed", |v| v["state"] == "crashed");
    let back = next(&lines, "running again", |v| v["state"] == "running");
    let status = sandboxes.status(&name).unwrap();
    let server = status.server.as_ref().unwrap();
    assert_eq!(
        server.pid.map(u64::from),
        back["pid"].as_u64(),
        "{status:?}"
    );
    assert!(server.healthy, "{status:?}");
    assert!((4100..=4199).contains(&server.port.unwrap()), "{status:?}");

    // The companion killed: restarted, answering.
    e2e::send_signal(-(companion_pid as i32), libc::SIGKILL);
    next(&lines, "the companion's exit", |v| {
        v["note"]
            .as_str()
            .is_some_and(|n| n.contains(&format!("companion (pid {companion_pid}) exited")))
    });
    let again = next(&lines, "a new companion", |v| {
        v["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("companion running"))
    });
    let status = sandboxes.status(&name).unwrap();
    let companion = status.companion.as_ref().unwrap();
    assert_eq!(companion.pid, note_pid(&again));
    assert!(companion.answered, "{status:?}");

    e2e::send_signal(child.id() as i32, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    sandboxes.destroy(&name).unwrap();
}
