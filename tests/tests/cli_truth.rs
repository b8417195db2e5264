//! The `ocm` binary as a new user meets it: errors that say what was being
//! done and what to do, one JSON shape for every command, human output that
//! foreign text cannot break, flags that agree with the environment, and a
//! first run that says what it is doing.
//!
//! Every test runs the real `ocm` binary (built once per run with the same
//! profile and target folder as this test) in its own [`TestBed`].

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::{
    Run, TestBed, cargo, e2e_skipped, fresh_project, ocm, ocm_with, path_str, pid_of, poll_until,
    target_and_profile,
};
use serde_json::Value;

/// The keys the README promises: the list ocm's own tests and the tidy
/// check use, not a copy of it.
#[path = "../../crates/ocm/src/json_keys.rs"]
#[allow(dead_code)]
mod json_keys;
use json_keys::{COMMON_KEYS, ERROR_EXTRA_KEYS, ERROR_KEYS, EXTRA_KEYS};

/// The widest line a help text may have (`ocm --help` is wrapped there).
const HELP_WIDTH: usize = 78;

/// What cli_truth asks of an `ocm` call beyond [`Run`]'s own checks.
trait CleanOutput {
    /// Asserts that neither stream has a control character but newlines.
    fn clean(self) -> Self;
}

impl CleanOutput for Run {
    fn clean(self) -> Run {
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bad: Vec<char> = text
                .chars()
                .filter(|c| *c != '\n' && (c.is_control() || is_format(*c)))
                .collect();
            assert!(
                bad.is_empty(),
                "ocm {:?}: {name} has control characters {bad:?}: {self:#?}",
                self.args
            );
        }
        self
    }
}

/// Characters that reorder or hide text on a terminal.
fn is_format(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// True when the tests run as root, whom file permissions do not stop.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn extra(table: &[(&str, &[&str])], row: &str) -> BTreeSet<String> {
    table
        .iter()
        .find(|(name, _)| *name == row)
        .unwrap_or_else(|| panic!("json_keys.rs has no row {row:?}"))
        .1
        .iter()
        .map(|k| k.to_string())
        .collect()
}

/// Asserts that `value` has exactly the common keys plus `command`'s row of
/// EXTRA_KEYS.
fn assert_project_keys(command: &str, value: &Value) {
    let mut expected: BTreeSet<String> = COMMON_KEYS.iter().map(|k| k.to_string()).collect();
    expected.extend(extra(&EXTRA_KEYS, command));
    assert_eq!(keys(value), expected, "{command} --json: {value:#}");
}

/// Asserts that `value` is an error with exactly ERROR_KEYS plus the rows
/// of ERROR_EXTRA_KEYS named in `kinds`, and the exit code `code`.
fn assert_error_keys(kinds: &[&str], value: &Value, code: i32) {
    let mut expected: BTreeSet<String> = ERROR_KEYS.iter().map(|k| k.to_string()).collect();
    for kind in kinds {
        expected.extend(extra(&ERROR_EXTRA_KEYS, kind));
    }
    assert_eq!(keys(value), expected, "error: {value:#}");
    assert_eq!(value["exitCode"], code, "{value:#}");
    assert!(value["error"].is_string(), "{value:#}");
}

/// An executable shell script in the bed.
fn script(bed: &TestBed, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = bed.root().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make it executable");
    path
}

// ---------------------------------------------------------------------------
// Errors with their context

