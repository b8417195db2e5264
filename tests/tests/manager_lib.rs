//! The manager crate used as a library, in-process, against the real
//! opencode: progress reports, reuse, reaping of its own children, the
//! password and port policies, restart, and a start that fails.

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{TestBed, e2e_skipped, http_agent, manager_in};
use manager::{Error, Manager, PasswordPolicy, PortPolicy, Progress, ServerState, StartFailure};

fn recording(manager: Manager) -> (Manager, Arc<Mutex<Vec<Progress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let manager = manager.with_progress(move |p| sink.lock().unwrap().push(p.clone()));
    (manager, seen)
}

/// True when `pid` no longer exists at all: not running and not a zombie
/// waiting to be reaped.
fn is_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn health_status(url: &str) -> u16 {
    http_agent(Duration::from_secs(5))
        .get(format!("{url}/global/health"))
        .call()
        .expect("health request")
        .status()
        .as_u16()
}

#[test]
fn ensure_reports_progress_reuses_and_stop_reaps_its_own_child() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (manager, seen) = recording(manager_in(&bed, |_| {}));

    let first = manager.ensure(&bed.project).expect("start a server");
    assert!(!first.reused);
    assert_eq!(first.status, ServerState::Running);
    assert_eq!(first.version.as_deref(), Some(e2e::OPENCODE_VERSION));
    assert_eq!(first.port, portmap::port_for_project(&bed.project).unwrap());
    assert_eq!(bed.opencode_pids(), vec![first.pid]);
    assert_eq!(
        first.child_env(),
        vec![("OPENCODE_SERVER".to_string(), first.url.clone())]
    );
    let health = first
        .client()
        .unwrap()
        .health()
        .expect("health via the API");
    assert!(health.healthy);

    // The order of the start's progress reports.
    let kinds: Vec<&'static str> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|p| match p {
            Progress::Starting { .. } => "starting",
            Progress::WaitingForListen { .. } => "waiting",
            Progress::Listening { .. } => "listening",
            Progress::Healthy { .. } => "healthy",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["starting", "waiting", "listening", "healthy"]);

    let second = manager.ensure(&bed.project).expect("reuse");
    assert!(second.reused);
    assert_eq!(second.pid, first.pid);
    assert!(matches!(
        seen.lock().unwrap().last(),
        Some(Progress::Reused { pid, .. }) if *pid == first.pid
    ));

    let status = manager.status(&bed.project).unwrap();
    assert_eq!(status.status, ServerState::Running);
    assert!(status.healthy);
    assert!(status.resident_memory_bytes.unwrap_or(0) > 10 * 1024 * 1024);
    assert!(status.uptime_seconds.is_some());

    let report = manager.stop(&bed.project).expect("stop");
    assert_eq!(report.pid, Some(first.pid));
    assert!(report.stopped.is_some());
    // The server was this process's own child: stop must also reap it.
    assert!(is_gone(first.pid), "pid {} is left as a zombie", first.pid);
    assert!(bed.opencode_pids().is_empty());
    let listed = manager.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, ServerState::Stopped);
    assert_eq!(listed[0].pid, None, "a stopped server reports no pid");
    assert_eq!(
        listed[0].project,
        portmap::resolve_path(&bed.project).unwrap()
    );
}

#[test]
fn a_generated_password_protects_the_server_and_is_found_again() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let manager = manager_in(&bed, |c| c.password = PasswordPolicy::Generate);
    let info = manager.ensure(&bed.project).expect("start with a password");
    assert!(info.has_auth());
    let password = info.password().unwrap().to_string();
    assert_eq!(password.len(), 32);
    assert!(!format!("{info:?}").contains(&password));
    assert!(
        info.child_env()
            .contains(&("OPENCODE_SERVER_PASSWORD".to_string(), password.clone()))
    );

    // Without credentials the server refuses; with them it answers.
    assert_eq!(health_status(&info.url), 401);
    assert!(info.client().unwrap().health().unwrap().healthy);

    // The password is kept 0600 in the project's state folder ...
    use std::os::unix::fs::PermissionsExt;
    let file = manager.paths(&bed.project).unwrap().dir.join("password");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);

    // ... so a later manager without the policy still sees a healthy server
    // and reuses it with the same password.
    let later = manager_in(&bed, |_| {});
    let status = later.status(&bed.project).unwrap();
    assert_eq!(status.status, ServerState::Running, "{status:?}");
    let again = manager.ensure(&bed.project).unwrap();
    assert!(again.reused);
    assert_eq!(again.password(), Some(password.as_str()));
    manager.stop(&bed.project).unwrap();
}

