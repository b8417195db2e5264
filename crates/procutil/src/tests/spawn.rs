//! spawn_detached: detachment, session, descriptors, signal state, output,
//! environment, working directory and errors.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::support::*;
use crate::procfs::read_stat;
use crate::{
    Error, Output, ProcessIdentity, SpawnSpec, Termination, boot_id, environ_var, spawn_detached,
    terminate,
};

const WAIT: Duration = Duration::from_secs(30);

fn sleeper() -> SpawnSpec {
    SpawnSpec::new("sleep").arg("1000")
}

const INTERMEDIATE_ENV: &str = "OCM_PROCUTIL_TEST_INTERMEDIATE_OUT";

/// The test binary runs itself as an intermediate parent (this same test
/// with `INTERMEDIATE_ENV` set), which starts a detached `sleep`, writes its
/// pid and start time to a file and exits. The sleep must outlive it.
#[test]
fn detached_child_survives_its_parent_exiting() {
    if let Some(out) = std::env::var_os(INTERMEDIATE_ENV) {
        // The intermediate's part: spawn, report, exit without waiting.
        let child = spawn_detached(&sleeper().env_remove(INTERMEDIATE_ENV)).unwrap();
        let report = format!("{} {}\n", child.pid(), child.identity().start_time);
        std::fs::write(out, report).unwrap();
        return;
    }

    setup();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("detached.pid");
    let log = dir.path().join("intermediate.log");
    let test_name = concat!(
        module_path!(),
        "::detached_child_survives_its_parent_exiting"
    )
    .strip_prefix("procutil::")
    .unwrap();
    let spec = SpawnSpec::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--test-threads=1"])
        .env(INTERMEDIATE_ENV, &out)
        .output(Output::AppendTo(log.clone()));
    let intermediate = ChildGuard(spawn_detached(&spec).unwrap());
    let status = intermediate.wait_timeout(WAIT).unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        status.map(|s| s.success()),
        Some(true),
        "intermediate: {status:?}\n{log_text}"
    );
    assert!(
        log_text.contains("1 passed"),
        "the intermediate did not run the test:\n{log_text}"
    );

    let report = std::fs::read_to_string(&out).unwrap();
    let mut fields = report.split_whitespace().map(|f| f.parse::<u64>().unwrap());
    let detached = ProcessIdentity {
        pid: u32::try_from(fields.next().unwrap()).unwrap(),
        start_time: fields.next().unwrap(),
        boot_id: boot_id().unwrap(),
    };
    let _cleanup = KillOnDrop(detached.clone());

    // The parent is gone (reaped above); the child runs on, handed over to
    // us as subreaper.
    assert!(
        detached.is_alive(),
        "the detached child died with its parent"
    );
    let stat = read_stat(detached.pid).unwrap();
    assert_ne!(stat.ppid, intermediate.pid());
    assert_eq!(stat.ppid, std::process::id());
    assert_eq!(stat.pgrp, detached.pid, "leads its own group");

    assert_eq!(
        terminate(&detached, WAIT).unwrap(),
        Termination::ExitedOnTerm
    );
    assert!(!detached.is_alive());
    assert_no_zombie(&detached);
    assert_no_zombie(intermediate.identity());
}

#[test]
fn child_leads_a_new_session_with_stdin_and_output_on_dev_null() {
    setup();
    let child = ChildGuard(spawn_detached(&sleeper()).unwrap());
    let pid = child.pid();
    let stat = read_stat(pid).unwrap();
    assert_eq!((stat.session, stat.pgrp), (pid, pid));
    assert_ne!(stat.session, read_stat(std::process::id()).unwrap().session);
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target.to_str(), Some("/dev/null"), "fd {fd}");
    }
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
    assert_no_zombie(child.identity());
}

#[test]
fn child_inherits_no_descriptor_beyond_stdio() {
    setup();
    assert_only_stdio_is_inherited();
}

/// The same with the /proc/self/fd listing that kernels without
/// `CLOSE_RANGE_CLOEXEC` use.
#[test]
fn child_inherits_no_descriptor_beyond_stdio_without_close_range() {
    setup();
    crate::spawn::NO_CLOSE_RANGE.set(true);
    assert_only_stdio_is_inherited();
}

/// The same with the loop up to the open-files limit, for when neither
/// works.
#[test]
fn child_inherits_no_descriptor_beyond_stdio_without_close_range_or_listing() {
    setup();
    crate::spawn::NO_CLOSE_RANGE.set(true);
    crate::spawn::NO_FD_LISTING.set(true);
    assert_only_stdio_is_inherited();
}