#[test]
fn an_unusable_state_folder_is_named_with_what_was_done_and_how_to_choose_another() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let p = path_str(&bed.project);
    // A regular file where the state folder's parent should be: nothing can
    // create it, whoever runs the test.
    let blocker = bed.root().join("a-file");
    std::fs::write(&blocker, "not a folder").expect("write the blocker");
    let root = blocker.join("state");
    let r = path_str(&root);
    let check = |run: &Run| {
        assert!(run.stderr.contains("state folder"), "{run:#?}");
        assert!(run.stderr.contains(r), "{run:#?}");
        assert!(run.stderr.contains("hint: "), "{run:#?}");
        assert!(run.stderr.contains("OCM_STATE_DIR"), "{run:#?}");
        assert!(run.stderr.contains("--state-dir"), "{run:#?}");
    };
    let run = ocm_with(&bed, ["up", p], &[("OCM_STATE_DIR", r)]).code(4);
    check(&run);
    assert!(run.stderr.contains("starting"), "{run:#?}");
    let run = ocm(&bed, ["--state-dir", r, "restart", p]).code(4);
    check(&run);
    let run = ocm_with(&bed, ["exec", p, "--", "true"], &[("OCM_STATE_DIR", r)]).code(4);
    check(&run);
    // JSON: the error once, on stdout, with the path; stderr stays quiet.
    let run = ocm_with(&bed, ["up", p, "--json"], &[("OCM_STATE_DIR", r)]).code(4);
    assert_eq!(run.stderr, "", "{run:#?}");
    let json = run.json();
    assert_error_keys(&["about a path"], &json, 4);
    assert!(
        json["path"]
            .as_str()
            .is_some_and(|path| root.starts_with(path) || Path::new(path).starts_with(&root)),
        "{json:#}"
    );
    assert!(
        json["hint"]
            .as_str()
            .is_some_and(|h| h.contains("OCM_STATE_DIR")),
        "{json:#}"
    );

    // A state folder that exists but where nothing can be created: its
    // `servers` is a file. Looking and starting both say which folder.
    let root = bed.root().join("state-with-a-file-inside");
    std::fs::create_dir(&root).expect("create the state folder");
    std::fs::write(root.join("servers"), "in the way").expect("write servers");
    let r = path_str(&root);
    for (args, code) in [(vec!["up", p], 4), (vec!["ls"], 1)] {
        let run = ocm_with(&bed, &args, &[("OCM_STATE_DIR", r)]).code(code);
        assert!(run.stderr.contains("state folder"), "{run:#?}");
        assert!(run.stderr.contains(r), "{run:#?}");
        assert!(run.stderr.contains("--state-dir"), "{run:#?}");
    }

    // A read-only state folder (root ignores permissions: only for others).
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        let root = bed.root().join("read-only-state");
        std::fs::create_dir(&root).expect("create the state folder");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o555))
            .expect("make it read-only");
        let r = path_str(&root);
        let run = ocm_with(&bed, ["up", p], &[("OCM_STATE_DIR", r)]).code(4);
        assert!(run.stderr.contains("state folder"), "{run:#?}");
        assert!(run.stderr.contains(r), "{run:#?}");
        assert!(run.stderr.contains("OCM_STATE_DIR"), "{run:#?}");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .expect("make it writable again");
    }
    assert!(bed.opencode_pids().is_empty());
}

#[test]
fn looking_at_a_state_folder_that_does_not_exist_reports_nothing_and_creates_nothing() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let p = path_str(&bed.project);
    let parent = bed.root().join("not-yet");
    let root = parent.join("ocm");
    let r = path_str(&root);
    let env = [("OCM_STATE_DIR", r)];
    let run = ocm_with(&bed, ["ls"], &env).ok().clean();
    assert!(run.stdout.contains("no projects"), "{run:#?}");
    assert_eq!(
        ocm_with(&bed, ["ls", "--json"], &env).ok().json(),
        Value::Array(vec![])
    );
    let run = ocm_with(&bed, ["status", p], &env).code(3).clean();
    assert!(run.stdout.contains("stopped"), "{run:#?}");
    let status = ocm_with(&bed, ["status", p, "--json"], &env).code(3).json();
    assert_project_keys("status", &status);
    assert_eq!(status["status"], "stopped", "{status:#}");
    assert_eq!(status["project"], p, "{status:#}");
    ocm_with(&bed, ["url", p], &env).code(3);
    let port = ocm_with(&bed, ["port", p, "--json"], &env).ok().json();
    assert_project_keys("port", &port);
    let logs = ocm_with(&bed, ["logs", p], &env).code(1);
    assert!(logs.stderr.contains("no server log"), "{logs:#?}");
    let down = ocm_with(&bed, ["down", p], &env).ok();
    assert!(down.stdout.contains("not running"), "{down:#?}");
    let down = ocm_with(&bed, ["down", p, "--json"], &env).ok().json();
    assert_project_keys("down", &down);
    let destroy = ocm_with(&bed, ["destroy", p], &env).ok();
    assert!(destroy.stdout.contains("nothing to remove"), "{destroy:#?}");
    let gc = ocm_with(&bed, ["gc"], &env).ok();
    assert!(gc.stdout.contains("nothing to clean"), "{gc:#?}");
    let gc = ocm_with(&bed, ["gc", "--json"], &env).ok().json();
    assert_eq!(keys(&gc), extra(&EXTRA_KEYS, "gc"), "{gc:#}");
    assert!(!parent.exists(), "looking created {}", parent.display());

    // The same under a folder nobody may write to (root may write anywhere).
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(&parent).expect("create the parent");
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o555))
            .expect("make it read-only");
        ocm_with(&bed, ["ls"], &env).ok();
        ocm_with(&bed, ["status", p], &env).code(3);
        ocm_with(&bed, ["down", p], &env).ok();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755))
            .expect("make it writable again");
    }
}