#[test]
fn a_fixed_port_held_by_another_program_is_an_error_naming_it() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let manager = manager_in(&bed, |c| c.port_policy = PortPolicy::Fixed(port));
    let err = manager.ensure(&bed.project).unwrap_err();
    match &err {
        Error::PortInUse {
            port: p, holder, ..
        } => {
            assert_eq!(*p, port);
            assert_eq!(holder.as_ref().map(|h| h.pid), Some(std::process::id()));
        }
        other => panic!("expected PortInUse, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&port.to_string()), "{message}");
    assert!(
        message.contains(&std::process::id().to_string()),
        "{message}"
    );
    assert!(bed.opencode_pids().is_empty());
    // The holder is untouched.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
fn range_and_auto_policies_and_restart() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    // A range whose first port is taken: the server gets a later one.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let first = taken.local_addr().unwrap().port();
    let last = first.saturating_add(20);
    let ranged = manager_in(&bed, |c| c.port_policy = PortPolicy::Range(first..=last));
    let info = ranged.ensure(&bed.project).expect("start in the range");
    assert!(info.port > first && info.port <= last, "{}", info.port);
    assert_eq!(health_status(&info.url), 200);

    // Restart: a new process, the old one gone.
    let restarted = ranged.restart(&bed.project).expect("restart");
    assert!(!restarted.reused);
    assert_ne!(restarted.pid, info.pid);
    assert!(is_gone(info.pid));
    assert_eq!(bed.opencode_pids(), vec![restarted.pid]);
    ranged.stop(&bed.project).unwrap();

    // Auto: opencode picks, the port comes from its listening line.
    let other = bed.new_project("auto");
    let auto = manager_in(&bed, |c| c.port_policy = PortPolicy::Auto);
    let info = auto
        .ensure(&other)
        .expect("start on an opencode-chosen port");
    assert_ne!(info.port, 0);
    assert!(info.url.ends_with(&format!(":{}", info.port)));
    assert_eq!(health_status(&info.url), 200);
    let recorded = manager::read_record(&auto.paths(&other).unwrap().record)
        .unwrap()
        .unwrap();
    assert_eq!(recorded.port, info.port);
    auto.stop(&other).unwrap();
    assert!(bed.opencode_pids().is_empty());
}

#[test]
fn a_server_that_cannot_start_fails_with_its_log_and_exit_status() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    // opencode exits at once when it cannot create its data folder.
    let manager = manager_in(&bed, |c| {
        c.env_set
            .push(("XDG_DATA_HOME".into(), "/dev/null/not-a-folder".into()));
    });
    let err = manager.ensure(&bed.project).unwrap_err();
    let Error::StartFailed {
        attempts,
        exit,
        log_tail,
        log_path,
        ..
    } = &err
    else {
        panic!("expected StartFailed, got {err:?}");
    };
    assert_eq!(*attempts, 2);
    assert_eq!(
        exit.map(|e| e.to_string()).as_deref(),
        Some("exit status 1"),
        "{err}"
    );
    assert_eq!(exit.and_then(|e| e.code), Some(1), "{err}");
    assert!(
        log_tail.iter().any(|l| l.contains("ENOTDIR")),
        "{log_tail:?}"
    );
    assert!(log_tail.len() <= 20);
    assert!(log_path.exists());
    let message = err.to_string();
    assert!(message.contains("ENOTDIR"), "{message}");
    assert!(bed.opencode_pids().is_empty());
    assert_eq!(
        manager.status(&bed.project).unwrap().status,
        ServerState::Stopped
    );
}

#[test]
fn a_password_given_later_is_not_claimed_for_an_open_server() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let open = manager_in(&bed, |_| {}).ensure(&bed.project).unwrap();
    assert!(!open.has_auth());
    let (asked, seen) = recording(manager_in(&bed, |c| {
        c.password = PasswordPolicy::Fixed("later-secret".into());
    }));
    let reused = asked.ensure(&bed.project).unwrap();
    assert!(reused.reused);
    assert_eq!(reused.pid, open.pid);
    assert!(!reused.has_auth(), "the running server has no password");
    assert_eq!(health_status(&reused.url), 200);
    assert!(seen.lock().unwrap().iter().any(|p| matches!(
        p,
        Progress::PasswordNotApplied { pid } if *pid == open.pid
    )));
    // From its next start the password applies.
    let restarted = asked.restart(&bed.project).unwrap();
    assert!(restarted.has_auth());
    assert_eq!(health_status(&restarted.url), 401);
    asked.stop(&bed.project).unwrap();
}

