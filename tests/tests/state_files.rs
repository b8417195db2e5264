//! End-to-end: what is not a plain file of the user's own in a project's
//! state folder (a FIFO, a symlink, a symlinked project folder) never hangs
//! the `ocm` binary and is never followed; each command refuses it at once,
//! naming the path, what is there and what to do. And temp files a killed
//! writer left behind go with the next write of the record.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use e2e::{TestBed, e2e_skipped};
use manager::{Config, Manager, ProjectPaths};

/// A refusal takes milliseconds; a command blocked on a FIFO never ends, and
/// one waiting for a lock held by such a command ends after 90 s.
const PROMPT: Duration = Duration::from_secs(30);

/// The `ocm` binary next to this test's executable, built once per run with
/// the same cargo, profile and target folder.
fn ocm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps");
        let target_dir = profile_dir.parent().expect("the target folder");
        let profile = profile_dir
            .file_name()
            .and_then(OsStr::to_str)
            .expect("a profile folder name");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "-p", "ocm", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let output = build.output().expect("run cargo build -p ocm");
        assert!(
            output.status.success(),
            "cargo build -p ocm failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        profile_dir.join("ocm")
    })
}

/// What one `ocm` call did.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts a failure whose message names `path` and `what` is there,
    /// and says to remove it.
    fn refuses(self, path: &Path, what: &str) -> Run {
        assert_ne!(
            self.code, 0,
            "ocm {:?} did not refuse: {self:#?}",
            self.args
        );
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        for needle in [&path.display().to_string(), what, "remove"] {
            assert!(self.stderr.contains(needle), "no {needle:?} in {self:#?}");
        }
        self
    }
}

/// Runs `ocm ARGS` in the bed's environment; fails the test when it has not
/// finished within [`PROMPT`] (it is killed then).
fn ocm<const N: usize>(bed: &TestBed, args: [&str; N]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let child = bed
        .command(ocm_bin())
        .args(&args)
        .current_dir(&bed.project)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ocm");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(PROMPT) {
        Ok(output) => output.expect("wait for ocm"),
        Err(_) => {
            // Our own child, not reaped yet (its waiter has not returned).
            e2e::send_signal(pid as libc::pid_t, libc::SIGKILL);
            let _ = waiter.join();
            panic!("ocm {args:?} was still running after {PROMPT:?}: it hangs");
        }
    };
    let _ = waiter.join();
    Run {
        args,
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The bed's project and its state paths (its folder created).
fn project_paths(bed: &TestBed) -> (String, ProjectPaths) {
    let manager = Manager::new(Config {
        state_root: Some(bed.state_dir.clone()),
        ..Config::default()
    })
    .expect("a manager on the bed's state folder");
    let paths = manager.paths(&bed.project).expect("the project's paths");
    std::fs::create_dir_all(&paths.dir).expect("the project's state folder");
    let project = bed.project.to_str().expect("a UTF-8 temp path").to_string();
    (project, paths)
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn a_fifo_record_hangs_no_command() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (p, paths) = project_paths(&bed);
    let p = p.as_str();
    mkfifo(&paths.record);
    for args in [["status", p], ["up", p], ["down", p]] {
        ocm(&bed, args).refuses(&paths.record, "a FIFO");
    }
    // gc leaves the project (its record is unreadable) and says so.
    let gc = ocm(&bed, ["gc"]);
    assert_eq!(gc.code, 0, "{gc:#?}");
    assert!(bed.opencode_pids().is_empty(), "a server was started");
    assert!(paths.record.exists(), "the FIFO was removed");
}

#[test]
fn a_fifo_record_hangs_no_listing() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (_, paths) = project_paths(&bed);
    mkfifo(&paths.record);
    let ls = ocm(&bed, ["ls", "--json"]);
    assert_eq!(ls.code, 0, "{ls:#?}");
    assert!(ls.stdout.contains("a FIFO"), "{ls:#?}");
}

#[test]
fn a_fifo_log_fails_up_at_once_and_frees_the_lock() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (p, paths) = project_paths(&bed);
    let p = p.as_str();
    mkfifo(&paths.log);
    ocm(&bed, ["up", p]).refuses(&paths.log, "a FIFO");
    // The lock is free again: another command does not wait for it.
    let status = ocm(&bed, ["status", p]);
    assert!(!status.stderr.contains("waiting"), "{status:#?}");
    assert!(bed.opencode_pids().is_empty(), "a server was started");
}

#[test]
fn a_fifo_log_hangs_no_logs_command() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (p, paths) = project_paths(&bed);
    let p = p.as_str();
    mkfifo(&paths.log);
    ocm(&bed, ["logs", p]).refuses(&paths.log, "a FIFO");
}

#[test]
fn symlinks_in_the_state_folder_are_never_followed() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (p, paths) = project_paths(&bed);
    let p = p.as_str();

    // The log: the server would append to whatever it points to.
    let precious = bed.root().join("precious.txt");
    std::fs::write(&precious, "keep me\n").unwrap();
    std::os::unix::fs::symlink(&precious, &paths.log).unwrap();
    ocm(&bed, ["up", p]).refuses(&paths.log, "a symlink");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
    std::fs::remove_file(&paths.log).unwrap();

    // The lock: opening it would create its target.
    std::fs::remove_file(&paths.lock).expect("the lock file of the first up");
    let target = bed.root().join("created-through-the-link");
    std::os::unix::fs::symlink(&target, &paths.lock).unwrap();
    ocm(&bed, ["up", p]).refuses(&paths.lock, "a symlink");
    assert!(!target.exists(), "the lock's target was created");
    std::fs::remove_file(&paths.lock).unwrap();

    // The project folder: the record would be kept elsewhere.
    let elsewhere = bed.root().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::remove_dir_all(&paths.dir).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &paths.dir).unwrap();
    ocm(&bed, ["up", p]).refuses(&paths.dir, "a symlink");
    let written: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().flatten().collect();
    assert!(written.is_empty(), "written through the link: {written:?}");
    assert!(bed.opencode_pids().is_empty(), "a server was started");
}

#[test]
fn a_dead_writers_temp_file_goes_with_the_next_write() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (p, paths) = project_paths(&bed);
    let p = p.as_str();
    // A writer that is surely dead: a child we started and reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let temp = paths
        .dir
        .join(format!(".server.json.tmp-{dead_pid}-0-0123abcd"));
    std::fs::write(&temp, "{\"schemaVersion\": 2, half a rec").unwrap();
    let up = ocm(&bed, ["up", p]);
    assert_eq!(up.code, 0, "{up:#?}");
    assert!(!temp.exists(), "the dead writer's temp file is still there");
    let down = ocm(&bed, ["down", p]);
    assert_eq!(down.code, 0, "{down:#?}");
}