#[test]
fn a_file_given_as_the_project_is_called_a_file() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let file = bed.root().join("notes.txt");
    std::fs::write(&file, "a file, not a folder").expect("write the file");
    let f = path_str(&file);
    for args in [["status", f], ["url", f]] {
        let run = ocm(&bed, args).code(3);
        assert!(run.stderr.contains("is a file, not a folder"), "{run:#?}");
        assert!(!run.stderr.contains("does not exist"), "{run:#?}");
        assert!(run.stderr.contains(f), "{run:#?}");
    }
    for args in [
        vec!["up", f],
        vec!["restart", f],
        vec!["exec", f, "--", "true"],
    ] {
        let run = ocm(&bed, &args).code(2);
        assert!(run.stderr.contains("is a file, not a folder"), "{run:#?}");
    }
    let json = ocm(&bed, ["status", f, "--json"]).code(3).json();
    assert_error_keys(&["about a path"], &json, 3);
    assert_eq!(json["path"], f, "{json:#}");
    assert!(bed.opencode_pids().is_empty());
}

#[test]
fn an_opencode_that_exits_at_once_is_named_with_its_exit_status() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let p = path_str(&bed.project);
    // /bin/false: no output at all, exit status 1.
    let run = ocm_with(&bed, ["up", p], &[("OPENCODE_BIN", "/bin/false")]).code(4);
    assert!(run.stderr.contains("/bin/false"), "{run:#?}");
    assert!(run.stderr.contains("exit status 1"), "{run:#?}");
    assert!(!run.stderr.contains("--timeout"), "{run:#?}");

    // A binary that says why in colour, with a bell, then exits 3.
    let bin = script(
        &bed,
        "colourful-opencode",
        r"printf 'starting\n\033[31mfatal:\033[0m bad config\007 here\n'; exit 3",
    );
    let b = path_str(&bin);
    let run = ocm_with(&bed, ["up", p], &[("OPENCODE_BIN", b)])
        .code(4)
        .clean();
    assert!(run.stderr.contains(b), "{run:#?}");
    assert!(run.stderr.contains("exit status 3"), "{run:#?}");
    assert!(!run.stderr.contains("--timeout"), "{run:#?}");
    assert!(run.stderr.contains("fatal: bad config"), "{run:#?}");
    assert!(run.stderr.contains(r"config\x07 here"), "{run:#?}");
    assert!(!run.stderr.contains("[31m"), "{run:#?}");

    let run = ocm_with(&bed, ["up", p, "--json"], &[("OPENCODE_BIN", b)]).code(4);
    assert!(!run.stderr.contains("error"), "{run:#?}");
    assert!(!run.stderr.contains("hint"), "{run:#?}");
    let json = run.json();
    assert_error_keys(&["a failed start"], &json, 4);
    assert_eq!(json["exitStatus"], 3, "{json:#}");
    assert_eq!(json["signal"], Value::Null, "{json:#}");
    assert_eq!(json["binary"], b, "{json:#}");
    assert_eq!(json["project"], p, "{json:#}");
    assert_eq!(json["failure"], "exited", "{json:#}");
    let tail: Vec<&str> = json["logTail"]
        .as_array()
        .unwrap_or_else(|| panic!("logTail is not an array: {json:#}"))
        .iter()
        .map(|l| l.as_str().expect("a line"))
        .collect();
    assert_eq!(
        tail,
        ["starting", "fatal: bad config\u{7} here"],
        "{json:#}"
    );
    let error = json["error"].as_str().expect("error");
    assert!(
        !error.contains('\n'),
        "one line, the rest is in fields: {json:#}"
    );
    assert!(!error.contains("fatal"), "the log is in logTail: {json:#}");
    assert!(
        !json["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("--timeout"),
        "{json:#}"
    );
    assert!(bed.opencode_pids().is_empty());
}

