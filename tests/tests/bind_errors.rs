//! End-to-end tests of binds that fail for another reason than a taken port:
//! an address that is not this machine's, a name that does not resolve, a
//! privileged port for an unprivileged user. Each is one error naming the
//! cause, at once, with no "port N is taken" lines and nothing started.
//!
//! The `ocm` binary is built once per run with the same cargo, profile and
//! target folder as this test (as in `ocm_cli.rs`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use e2e::{Run, TEST_ID_VAR, TestBed, e2e_skipped, ocm_bin};

/// No `ocm` call here may take longer before it is killed (the bound the
/// tests assert is far tighter).
const OCM_DEADLINE: Duration = Duration::from_secs(60);
/// How fast a bind problem must be reported: nothing is started, no port
/// after the first is tried.
const AT_ONCE: Duration = Duration::from_secs(1);
/// The exit status of a failed start.
const EXIT_START_FAILED: i32 = 4;

/// What these tests ask of an `ocm` call beyond [`Run`]'s own checks.
trait BindError {
    /// Asserts a failed start, reported at once as exactly one error line
    /// (plus hint lines) that contains every one of `needles`, and no
    /// "port N is taken" or "in use" line.
    fn one_bind_error(&self, needles: &[&str]) -> &str;
}

impl BindError for Run {
    fn one_bind_error(&self, needles: &[&str]) -> &str {
        assert_eq!(
            self.code, EXIT_START_FAILED,
            "ocm {:?}: unexpected exit status: {self:#?}",
            self.args
        );
        assert!(!self.stderr.contains("panicked"), "ocm panicked: {self:#?}");
        assert!(
            self.took < AT_ONCE,
            "took {:?}, not at once: {self:#?}",
            self.took
        );
        assert!(
            !self.stderr.contains("is taken") && !self.stderr.contains("in use"),
            "no port is taken: {self:#?}"
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("ocm: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "one error line: {self:#?}");
        assert!(
            self.stderr
                .lines()
                .all(|l| l.starts_with("ocm: error:") || l.starts_with("hint: ")),
            "nothing but the error and its hint: {self:#?}"
        );
        for needle in needles {
            assert!(errors[0].contains(needle), "{needle:?} in {self:#?}");
        }
        assert!(self.stdout.is_empty(), "{self:#?}");
        errors[0]
    }
}

/// Runs `ocm ARGS` in the bed's environment, bounded by [`OCM_DEADLINE`].
fn ocm(bed: &TestBed, args: &[&str]) -> Run {
    e2e::ocm_within(bed, args, &[], OCM_DEADLINE)
}

/// Says why a test checks nothing, past the harness's capture, so a skip is
/// never silent (and never panics on a closed stderr).
fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// The processes this bed started that are still alive: none, when ocm
/// refused before starting anything.
fn marked_processes(bed: &TestBed) -> Vec<u32> {
    e2e::processes_with_env(&format!("{TEST_ID_VAR}={}", bed.test_id()))
}

fn read_sysctl(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
        .ok()
        .map(|v| v.trim().to_string())
}

#[test]
fn an_address_of_another_machine_is_one_error_at_once() {
    if e2e_skipped() {
        return;
    }
    if read_sysctl("net.ipv4.ip_nonlocal_bind").as_deref() == Some("1") {
        skip(
            "an_address_of_another_machine_is_one_error_at_once",
            "net.ipv4.ip_nonlocal_bind=1 lets this machine bind any address, 192.0.2.1 too",
        );
        return;
    }
    e2e::opencode_bin();
    let bed = TestBed::new();
    let project = bed.project.to_str().expect("a UTF-8 temp path").to_string();
    // 192.0.2.1 is TEST-NET-1 (RFC 5737), never an address of this machine.
    // Every port policy says so at once: the project's (which used to try
    // all 1000 ports), a range, a fixed port and opencode's own pick.
    for policy in [
        &[][..],
        &["--port-policy", "range:28000-28999"],
        &["--port", "28001"],
        &["--port-policy", "auto"],
    ] {
        let mut args = vec![
            "up",
            project.as_str(),
            "--hostname",
            "192.0.2.1",
            "--password-generate",
        ];
        args.extend_from_slice(policy);
        let error = ocm(&bed, &args)
            .one_bind_error(&["192.0.2.1", "not an address of this machine"])
            .to_string();
        assert!(error.contains("127.0.0.1"), "says what to use: {error}");
    }
    // The same in JSON: one object with the message and the exit status.
    let json = ocm(
        &bed,
        &[
            "--json",
            "up",
            &project,
            "--hostname",
            "192.0.2.1",
            "--password-generate",
        ],
    );
    assert_eq!(json.code, EXIT_START_FAILED, "{json:#?}");
    let value: serde_json::Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {json:#?}"));
    assert!(
        value["error"]
            .as_str()
            .is_some_and(|e| e.contains("192.0.2.1")),
        "{value}"
    );
    assert_eq!(value["exitCode"], EXIT_START_FAILED);
    assert_eq!(marked_processes(&bed), Vec::<u32>::new(), "nothing started");
    // Nothing was recorded as running either.
    assert_eq!(ocm(&bed, &["status", &project]).code, 3);
}

#[test]
fn a_name_that_does_not_resolve_is_one_error() {
    if e2e_skipped() {
        return;
    }
    e2e::opencode_bin();
    let bed = TestBed::new();
    let project = bed.project.to_str().expect("a UTF-8 temp path").to_string();
    let run = ocm(
        &bed,
        &[
            "up",
            &project,
            "--hostname",
            "no-such-host.invalid",
            "--password-generate",
        ],
    );
    // `.invalid` never resolves (RFC 6761); a resolver that cannot be
    // reached at all makes it a timeout, which is as clear but not at once.
    if run.stderr.contains("did not answer") {
        skip(
            "a_name_that_does_not_resolve_is_one_error",
            "the system resolver did not answer for no-such-host.invalid",
        );
        return;
    }
    let error = run.one_bind_error(&["no such host no-such-host.invalid"]);
    assert!(error.contains("IP address"), "says what to use: {error}");
    assert_eq!(marked_processes(&bed), Vec::<u32>::new(), "nothing started");
}

/// The uid to run ocm as when this test runs as root: `nobody`.
const UNPRIVILEGED_UID: u32 = 65534;

/// This process's effective uid, from /proc (no `unsafe` here).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

#[test]
fn a_privileged_port_as_an_unprivileged_user_names_the_permission_problem() {
    const TEST: &str = "a_privileged_port_as_an_unprivileged_user_names_the_permission_problem";
    if e2e_skipped() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let start = read_sysctl("net.ipv4.ip_unprivileged_port_start")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1024);
    if start <= 80 {
        skip(
            TEST,
            &format!("net.ipv4.ip_unprivileged_port_start={start} lets anyone bind port 80"),
        );
        return;
    }
    let Some(uid) = effective_uid() else {
        skip(
            TEST,
            "cannot read this process's uid from /proc/self/status",
        );
        return;
    };
    let setpriv = find_in_path("setpriv");
    if uid == 0 && setpriv.is_none() {
        skip(
            TEST,
            "running as root without `setpriv` (util-linux) to drop privileges",
        );
        return;
    }
    let bed = TestBed::new();
    // A folder the unprivileged user can reach: the bed's is root's, 0700.
    let shared = tempfile::Builder::new()
        .prefix("ocm-bind-errors-")
        .tempdir()
        .expect("a temp folder");
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755))
        .expect("open the temp folder to others");
    let project = shared.path().join("project");
    let home = shared.path().join("home");
    for dir in [&project, &home] {
        std::fs::create_dir(dir).expect("create a folder");
    }
    if uid == 0 {
        std::os::unix::fs::chown(&home, Some(UNPRIVILEGED_UID), Some(UNPRIVILEGED_UID))
            .expect("give the home folder to the unprivileged user");
    }
    // Nothing may be started: ocm refuses before it spawns. The real opencode
    // usually sits in root's home (0700), out of the unprivileged user's
    // reach, so OPENCODE_BIN is a stand-in that would leave a mark if run.
    let mark = home.join("opencode-ran");
    let stand_in = shared.path().join("opencode");
    std::fs::write(
        &stand_in,
        format!("#!/bin/sh\n: > '{}'\nexit 1\n", mark.display()),
    )
    .expect("write the stand-in");
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755))
        .expect("make the stand-in executable");

    let command = |args: &[&str]| {
        let mut command = match (uid, &setpriv) {
            (0, Some(setpriv)) => {
                let mut command = bed.command(setpriv);
                command
                    .arg(format!("--reuid={UNPRIVILEGED_UID}"))
                    .arg(format!("--regid={UNPRIVILEGED_UID}"))
                    .args(["--clear-groups", "--"])
                    .arg(ocm_bin());
                command
            }
            _ => bed.command(ocm_bin()),
        };
        command.args(args).current_dir(&project);
        for var in [
            "HOME",
            "XDG_DATA_HOME",
            "XDG_CONFIG_HOME",
            "XDG_STATE_HOME",
            "XDG_CACHE_HOME",
        ] {
            command.env(var, &home);
        }
        command
            .env("OCM_STATE_DIR", home.join("ocm"))
            .env("OPENCODE_BIN", &stand_in);
        e2e::run_bounded(
            command,
            args.iter().map(|a| a.to_string()).collect(),
            OCM_DEADLINE,
        )
    };
    let version = command(&["--version"]);
    if version.code != 0 {
        skip(
            TEST,
            &format!(
                "uid {UNPRIVILEGED_UID} cannot run {} (is the target folder readable by \
                 others?): {}",
                ocm_bin().display(),
                version.stderr.trim()
            ),
        );
        return;
    }
    let project_arg = project.to_str().expect("a UTF-8 temp path");
    let error = command(&["up", project_arg, "--port", "80"])
        .one_bind_error(&[
            "port 80 on 127.0.0.1",
            "permission denied",
            "CAP_NET_BIND_SERVICE",
        ])
        .to_string();
    assert!(error.contains("above 1023"), "says what to do: {error}");
    assert!(!mark.exists(), "opencode was started");
    assert_eq!(marked_processes(&bed), Vec::<u32>::new(), "nothing started");
}