#[test]
fn destroy_racing_with_ensures_leaves_at_most_one_server() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let first = manager_in(&bed, |_| {}).ensure(&bed.project).unwrap();
    let barrier = std::sync::Barrier::new(9);
    let results: Vec<Result<u32, String>> = std::thread::scope(|scope| {
        let destroyer = scope.spawn(|| {
            // Each thread has its own manager: like separate processes, its
            // locks are separate open files.
            let manager = manager_in(&bed, |_| {});
            barrier.wait();
            manager
                .destroy(&bed.project)
                .map(|_| 0)
                .map_err(|e| e.to_string())
        });
        let ups: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let manager = manager_in(&bed, |_| {});
                    barrier.wait();
                    manager
                        .ensure(&bed.project)
                        .map(|info| info.pid)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        let mut all = vec![destroyer.join().unwrap()];
        all.extend(ups.into_iter().map(|t| t.join().unwrap()));
        all
    });
    for result in &results {
        assert!(result.is_ok(), "{results:?}");
    }
    let live = bed.opencode_pids();
    assert!(live.len() <= 1, "servers {live:?} after {results:?}");
    // Every ensure got the first server (before the destroy) or the one
    // server left running.
    for pid in results[1..].iter().flatten() {
        assert!(
            *pid == first.pid || live.contains(pid),
            "ensure returned pid {pid}, live {live:?}, first {}",
            first.pid
        );
    }
    manager_in(&bed, |_| {}).stop(&bed.project).unwrap();
    assert!(bed.opencode_pids().is_empty());
}

#[test]
fn one_state_folder_by_two_paths_is_one_state_root() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let link = bed.root().join("state-link");
    std::os::unix::fs::symlink(&bed.state_dir, &link).unwrap();
    let direct = manager_in(&bed, |_| {});
    let via_link = manager_in(&bed, |c| c.state_root = Some(link.clone()));
    assert_eq!(direct.state_root(), via_link.state_root());
    let info = direct.ensure(&bed.project).unwrap();
    // Through the link the same server is found, reused and stopped.
    assert_eq!(
        via_link.status(&bed.project).unwrap().status,
        ServerState::Running
    );
    let again = via_link.ensure(&bed.project).unwrap();
    assert!(again.reused);
    assert_eq!(again.pid, info.pid);
    let report = via_link.stop(&bed.project).unwrap();
    assert_eq!(report.pid, Some(info.pid));
    assert!(bed.opencode_pids().is_empty());
}

/// A wrapper script around the real binary, as package managers install.
fn wrapper(bed: &TestBed, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = bed.root().join(name);
    let script = format!(
        "#!/bin/sh\nOPENCODE={}\n{body}\n",
        e2e::opencode_bin().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_wrapper_script_is_managed_and_one_that_hides_the_server_is_refused() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    // The shell stays the group leader; opencode runs as its child.
    let passes_on = wrapper(&bed, "oc-wrapper", "\"$OPENCODE\" \"$@\"");
    let manager = manager_in(&bed, |c| c.opencode_bin = Some(passes_on.clone()));
    let info = manager
        .ensure(&bed.project)
        .expect("start through the wrapper");
    assert!(manager.ensure(&bed.project).unwrap().reused);
    assert_eq!(bed.opencode_pids().len(), 1);
    manager.stop(&bed.project).unwrap();
    assert!(
        bed.opencode_pids().is_empty(),
        "the wrapper's child survived"
    );
    assert!(!Path::new(&format!("/proc/{}", info.pid)).exists());

    // A wrapper that changes the arguments makes a server ocm could not
    // find again: the start is refused and nothing is left running.
    let hides = wrapper(
        &bed,
        "oc-reorders",
        "exec \"$OPENCODE\" serve --port \"$5\" --hostname \"$3\"",
    );
    let other = bed.new_project("hidden");
    let manager = manager_in(&bed, |c| c.opencode_bin = Some(hides.clone()));
    let err = manager.ensure(&other).unwrap_err();
    assert!(
        matches!(&err, Error::StartFailed { failure, .. }
            if matches!(**failure, StartFailure::Unrecognised { .. })
                && err.to_string().contains("would not be recognised")),
        "{err}"
    );
    assert!(bed.opencode_pids().is_empty());
}