#[test]
fn down_and_destroy_of_a_path_that_does_not_exist_say_so() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let gone = bed.root().join("no-such-project");
    let g = path_str(&gone);
    let down = ocm(&bed, ["down", g]).ok();
    assert!(down.stdout.contains("does not exist"), "{down:#?}");
    assert!(down.stdout.contains(g), "{down:#?}");
    let destroy = ocm(&bed, ["destroy", g]).ok();
    assert!(destroy.stdout.contains("does not exist"), "{destroy:#?}");
    let json = ocm(&bed, ["down", g, "--json"]).ok().json();
    assert_project_keys("down", &json);
    assert_eq!(json["projectExists"], false, "{json:#}");
    assert!(!gone.exists());
}

// ---------------------------------------------------------------------------
// One JSON shape

#[test]
fn every_command_reports_a_project_with_one_set_of_keys() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (project, project_port) = fresh_project(&bed, "shape");
    let p = path_str(&project);
    let state_dir = statefile::ProjectPaths::new(
        &bed.state_dir,
        &portmap::project_hash(&project).expect("hash"),
    )
    .dir;

    // restart with nothing running replaced nothing.
    let restarted = ocm(&bed, ["restart", p, "--json"]).ok().json();
    assert_project_keys("restart", &restarted);
    assert_eq!(restarted["replaced"], Value::Null, "{restarted:#}");
    let first_pid = pid_of(&restarted);
    let first_url = restarted["url"].clone();

    let up = ocm(&bed, ["up", p, "--json"]).ok().json();
    assert_project_keys("up", &up);
    assert_eq!(up["reused"], true, "{up:#}");
    assert_eq!(up["projectPort"], project_port, "{up:#}");
    assert_eq!(up["stateDir"], path_str(&state_dir), "{up:#}");
    assert_eq!(up["projectExists"], true, "{up:#}");
    assert_eq!(up["auth"], Value::Null, "{up:#}");
    assert_eq!(up["passwordFile"], Value::Null, "{up:#}");

    // restart says what it stopped.
    let restarted = ocm(&bed, ["restart", p, "--json"]).ok().json();
    assert_project_keys("restart", &restarted);
    assert_eq!(
        restarted["replaced"],
        serde_json::json!({ "pid": first_pid, "url": first_url }),
        "{restarted:#}"
    );
    assert_ne!(pid_of(&restarted), first_pid);
    let human = ocm(&bed, ["restart", p]).ok();
    assert!(
        human
            .stdout
            .contains(&format!("pid {}", pid_of(&restarted))),
        "{human:#?}"
    );

    for command in ["status", "url", "port", "logs"] {
        let value = ocm(&bed, [command, p, "--json"]).ok().json();
        assert_project_keys(command, &value);
        assert_eq!(value["status"], "running", "{command}: {value:#}");
    }
    let listed = ocm(&bed, ["ls", "--json"]).ok().json();
    let entries = listed.as_array().expect("ls --json is an array");
    assert_eq!(entries.len(), 1, "{listed:#}");
    assert_project_keys("ls", &entries[0]);

    let down = ocm(&bed, ["down", p, "--json"]).ok().json();
    assert_project_keys("down", &down);
    assert_eq!(down["wasRunning"], true, "{down:#}");
    for command in ["status", "port", "logs"] {
        let run = ocm(&bed, [command, p, "--json"]);
        let value = run.json();
        assert_project_keys(command, &value);
        assert_eq!(value["status"], "stopped", "{command}: {value:#}");
    }

    // gc names projects: each entry is a project object.
    let (other, _) = fresh_project(&bed, "shape-other");
    let o = path_str(&other);
    ocm(&bed, ["up", o]).ok();
    ocm(&bed, ["down", o]).ok();
    let gc = ocm(&bed, ["gc"]).ok().clean();
    assert!(gc.stdout.contains(p), "{gc:#?}");
    assert!(gc.stdout.contains(o), "{gc:#?}");
    assert!(
        !gc.stdout
            .contains(state_dir.file_name().and_then(OsStr::to_str).expect("hash")),
        "gc names the project, not its hash: {gc:#?}"
    );
    ocm(&bed, ["up", o]).ok();
    ocm(&bed, ["down", o]).ok();
    let gc = ocm(&bed, ["gc", "--json"]).ok().json();
    assert_eq!(keys(&gc), extra(&EXTRA_KEYS, "gc"), "{gc:#}");
    let removed = gc["removed"].as_array().expect("removed is an array");
    assert_eq!(removed.len(), 1, "{gc:#}");
    let mut expected = extra(&EXTRA_KEYS, "gc entries");
    expected.extend(COMMON_KEYS.iter().map(|k| k.to_string()));
    assert_eq!(keys(&removed[0]), expected, "{gc:#}");
    assert_eq!(removed[0]["project"], o, "{gc:#}");

    // destroy, of a running server.
    ocm(&bed, ["up", p]).ok();
    let destroyed = ocm(&bed, ["destroy", p, "--json"]).ok().json();
    assert_project_keys("destroy", &destroyed);
    assert_eq!(destroyed["wasRunning"], true, "{destroyed:#}");
    assert!(bed.opencode_pids().is_empty());
}