/// Leaves inheritable descriptors open while spawning: a pipe, /dev/null,
/// more of them than one `getdents64` call lists, and one with a high number.
fn assert_only_stdio_is_inherited() {
    // Descriptors without close-on-exec, as careless code elsewhere in the
    // process might leave them.
    let mut pipe = [0; 2];
    // SAFETY: pipe fills the two-element array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: valid C string literal.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(null >= 0);
    let mut leaky = vec![pipe[0], pipe[1], null];
    // A 4 KiB listing holds about 170 names of this length.
    for _ in 0..200 {
        // SAFETY: dup of our own descriptor.
        let copy = unsafe { libc::dup(null) };
        assert!(copy >= 0, "dup: {}", io::Error::last_os_error());
        leaky.push(copy);
    }
    // SAFETY: rlimit is a valid out pointer.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let high = libc::c_int::try_from(limit.rlim_cur.min(1 << 16)).unwrap() - 1;
    // SAFETY: dup2 of our own descriptor onto a number nobody else uses.
    assert_eq!(unsafe { libc::dup2(null, high) }, high);
    leaky.push(high);
    for &fd in &leaky {
        // SAFETY: fcntl on our own descriptor.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, 0, "fd {fd} must be inheritable");
    }

    // A shell that stops itself: once it has stopped it has run its whole
    // start-up, and it opens no descriptor of its own (unlike a program that
    // reads locale files while it starts).
    let dir = tempfile::tempdir().unwrap();
    let spec = SpawnSpec::new("sh")
        .args(["-c", "kill -STOP $$"])
        .output(Output::AppendTo(dir.path().join("log")));
    let spawned = spawn_detached(&spec);
    for fd in leaky {
        // SAFETY: closing our own descriptors.
        unsafe { libc::close(fd) };
    }
    let child = ChildGuard(spawned.unwrap());
    let mut status = 0;
    // SAFETY: waits for our own child to stop.
    let rc = unsafe { libc::waitpid(raw(child.pid()), &mut status, libc::WUNTRACED) };
    assert_eq!(rc, raw(child.pid()));
    assert!(libc::WIFSTOPPED(status), "status {status:#x}");

    let fds: BTreeSet<String> = std::fs::read_dir(format!("/proc/{}/fd", child.pid()))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<String> = ["0", "1", "2"].map(String::from).into();
    assert_eq!(fds, expected);
    // terminate sends SIGCONT after SIGTERM, so the stopped shell dies.
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
}

#[test]
fn child_starts_with_default_signal_dispositions_and_an_empty_mask() {
    setup();
    // The Rust runtime ignores SIGPIPE in this process, so a child that
    // simply inherited dispositions would show it in SigIgn.
    assert_ne!(
        signal_mask("self", "SigIgn") & signal_bit(libc::SIGPIPE),
        0,
        "precondition: SIGPIPE is ignored here"
    );
    // The mask is per thread: block signals in this test's thread only.
    // SAFETY: valid sigset pointers; the old mask is restored below.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGUSR2);
        libc::sigaddset(&mut block, libc::SIGTERM);
        libc::sigaddset(&mut block, libc::SIGRTMIN() + 1);
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old), 0);
    }
    let thread_blocked = signal_mask("thread-self", "SigBlk");
    let spawned = spawn_detached(&sleeper());
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    assert_ne!(
        thread_blocked & signal_bit(libc::SIGUSR2),
        0,
        "precondition"
    );
    let child = ChildGuard(spawned.unwrap());

    let pid = child.pid().to_string();
    assert_eq!(signal_mask(&pid, "SigIgn"), 0, "ignored signals");
    assert_eq!(signal_mask(&pid, "SigBlk"), 0, "blocked signals");
    assert_eq!(signal_mask(&pid, "SigCgt"), 0, "caught signals");
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
}

#[test]
fn output_is_appended_to_the_file() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    std::fs::write(&log, "earlier\n").unwrap();
    let spec = SpawnSpec::new("sh")
        .args([
            "-c",
            "echo out; echo err >&2; read line || echo stdin-empty",
        ])
        .output(Output::AppendTo(log.clone()));
    let child = ChildGuard(spawn_detached(&spec).unwrap());
    let status = child.wait_timeout(WAIT).unwrap().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "earlier\nout\nerr\nstdin-empty\n"
    );
    assert_no_zombie(child.identity());
}

#[test]
fn a_new_output_file_is_private() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("new.log");
    let spec = SpawnSpec::new("sh")
        .args(["-c", "echo hello"])
        .output(Output::AppendTo(log.clone()));
    let child = ChildGuard(spawn_detached(&spec).unwrap());
    assert!(child.wait_timeout(WAIT).unwrap().unwrap().success());
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "hello\n");
}

