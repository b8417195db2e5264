//! End-to-end: Ctrl-C during `ocm up` cancels the start at any moment
//! (waiting for the lock, waiting for the listening line, checking health):
//! nothing of the project is left running, `status` says stopped, and the
//! next `up` has nothing to repair. Real `ocm` binary, real opencode.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use e2e::{TestBed, e2e_skipped, ocm_bin, poll_until, processes_with_env};
use manager::PROJECT_HASH_VAR;

/// Processes carrying `project`'s marker.
fn marked(project: &Path) -> Vec<u32> {
    let hash = manager::project(project).expect("hash").hash;
    processes_with_env(&format!("{PROJECT_HASH_VAR}={hash}"))
}

fn spawn_up(bed: &TestBed, bin: Option<&Path>) -> Child {
    let mut command = bed.command(ocm_bin());
    command
        .arg("up")
        .arg(&bed.project)
        .current_dir(&bed.project)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(bin) = bin {
        command.env("OPENCODE_BIN", bin);
    }
    command.spawn().expect("start ocm up")
}

/// SIGINT to `child` (our own, unreaped), then its exit code, bounded.
fn interrupt(mut child: Child) -> (i32, String) {
    e2e::send_signal(child.id() as i32, libc::SIGINT);
    let status = poll_until(Duration::from_secs(20), "ocm up to end", || {
        child.try_wait().expect("wait for ocm")
    });
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.code().unwrap_or(-1), stderr)
}

/// After an interrupted start: nothing runs, status says stopped, and the
/// next real `up` repairs nothing.
fn assert_cancelled_cleanly(bed: &TestBed, code: i32, stderr: &str) {
    assert_eq!(code, 130, "ocm up did not end as interrupted: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(marked(&bed.project), Vec::<u32>::new(), "left running");
    let status = bed
        .command(ocm_bin())
        .args(["status", "--json"])
        .arg(&bed.project)
        .output()
        .expect("ocm status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(status["status"], "stopped", "{status}");
    let up = bed
        .command(ocm_bin())
        .args(["up"])
        .arg(&bed.project)
        .output()
        .expect("ocm up");
    let said = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{said}");
    assert!(
        !said.contains("ocm:"),
        "the next up repaired something: {said}"
    );
    let down = bed
        .command(ocm_bin())
        .args(["down"])
        .arg(&bed.project)
        .output()
        .expect("ocm down");
    assert!(down.status.success());
}

/// An `OPENCODE_BIN` wrapper with `body` (the real binary is `$OC`).
fn wrapper(bed: &TestBed, name: &str, body: &str) -> PathBuf {
    let path = bed.root().join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nOC='{}'\n{body}\n",
            e2e::opencode_bin().display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    path
}

#[test]
fn an_interrupt_while_waiting_for_the_lock_starts_nothing() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let paths = statefile::ProjectPaths::new(
        &std::fs::canonicalize(&bed.state_dir).expect("state folder"),
        &manager::project(&bed.project).expect("project").hash,
    );
    statefile::ensure_dir(&paths.dir).expect("project folder");
    let held = statefile::lock(&paths.lock, Duration::from_secs(5)).expect("hold the lock");
    let child = spawn_up(&bed, None);
    // It waits once it has the lock file open.
    let lock = paths.lock.clone();
    let pid = child.id();
    poll_until(
        Duration::from_secs(20),
        "ocm up to wait for the lock",
        || {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .ok()?
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == lock))
                .then_some(())
        },
    );
    let (code, stderr) = interrupt(child);
    drop(held);
    assert_cancelled_cleanly(&bed, code, &stderr);
}

#[test]
fn an_interrupt_while_waiting_for_the_listening_line_stops_the_server() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let slow = wrapper(&bed, "oc-slow", "sleep 30 & wait\nexec \"$OC\" \"$@\"");
    let child = spawn_up(&bed, Some(&slow));
    poll_until(Duration::from_secs(20), "the server to be spawned", || {
        (!marked(&bed.project).is_empty()).then_some(())
    });
    let (code, stderr) = interrupt(child);
    assert_cancelled_cleanly(&bed, code, &stderr);
}

#[test]
fn an_interrupt_while_checking_health_stops_the_server() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    // Says it listens, never answers.
    let mute = wrapper(
        &bed,
        "oc-mute",
        "echo \"opencode server listening on http://$3:$5\"\nsleep 300 & wait",
    );
    let child = spawn_up(&bed, Some(&mute));
    let log = manager::Manager::new(manager::Config {
        state_root: Some(bed.state_dir.clone()),
        ..manager::Config::default()
    })
    .expect("manager")
    .paths(&bed.project)
    .expect("paths")
    .log;
    poll_until(Duration::from_secs(20), "the fake listening line", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("listening on"))
            .then_some(())
    });
    let (code, stderr) = interrupt(child);
    assert_cancelled_cleanly(&bed, code, &stderr);
}