#[test]
fn the_password_is_located_never_printed() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (project, _) = fresh_project(&bed, "password");
    let p = path_str(&project);
    let up = ocm(&bed, ["up", p, "--password-generate", "--json"])
        .ok()
        .json();
    let state_dir = up["stateDir"].as_str().expect("stateDir").to_string();
    let file = Path::new(&state_dir).join("password");
    assert_eq!(up["auth"], "generated", "{up:#}");
    assert_eq!(up["passwordFile"], path_str(&file), "{up:#}");
    let password = std::fs::read_to_string(&file).expect("the password file");
    for args in [
        vec!["status", p, "--json"],
        vec!["url", p, "--json"],
        vec!["up", p, "--json"],
    ] {
        let run = ocm(&bed, &args).ok();
        assert!(!run.stdout.contains(password.trim()), "{run:#?}");
        let value = run.json();
        assert_eq!(value["auth"], "generated", "{value:#}");
        assert_eq!(value["passwordFile"], path_str(&file), "{value:#}");
    }
    let listed = ocm(&bed, ["ls", "--json"]).ok().json();
    assert_eq!(listed[0]["passwordFile"], path_str(&file), "{listed:#}");
    let human = ocm(&bed, ["status", p]).ok();
    assert!(human.stdout.contains(path_str(&file)), "{human:#?}");

    // A password from the environment is said to be that, never shown.
    let secret = "sekrit-from-the-environment";
    let env = [("OPENCODE_SERVER_PASSWORD", secret)];
    ocm(&bed, ["down", p]).ok();
    std::fs::remove_file(&file).ok();
    let up = ocm_with(&bed, ["up", p, "--json"], &env).ok();
    assert!(!up.stdout.contains(secret), "{up:#?}");
    let up = up.json();
    assert_eq!(up["auth"], "env", "{up:#}");
    assert_eq!(up["passwordFile"], Value::Null, "{up:#}");
    let status = ocm_with(&bed, ["status", p, "--json"], &env).ok();
    assert!(!status.stdout.contains(secret), "{status:#?}");
    assert_eq!(status.json()["auth"], "env");
    ocm(&bed, ["down", p]).ok();
}

