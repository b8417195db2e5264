//! Process identity and the /proc readers.

use std::time::{Duration, Instant};

use super::support::*;
use crate::procfs::read_stat;
use crate::{
    Error, Pidfd, ProcessIdentity, SpawnSpec, Termination, boot_id, cmdline, environ_var,
    resident_memory, spawn_detached, terminate,
};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn identity_of_self_and_of_a_child() {
    setup();
    let me = ProcessIdentity::of(std::process::id()).unwrap();
    assert!(me.is_alive());
    assert_eq!(me.boot_id, boot_id().unwrap());
    assert_eq!(boot_id().unwrap().len(), 36, "a UUID");

    let child = ChildGuard(spawn_detached(&SpawnSpec::new("sleep").arg("1000")).unwrap());
    let identity = ProcessIdentity::of(child.pid()).unwrap();
    assert_eq!(&identity, child.identity(), "captured at spawn = read now");
    assert!(identity.start_time >= me.start_time);
    assert!(identity.is_alive());
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
    assert!(!identity.is_alive());
    match ProcessIdentity::of(identity.pid) {
        Err(Error::NoSuchProcess { pid }) => assert_eq!(pid, identity.pid),
        // The pid was reused in the meantime, by another process.
        Ok(other) => assert_ne!(other.start_time, identity.start_time),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn identity_of_a_pid_that_does_not_exist_is_an_error() {
    for pid in [0, u32::MAX, i32::MAX as u32] {
        let err = ProcessIdentity::of(pid).unwrap_err();
        assert!(matches!(err, Error::NoSuchProcess { .. }), "{err:?}");
        assert!(err.is_gone());
        assert!(err.to_string().contains(&pid.to_string()), "{err}");
    }
}

/// A zombie has exited: it has no identity, is not alive, and terminate
/// reaps it without signalling anything.
#[test]
fn a_zombie_counts_as_gone() {
    setup();
    let spec = SpawnSpec::new("sh").args(["-c", "exit 7"]);
    let child = ChildGuard(spawn_detached(&spec).unwrap());
    let identity = child.identity().clone();
    // Wait for the exit without reaping: the pidfd becomes readable.
    let pidfd = Pidfd::open(identity.pid).unwrap().expect("pidfd support");
    assert!(pidfd.wait_exited(Instant::now() + WAIT).unwrap());
    assert_eq!(read_stat(identity.pid).unwrap().state, 'Z', "precondition");

    let err = ProcessIdentity::of(identity.pid).unwrap_err();
    assert!(matches!(err, Error::NoSuchProcess { .. }), "{err:?}");
    assert!(!identity.is_alive());
    assert!(matches!(
        crate::signal_group(&identity, 0),
        Err(Error::NoSuchProcess { .. })
    ));
    assert_eq!(
        terminate(&identity, Duration::ZERO).unwrap(),
        Termination::AlreadyGone
    );
    assert_no_zombie(&identity);
}

#[test]
fn forged_identities_do_not_match() {
    setup();
    let child = ChildGuard(spawn_detached(&SpawnSpec::new("sleep").arg("1000")).unwrap());
    let real = child.identity().clone();
    let other_start = ProcessIdentity {
        start_time: real.start_time + 1,
        ..real.clone()
    };
    let other_boot = ProcessIdentity {
        boot_id: "00000000-0000-0000-0000-000000000000".to_string(),
        ..real.clone()
    };
    assert!(real.is_alive());
    assert!(!other_start.is_alive());
    assert!(!other_boot.is_alive());
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
}

#[test]
fn cmdline_memory_and_environment_of_self() {
    let me = std::process::id();
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(cmdline(me).unwrap(), args);
    let rss = resident_memory(me).unwrap();
    // A running test binary has touched at least a few pages.
    assert!(rss >= 64 * 1024, "{rss} bytes");
    let (name, value) = std::env::vars().next().expect("some variable is set");
    assert_eq!(environ_var(me, &name).unwrap(), Some(value));
    assert_eq!(
        environ_var(me, "OCM_PROCUTIL_SURELY_NOT_SET").unwrap(),
        None
    );
}

#[test]
fn cmdline_memory_and_environment_of_a_child() {
    setup();
    // `; exit 0` keeps sh from exec'ing sleep, so sh's command line stays.
    let spec = SpawnSpec::new("sh")
        .args(["-c", "sleep 1000; exit 0", "name with space", "second"])
        .env("OCM_PROCUTIL_TEST_MARK", "marked");
    let child = ChildGuard(spawn_detached(&spec).unwrap());
    let pid = child.pid();
    assert_eq!(
        cmdline(pid).unwrap(),
        [
            "sh",
            "-c",
            "sleep 1000; exit 0",
            "name with space",
            "second"
        ]
    );
    assert!(resident_memory(pid).unwrap() > 0);
    assert_eq!(
        environ_var(pid, "OCM_PROCUTIL_TEST_MARK")
            .unwrap()
            .as_deref(),
        Some("marked")
    );
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);

    for result in [
        cmdline(u32::MAX).map(|_| ()),
        resident_memory(u32::MAX).map(|_| ()),
        environ_var(u32::MAX, "PATH").map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(Error::NoSuchProcess { .. })),
            "{result:?}"
        );
    }
}

/// While a process execs, the kernel shows it with no environment (the new
/// program's is not set up yet, or the old one's is gone): a reader must
/// not take that for a process without the variable.
#[test]
fn a_process_that_execs_keeps_its_environment_for_a_reader() {
    setup();
    // A chain of execs, each sh replacing itself with the next.
    let script = r#"[ "$1" -gt 0 ] && exec sh -c "$0" "$0" $(($1 - 1)); exec sleep 1000"#;
    let spec = SpawnSpec::new("sh")
        .args(["-c", script, script, "300"])
        .env("OCM_PROCUTIL_TEST_MARK", "marked");
    let child = ChildGuard(spawn_detached(&spec).unwrap());
    let pid = child.pid();
    let identity = child.identity().clone();
    let mut reads = 0;
    let mut missed = 0;
    let deadline = Instant::now() + WAIT;
    // Until the chain ends in `sleep` (its command line says so).
    while cmdline(pid).unwrap().first().is_none_or(|a| a != "sleep") {
        assert!(Instant::now() < deadline, "the exec chain did not end");
        let seen = environ_var(pid, "OCM_PROCUTIL_TEST_MARK").unwrap();
        reads += 1;
        if seen.as_deref() != Some("marked") && identity.is_alive() {
            missed += 1;
        }
    }
    assert!(reads > 100, "only {reads} reads during the execs");
    assert_eq!(missed, 0, "{missed} of {reads} reads missed the variable");
    assert_eq!(child.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);

    // A program started with no environment at all reads as empty.
    let bare =
        ChildGuard(spawn_detached(&SpawnSpec::new("env").args(["-i", "sleep", "1000"])).unwrap());
    while cmdline(bare.pid())
        .unwrap()
        .first()
        .is_none_or(|a| a != "sleep")
    {
        assert!(Instant::now() < deadline, "env did not exec sleep");
    }
    let env = crate::environ(bare.pid()).unwrap();
    assert!(env.is_empty(), "{env:?}");
    assert_eq!(env.get("PATH"), None);
    assert_eq!(bare.terminate(WAIT).unwrap(), Termination::ExitedOnTerm);
}