#[test]
fn environment_can_be_set_removed_and_cleared() {
    setup();
    // The test never changes its own environment, so what it reads is what
    // it started with and what a child inherits.
    let (kept_name, kept_value) = std::env::vars()
        .find(|(name, _)| name != "PATH" && !name.starts_with("OCM_PROCUTIL_TEST"))
        .expect("precondition: some variable besides PATH is set");
    let spec = sleeper()
        .env("OCM_PROCUTIL_TEST_VALUE", "a value with spaces")
        .env("OCM_PROCUTIL_TEST_GONE", "x")
        .env_remove("OCM_PROCUTIL_TEST_GONE")
        .env_remove("PATH");
    let child = ChildGuard(spawn_detached(&spec).unwrap());
    let pid = child.pid();
    assert_eq!(
        environ_var(pid, "OCM_PROCUTIL_TEST_VALUE")
            .unwrap()
            .as_deref(),
        Some("a value with spaces")
    );
    assert_eq!(environ_var(pid, "OCM_PROCUTIL_TEST_GONE").unwrap(), None);
    assert_eq!(environ_var(pid, "PATH").unwrap(), None);
    assert_eq!(
        environ_var(pid, &kept_name).unwrap(),
        Some(kept_value),
        "the rest is inherited"
    );
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);

    let spec = SpawnSpec::new(which("sleep"))
        .arg("1000")
        .env("DROPPED_BY_CLEAR", "1")
        .env_clear()
        .env("ONLY", "this");
    let child = ChildGuard(spawn_detached(&spec).unwrap());
    let environ = std::fs::read(format!("/proc/{}/environ", child.pid())).unwrap();
    assert_eq!(environ, b"ONLY=this\0");
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
}

#[test]
fn child_runs_in_the_given_directory() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let child = ChildGuard(spawn_detached(&sleeper().cwd(dir.path())).unwrap());
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", child.pid())).unwrap();
    assert_eq!(cwd, dir.path().canonicalize().unwrap());
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
}

#[test]
fn a_missing_program_is_a_clear_error() {
    setup();
    let missing = "/nonexistent-ocm-dir/ocm-procutil-no-such-program";
    let err = spawn_detached(&SpawnSpec::new(missing)).unwrap_err();
    match &err {
        Error::Exec { source, .. } => assert_eq!(source.kind(), io::ErrorKind::NotFound),
        other => panic!("expected Exec, got {other:?}"),
    }
    assert!(err.to_string().contains(missing), "{err}");

    let err = spawn_detached(&SpawnSpec::new("ocm-procutil-no-such-program")).unwrap_err();
    assert!(matches!(err, Error::Exec { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("ocm-procutil-no-such-program") && message.contains("not found in PATH"),
        "{message}"
    );
}

#[test]
fn a_program_that_is_not_executable_is_a_clear_error() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = spawn_detached(&SpawnSpec::new(&script)).unwrap_err();
    match &err {
        Error::Exec { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::PermissionDenied)
        }
        other => panic!("expected Exec, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(script.to_str().unwrap()), "{message}");
}

#[test]
fn a_missing_working_directory_is_a_clear_error() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let err = spawn_detached(&sleeper().cwd(&missing)).unwrap_err();
    match &err {
        Error::Cwd { cwd, source, .. } => {
            assert_eq!(cwd, &missing);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected Cwd, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(missing.to_str().unwrap()) && message.contains("sleep"),
        "{message}"
    );

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = spawn_detached(&sleeper().cwd(&file)).unwrap_err();
    assert!(matches!(err, Error::Cwd { .. }), "{err:?}");
}

#[test]
fn an_unopenable_output_file_is_a_clear_error() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("missing-dir").join("server.log");
    let err = spawn_detached(&sleeper().output(Output::AppendTo(log.clone()))).unwrap_err();
    assert!(matches!(err, Error::OutputFile { .. }), "{err:?}");
    assert!(err.to_string().contains(log.to_str().unwrap()), "{err}");
}

#[test]
fn wait_timeout_reports_running_then_the_exit_status() {
    setup();
    let spec = SpawnSpec::new("sh").args(["-c", "exit 3"]);
    let child = ChildGuard(spawn_detached(&spec).unwrap());
    let status = child.wait_timeout(WAIT).unwrap().unwrap();
    assert_eq!((status.code, status.signal), (Some(3), None));
    assert_eq!(status.to_string(), "exit status 3");
    assert_eq!(
        child.try_wait().unwrap(),
        Some(status),
        "kept after reaping"
    );
    assert_no_zombie(child.identity());

    let child = ChildGuard(spawn_detached(&sleeper()).unwrap());
    assert_eq!(child.try_wait().unwrap(), None);
    assert_eq!(child.wait_timeout(Duration::from_millis(20)).unwrap(), None);
    assert!(child.identity().is_alive());
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
    let status = child.try_wait().unwrap().unwrap();
    assert_eq!(status.signal, Some(libc::SIGTERM));
    assert_eq!(status.to_string(), "killed by signal 15");
    assert_no_zombie(child.identity());
}