#[test]
fn json_errors_are_printed_once_on_stdout() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let p = path_str(&bed.project);
    let never = bed.root().join("never-created");
    let n = path_str(&never);
    let run = ocm(&bed, ["status", n, "--json"]).code(3);
    assert_eq!(run.stderr, "", "{run:#?}");
    let json = run.json();
    assert_error_keys(&["about a path"], &json, 3);
    assert_eq!(json["path"], n, "{json:#}");
    let run = ocm(&bed, ["up", n, "--json"]).code(2);
    assert_eq!(run.stderr, "", "{run:#?}");
    assert_error_keys(&["about a path"], &run.json(), 2);
    let run = ocm(&bed, ["up", "--port", "seventy", "--json"]).code(2);
    assert_eq!(run.stderr, "", "{run:#?}");
    assert_error_keys(&[], &run.json(), 2);
    let run = ocm(&bed, ["logs", p, "--json"]).code(1);
    assert_eq!(run.stderr, "", "{run:#?}");
    assert_error_keys(&["about a path"], &run.json(), 1);

    // exec --json is bad usage: the command's output owns stdout.
    let run = ocm(&bed, ["exec", p, "--json", "--", "true"]).code(2);
    assert_eq!(run.stderr, "", "{run:#?}");
    let json = run.json();
    assert_error_keys(&[], &json, 2);
    assert!(
        json["error"].as_str().is_some_and(|e| e.contains("exec")),
        "{json:#}"
    );
    assert!(bed.opencode_pids().is_empty());
}

// ---------------------------------------------------------------------------
// Human output

#[test]
fn control_characters_in_paths_and_foreign_text_are_escaped() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (project, _) = fresh_project(&bed, "line\nbreak\u{1b}[31m-red\u{202e}");
    let p = path_str(&project);
    let up = ocm(&bed, ["up", p]).ok().clean();
    assert_eq!(up.stdout.lines().count(), 1, "{up:#?}");
    let ls = ocm(&bed, ["ls"]).ok().clean();
    assert_eq!(ls.stdout.lines().count(), 2, "one header, one row: {ls:#?}");
    assert!(
        ls.stdout.contains(r"line\nbreak\x1b[31m-red\u{202e}"),
        "{ls:#?}"
    );
    let status = ocm(&bed, ["status", p]).ok().clean();
    assert!(status.stdout.contains(r"line\nbreak"), "{status:#?}");
    ocm(&bed, ["port", p]).ok().clean();
    ocm(&bed, ["logs", p]).ok().clean();
    ocm(&bed, ["url", p]).ok().clean();
    ocm(&bed, ["down", p]).ok().clean();
    let gc = ocm(&bed, ["gc"]).ok().clean();
    assert!(gc.stdout.contains(r"line\nbreak"), "{gc:#?}");

    // A port holder whose command line has escapes and a newline.
    let (other, port) = fresh_project(&bed, "held");
    let mut holder = bed
        .command("perl")
        .args([
            "-MIO::Socket::INET",
            "-e",
            r#"$0 = "evil\e[2Jname\nsecond"; my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 1, ReuseAddr => 1) or die "bind: $!"; $| = 1; print "ready\n"; sleep 300;"#,
        ])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start perl");
    let mut ready = String::new();
    BufReader::new(holder.stdout.take().expect("piped"))
        .read_line(&mut ready)
        .expect("read perl's ready line");
    assert_eq!(ready, "ready\n");
    let o = path_str(&other);
    let taken = ocm(&bed, ["up", o, "--port", &port.to_string()])
        .code(4)
        .clean();
    assert!(
        taken.stderr.contains(r"evil\x1b[2Jname\nsecond"),
        "{taken:#?}"
    );
    // The project's own port taken: the note says so, escaped too.
    let moved = ocm(&bed, ["up", o]).ok().clean();
    assert!(moved.stderr.contains(r"evil\x1b[2Jname"), "{moved:#?}");
    ocm(&bed, ["down", o]).ok();
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn ls_shows_the_recorded_pid_and_port_of_a_dead_server() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let (project, _) = fresh_project(&bed, "dead");
    let p = path_str(&project);
    let up = ocm(&bed, ["up", p, "--json"]).ok().json();
    let pid = pid_of(&up);
    let port = up["port"].as_u64().expect("port");
    let identity = procutil::ProcessIdentity::of(pid).expect("the server runs");
    // The server this test just started.
    e2e::send_signal(pid as libc::pid_t, libc::SIGKILL);
    poll_until(Duration::from_secs(10), "the killed server to die", || {
        (!identity.is_alive()).then_some(())
    });
    let ls = ocm(&bed, ["ls"]).ok();
    let row = ls
        .stdout
        .lines()
        .find(|l| l.contains(p))
        .unwrap_or_else(|| panic!("no row for the project: {ls:#?}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[0], "dead", "{ls:#?}");
    assert_eq!(cells[1], port.to_string(), "{ls:#?}");
    assert_eq!(cells[2], pid.to_string(), "{ls:#?}");
    ocm(&bed, ["down", p]).ok();
}

#[test]
fn every_help_text_wraps_like_the_overview() {
    let bed = TestBed::new();
    let overview = ocm(&bed, ["--help"]).ok();
    let commands: Vec<String> = overview
        .stdout
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .lines()
        .take_while(|l| !l.is_empty())
        // A command's line, not a wrapped summary's continuation.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|word| word != "help")
        .collect();
    assert!(commands.len() >= 11, "{commands:?}");
    let mut texts = vec![("--help".to_string(), overview.stdout.clone())];
    for command in &commands {
        texts.push((
            command.clone(),
            ocm(&bed, [command.as_str(), "--help"]).ok().stdout,
        ));
    }
    for (command, text) in texts {
        for line in text.lines() {
            assert!(
                line.chars().count() <= HELP_WIDTH,
                "ocm {command} --help: a line of {} columns:\n{line}",
                line.chars().count()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Flags and the environment agree

#[test]
fn a_relative_state_dir_is_refused_as_a_flag_and_in_the_environment() {
    let bed = TestBed::new();
    let flag = ocm(&bed, ["--state-dir", "relstate", "ls"]).code(2);
    assert!(flag.stderr.contains("absolute"), "{flag:#?}");
    assert!(flag.stderr.contains("--state-dir"), "{flag:#?}");
    let env = ocm_with(&bed, ["ls"], &[("OCM_STATE_DIR", "relstate")]).code(2);
    assert!(env.stderr.contains("absolute"), "{env:#?}");
    assert!(env.stderr.contains("OCM_STATE_DIR"), "{env:#?}");
    assert!(env.stderr.contains("hint: "), "{env:#?}");
    for args in [
        vec!["--state-dir", "relstate", "up"],
        vec!["status", "--state-dir=relstate"],
    ] {
        ocm(&bed, &args).code(2);
    }
    assert!(!bed.project.join("relstate").exists());
}

// ---------------------------------------------------------------------------
// First run

#[test]
fn the_demo_says_what_it_is_doing_with_times() {
    if e2e_skipped() {
        return;
    }
    let mut demo = cargo(&["run", "--quiet", "--locked", "-p", "xtask", "--", "demo"]);
    // The demo makes its own test bed; it needs opencode where tests find it.
    demo.env("OPENCODE_BIN", e2e::opencode_bin())
        // The demo builds ocm itself, into the same target folder.
        .env("CARGO_TARGET_DIR", target_and_profile().0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let began = Instant::now();
    let output = demo.output().expect("run cargo xtask demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed after {:?}:\n{stdout}\n{stderr}",
        began.elapsed()
    );
    for step in ["opencode", "building ocm", "starting", "stopping"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("demo:") && l.contains(step)),
            "the demo does not say it is {step}:\n{stderr}"
        );
    }
    // Every step line ends with its time.
    let timed = stderr
        .lines()
        .filter(|l| l.starts_with("demo:") && l.trim_end().ends_with(" s)"))
        .count();
    assert!(timed >= 3, "the demo's steps have no times:\n{stderr}");
    assert!(stdout.contains("$ ocm up"), "{stdout}");
}
