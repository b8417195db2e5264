//! `ocm sandbox ...` end to end: the real `ocm` binary, the real opencode
//! (mock model), a `file://` repository and a real sshd on loopback
//! (`e2e::git_server`). Each test has its own bed, so its own
//! `XDG_DATA_HOME` (where sandboxes and keys go) and state folder.
//!
//! - a `file://` sandbox: production mode without `.env` is refused with
//!   the missing keys; development mode generates it; `up`, `status`,
//!   `ls`, `down`, `restart`, `destroy` (refused without `--yes`), and
//!   nothing left;
//! - a generated deploy key: `up` exits 6 with the public key; once the
//!   git server accepts it, the same command clones and starts both;
//! - the user's own key and a hand-written `.env` (production): destroy
//!   leaves the key untouched;
//! - bad names, a URL with shell metacharacters, a key others can read:
//!   refused (exit 2) with nothing created;
//! - Ctrl-C while git hangs: git and ssh stopped, exit 130, nothing left;
//! - in every test, no file ocm wrote (but `.env`) and no output holds
//!   the password or the token.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::git_server::{GitSshServer, generate_key};
use e2e::{Run, TEST_ID_VAR, TestBed, e2e_skipped, ocm_with, path_str, poll_until};

#[path = "../../crates/ocm/src/json_keys.rs"]
#[allow(dead_code)]
mod json_keys;
use json_keys::{ERROR_EXTRA_KEYS, ERROR_KEYS, SANDBOX_KEYS};

/// The exit status of a sandbox waiting for its deploy key.
const EXIT_WAITING_FOR_KEY: i32 = 6;

/// One test's sandboxes: the bed, its data folder, the mode, and every
/// run's output (scanned for secrets at the end).
struct Sandboxes<'b> {
    bed: &'b TestBed,
    data: PathBuf,
    runs: Vec<String>,
}

impl<'b> Sandboxes<'b> {
    fn new(bed: &'b TestBed) -> Sandboxes<'b> {
        let data = bed.root().join("sandbox-data");
        std::fs::create_dir_all(&data).unwrap();
        Sandboxes {
            bed,
            data,
            runs: Vec::new(),
        }
    }

    /// `ocm --state-dir STATE sandbox ARGS` with this test's
    /// `XDG_DATA_HOME` and `OCM_ENV` (`None`: unset, production).
    fn run(&mut self, mode: Option<&str>, args: &[&str]) -> Run {
        let state = path_str(&self.bed.state_dir).to_string();
        let mut all = vec!["--state-dir", state.as_str(), "sandbox"];
        all.extend_from_slice(args);
        let data = path_str(&self.data).to_string();
        let mut env = vec![("XDG_DATA_HOME", data.as_str())];
        if let Some(mode) = mode {
            env.push(("OCM_ENV", mode));
        }
        let run = ocm_with(self.bed, &all, &env);
        self.runs.push(format!("{}\n{}", run.stdout, run.stderr));
        run
    }

    fn folder(&self, name: &str) -> PathBuf {
        self.data.join("ocm/sandboxes").join(name)
    }

    fn generated_key(&self, name: &str) -> PathBuf {
        self.data.join(format!("ocm/keys/{name}-deploy"))
    }

    /// Neither secret in any file under the state folder or the data
    /// folder (but `.env` itself), nor in anything ocm printed.
    fn assert_no_secrets(&self, secrets: &[&str]) {
        let mut paths = Vec::new();
        paths.extend(e2e::files_under(&self.bed.state_dir));
        paths.extend(e2e::files_under(&self.data));
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| p.file_name().is_none_or(|n| n != ".env"))
            .collect();
        assert!(!paths.is_empty(), "nothing to scan");
        for secret in secrets {
            assert!(secret.len() >= 16, "a weak secret: {secret:?}");
            for path in &paths {
                let bytes = std::fs::read(path).unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes);
                assert!(!text.contains(secret), "a secret is in {}", path.display());
            }
            for (i, output) in self.runs.iter().enumerate() {
                assert!(
                    !output.contains(secret),
                    "a secret is in run {i}:\n{output}"
                );
            }
        }
    }
}

/// The value of `key` in a `.env` file's text (`KEY=value`, maybe quoted).
fn env_value(env_text: &str, key: &str) -> String {
    env_text
        .lines()
        .map(|l| l.trim().trim_start_matches("export "))
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in .env"))
        .trim_matches(|c| c == '"' || c == '\'')
        .to_string()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The sorted keys of a JSON object.
fn keys_of(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// The sorted keys of a row of [`SANDBOX_KEYS`] or [`ERROR_EXTRA_KEYS`].
fn row(table: &[(&str, &[&str])], name: &str) -> Vec<String> {
    let (_, keys) = table.iter().find(|(n, _)| *n == name).unwrap();
    let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    keys.sort();
    keys
}

/// The pids of live processes carrying this bed's marker.
fn marked(bed: &TestBed) -> Vec<u32> {
    e2e::processes_with_env(&format!("{TEST_ID_VAR}={}", bed.test_id()))
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !e2e::is_zombie(pid)
}

/// Checks a `status --json` of a sandbox that runs: the keys, both
/// processes alive and answering. Returns (server pid, companion pid).
fn assert_running(status: &serde_json::Value) -> (u32, u32) {
    assert_eq!(status["status"], "success", "{status:#}");
    assert_eq!(keys_of(status), row(&SANDBOX_KEYS, "sandbox status"));
    let server = &status["server"];
    let companion = &status["companion"];
    assert_eq!(keys_of(server), row(&SANDBOX_KEYS, "sandbox server"));
    assert_eq!(keys_of(companion), row(&SANDBOX_KEYS, "sandbox companion"));
    assert_eq!(server["healthy"], true, "{status:#}");
    assert_eq!(server["state"], "running");
    assert!(
        server["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert!((4100..=4199).contains(&server["port"].as_u64().unwrap()));
    assert_eq!(companion["alive"], true, "{status:#}");
    assert_eq!(companion["answered"], true, "{status:#}");
    assert!((5100..=5199).contains(&companion["port"].as_u64().unwrap()));
    assert!(status["lastHealthCheck"].is_string());
    let server_pid = server["pid"].as_u64().unwrap() as u32;
    let companion_pid = companion["pid"].as_u64().unwrap() as u32;
    assert!(alive(server_pid) && alive(companion_pid), "{status:#}");
    (server_pid, companion_pid)
}

/// Neither secret on the command line of the processes.
fn assert_not_on_argv(pids: &[u32], secrets: &[&str]) {
    for pid in pids {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let argv = String::from_utf8_lossy(&argv);
        for secret in secrets {
            assert!(!argv.contains(secret), "a secret on the argv of {pid}");
        }
    }
}

#[test]
fn a_file_url_sandbox_from_production_refusal_to_destroy() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let url = e2e::git_server::file_repo(&bed);
    let mut sb = Sandboxes::new(&bed);
    let folder = sb.folder("app");
    let env_path = folder.join(".env");

    // Production (OCM_ENV unset), no .env: every missing key and the path.
    let refused = sb.run(None, &["up", "app", "--git", &url]).code(1);
    for key in [
        "GIT_URL",
        "OPENCODE_SERVER_PASSWORD",
        "MCP_TOOL_BEARER_TOKEN",
    ] {
        assert!(refused.stderr.contains(key), "{refused:#?}");
    }
    assert!(refused.stderr.contains(path_str(&env_path)), "{refused:#?}");
    assert!(
        refused.stderr.contains("OCM_ENV=development"),
        "{refused:#?}"
    );
    assert!(!env_path.exists(), "production generated .env");
    let json = sb
        .run(None, &["up", "app", "--git", &url, "--json"])
        .code(1)
        .json();
    let mut expected: Vec<String> = ERROR_KEYS.iter().map(|k| k.to_string()).collect();
    expected.extend(row(&ERROR_EXTRA_KEYS, "missing .env keys"));
    expected.sort();
    assert_eq!(keys_of(&json), expected, "{json:#}");
    assert_eq!(json["path"], path_str(&env_path));
    assert_eq!(json["exitCode"], 1);
    let missing: Vec<&str> = json["missingKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        missing,
        [
            "GIT_URL",
            "OPENCODE_SERVER_PASSWORD",
            "MCP_TOOL_BEARER_TOKEN"
        ]
    );
    assert!(!env_path.exists());

    // Development: .env generated 0600, a warning; cloned, both running.
    let up = sb
        .run(Some("development"), &["up", "app", "--git", &url])
        .ok();
    assert!(
        up.stderr.contains("ocm: warning: generated") && up.stderr.contains(path_str(&env_path)),
        "{up:#?}"
    );
    assert!(up.stderr.contains("review"), "{up:#?}");
    assert!(up.stdout.contains("success"), "{up:#?}");
    assert!(up.stdout.contains(&url), "{up:#?}");
    assert_eq!(mode_of(&env_path), 0o600);
    let env_text = std::fs::read_to_string(&env_path).unwrap();
    let password = env_value(&env_text, "OPENCODE_SERVER_PASSWORD");
    let token = env_value(&env_text, "MCP_TOOL_BEARER_TOKEN");
    let secrets = [password.as_str(), token.as_str()];
    assert_eq!(
        std::fs::read_to_string(folder.join("repo/README.md")).unwrap(),
        "# origin\n"
    );

    let status = sb.run(None, &["status", "app", "--json"]).ok().json();
    let (server, companion) = assert_running(&status);
    assert_eq!(status["gitUrl"], url.as_str());
    assert_eq!(status["folder"], path_str(&folder));
    assert!(status["publicKey"].is_null());
    assert_not_on_argv(&[server, companion], &secrets);
    let human = sb.run(None, &["status", "app"]).ok();
    for needle in [
        "success",
        &format!("pid {server}"),
        &format!("pid {companion}"),
    ] {
        assert!(human.stdout.contains(needle), "{human:#?}");
    }

    let ls = sb.run(None, &["ls"]).ok();
    let line = ls.stdout.lines().find(|l| l.starts_with("app ")).unwrap();
    assert!(line.contains("success") && line.contains("yes"), "{ls:#?}");
    let listed = sb.run(None, &["ls", "--json"]).ok().json();
    let entries = listed.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        keys_of(&entries[0]),
        row(&SANDBOX_KEYS, "sandbox ls entries")
    );
    assert_eq!(entries[0]["name"], "app");
    assert_eq!(entries[0]["cloned"], true);

    // Down: both stop; status says so (exit 3).
    let down = sb.run(None, &["down", "app", "--json"]).ok().json();
    assert_eq!(keys_of(&down), row(&SANDBOX_KEYS, "sandbox down"));
    assert_eq!(down["serverPid"], server);
    assert_eq!(down["companionStopped"], true);
    poll_until(Duration::from_secs(10), "both to be gone", || {
        (!alive(server) && !alive(companion)).then_some(())
    });
    let stopped = sb.run(None, &["status", "app", "--json"]).code(3).json();
    assert_eq!(stopped["status"], "error", "{stopped:#}");

    // Restart: both again, new processes.
    let restarted = sb.run(None, &["restart", "app", "--json"]).ok().json();
    let (server2, companion2) = assert_running(&restarted);
    assert_ne!(server2, server);
    assert_ne!(companion2, companion);

    // Destroy needs --yes, and says what it would delete.
    let asked = sb.run(None, &["destroy", "app"]).code(2);
    assert!(
        asked.stderr.contains(path_str(&folder)) && asked.stderr.contains("--yes"),
        "{asked:#?}"
    );
    assert!(folder.is_dir() && alive(server2));
    sb.assert_no_secrets(&secrets);

    let destroyed = sb
        .run(None, &["destroy", "app", "--yes", "--json"])
        .ok()
        .json();
    assert_eq!(keys_of(&destroyed), row(&SANDBOX_KEYS, "sandbox destroy"));
    assert_eq!(destroyed["folder"], path_str(&folder));
    assert!(destroyed["keptUserKey"].is_null());
    poll_until(Duration::from_secs(10), "no process of the bed", || {
        marked(&bed).is_empty().then_some(())
    });
    assert!(!folder.exists(), "the sandbox folder is left");
    assert!(!sb.generated_key("app").exists());
    assert!(
        !sb.generated_key("app").with_extension("pub").exists(),
        "a generated key is left"
    );
    let empty = sb.run(None, &["ls"]).ok();
    assert!(empty.stdout.starts_with("no sandboxes"), "{empty:#?}");
    sb.assert_no_secrets(&secrets);
}

#[test]
fn a_generated_deploy_key_waits_until_the_git_server_accepts_it() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let server = GitSshServer::start(&bed);
    server.bare_repo("project");
    let url = server.url("project");
    let mut sb = Sandboxes::new(&bed);
    let key = sb.generated_key("keyed");

    let waiting = sb
        .run(Some("development"), &["up", "keyed", "--git", &url])
        .code(EXIT_WAITING_FOR_KEY);
    // The public key alone on stdout; what to do on stderr.
    let public_key = waiting.stdout.trim_end().to_string();
    assert!(
        public_key.starts_with("ssh-ed25519 ") && !public_key.contains('\n'),
        "{waiting:#?}"
    );
    assert!(public_key.ends_with("ocm-keyed-deploy"), "{waiting:#?}");
    assert_eq!(
        std::fs::read_to_string(key.with_extension("pub"))
            .unwrap()
            .trim(),
        public_key
    );
    assert_eq!(mode_of(&key), 0o600);
    assert!(
        waiting
            .stderr
            .contains(&format!("add this deploy key with read access to {url}")),
        "{waiting:#?}"
    );
    assert!(
        waiting.stderr.contains("run the same command again"),
        "{waiting:#?}"
    );
    assert!(waiting.stderr.contains(path_str(&key)), "{waiting:#?}");
    assert!(!sb.folder("keyed").join("repo").exists());

    let status = sb
        .run(None, &["status", "keyed", "--json"])
        .code(EXIT_WAITING_FOR_KEY)
        .json();
    assert_eq!(status["status"], "waiting_for_key", "{status:#}");
    assert_eq!(status["publicKey"].as_str().unwrap().trim(), public_key);
    assert_eq!(status["keyPath"], path_str(&key));
    assert_eq!(status["keyOwner"], "ocm");
    assert_eq!(keys_of(&status), row(&SANDBOX_KEYS, "sandbox status"));
    let human = sb
        .run(None, &["status", "keyed"])
        .code(EXIT_WAITING_FOR_KEY);
    assert!(
        human.stdout.trim_end() == public_key
            && human.stderr.contains("is waiting for its deploy key"),
        "{human:#?}"
    );
    let again = sb
        .run(None, &["up", "keyed", "--json"])
        .code(EXIT_WAITING_FOR_KEY);
    // One JSON document, nothing on stderr.
    assert!(again.stderr.is_empty(), "{again:#?}");
    let again_json = again.json();
    assert_eq!(again_json["status"], "waiting_for_key", "{again_json:#}");
    assert_eq!(again_json["publicKey"].as_str().unwrap().trim(), public_key);

    // The user adds the key; the same command again goes on.
    server.authorize(&public_key);
    let up = sb
        .run(Some("development"), &["up", "keyed", "--git", &url])
        .ok();
    assert!(up.stdout.contains("success"), "{up:#?}");
    assert!(
        sb.folder("keyed").join("repo/README.md").is_file(),
        "not cloned"
    );
    let status = sb.run(None, &["status", "keyed", "--json"]).ok().json();
    let (server_pid, companion_pid) = assert_running(&status);
    assert_eq!(status["keyOwner"], "ocm");

    let env_text = std::fs::read_to_string(sb.folder("keyed").join(".env")).unwrap();
    let password = env_value(&env_text, "OPENCODE_SERVER_PASSWORD");
    let token = env_value(&env_text, "MCP_TOOL_BEARER_TOKEN");
    let secrets = [password.as_str(), token.as_str()];
    assert_not_on_argv(&[server_pid, companion_pid], &secrets);
    sb.assert_no_secrets(&secrets);

    let destroyed = sb
        .run(None, &["destroy", "keyed", "--yes", "--json"])
        .ok()
        .json();
    assert_eq!(destroyed["removedKey"], path_str(&key), "{destroyed:#}");
    assert!(!key.exists() && !key.with_extension("pub").exists());
    assert!(!sb.folder("keyed").exists());
    poll_until(
        Duration::from_secs(10),
        "the sandbox's processes gone",
        || (!alive(server_pid) && !alive(companion_pid)).then_some(()),
    );
    sb.assert_no_secrets(&secrets);
}

#[test]
fn the_users_own_key_and_env_in_production_are_never_deleted() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let server = GitSshServer::start(&bed);
    server.bare_repo("mine");
    let url = server.url("mine");
    let mut sb = Sandboxes::new(&bed);
    let own = bed.root().join("own-keys/id_ed25519");
    std::fs::create_dir_all(own.parent().unwrap()).unwrap();
    let public = generate_key(&own);
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o600)).unwrap();
    server.authorize(&public);
    let own_before = std::fs::read(&own).unwrap();
    let pub_before = std::fs::read(own.with_extension("pub")).unwrap();

    // The user writes .env (production: nothing generated).
    let folder = sb.folder("mine");
    std::fs::create_dir_all(&folder).unwrap();
    let password = "correct-horse-battery-staple-0001";
    let token = "a-bearer-token-nobody-guesses-0002";
    let env_path = folder.join(".env");
    std::fs::write(
        &env_path,
        format!(
            "# mine\nGIT_URL={url}\nexport SSH_KEY_PATH=\"{}\"\nOPENCODE_SERVER_PASSWORD='{password}'\n\
             MCP_TOOL_BEARER_TOKEN={token}\n",
            own.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&env_path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let up = sb
        .run(
            None,
            &[
                "up",
                "mine",
                "--git",
                &url,
                "--ssh-key",
                path_str(&own),
                "--json",
            ],
        )
        .ok()
        .json();
    let (server_pid, companion_pid) = assert_running(&up);
    assert_eq!(up["keyOwner"], "user");
    assert_eq!(up["keyPath"], path_str(&own));
    assert!(up["warnings"].as_array().unwrap().is_empty(), "{up:#}");
    assert_not_on_argv(&[server_pid, companion_pid], &[password, token]);
    sb.assert_no_secrets(&[password, token]);

    let destroyed = sb.run(None, &["destroy", "mine", "--yes"]).ok();
    assert!(
        destroyed
            .stdout
            .contains(&format!("kept your key {}", own.display())),
        "{destroyed:#?}"
    );
    assert_eq!(std::fs::read(&own).unwrap(), own_before);
    assert_eq!(
        std::fs::read(own.with_extension("pub")).unwrap(),
        pub_before
    );
    assert_eq!(mode_of(&own), 0o600);
    assert!(!folder.exists());
    poll_until(
        Duration::from_secs(10),
        "the sandbox's processes gone",
        || (!alive(server_pid) && !alive(companion_pid)).then_some(()),
    );
    sb.assert_no_secrets(&[password, token]);
}

#[test]
fn bad_names_urls_and_keys_are_refused_with_nothing_created() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let url = e2e::git_server::file_repo(&bed);
    let mut sb = Sandboxes::new(&bed);
    let long = "n".repeat(65);
    for name in ["../x", "a/b", "", long.as_str()] {
        // Development mode: anything not refused first would be generated.
        let run = sb
            .run(Some("development"), &["up", name, "--git", &url])
            .code(2);
        assert!(
            run.stderr.contains("is not allowed") && run.stderr.contains("1 to 64"),
            "{run:#?}"
        );
        let run = sb.run(None, &["status", name, "--json"]).code(2).json();
        assert_eq!(run["exitCode"], 2);
    }

    let pwned = bed.root().join("pwned");
    let evil = format!(
        "file://{}/x;touch {}",
        bed.root().display(),
        pwned.display()
    );
    let run = sb
        .run(Some("development"), &["up", "evil", "--git", &evil])
        .code(2);
    assert!(
        run.stderr.contains("refused") && run.stderr.contains("';'"),
        "{run:#?}"
    );
    let json = sb
        .run(
            Some("development"),
            &["up", "evil", "--git", &evil, "--json"],
        )
        .code(2)
        .json();
    assert!(
        json["error"].as_str().unwrap().contains("refused"),
        "{json:#}"
    );
    assert!(!pwned.exists(), "the URL ran a command");

    let open_key = bed.root().join("open-key/id_ed25519");
    std::fs::create_dir_all(open_key.parent().unwrap()).unwrap();
    generate_key(&open_key);
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = sb
        .run(
            Some("development"),
            &[
                "up",
                "open",
                "--git",
                &url,
                "--ssh-key",
                path_str(&open_key),
            ],
        )
        .code(2);
    assert!(
        run.stderr.contains(path_str(&open_key)) && run.stderr.contains("0644"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("chmod 600"), "{run:#?}");
    let json = sb
        .run(
            Some("development"),
            &[
                "up",
                "open",
                "--git",
                &url,
                "--ssh-key",
                path_str(&open_key),
                "--json",
            ],
        )
        .code(2)
        .json();
    assert_eq!(json["path"], path_str(&open_key), "{json:#}");
    assert_eq!(mode_of(&open_key), 0o644, "the user's key was changed");

    // Nothing at all under the data folder: no sandbox, no key.
    let mut created = Vec::new();
    created.extend(e2e::files_under(&sb.data));
    let dirs: Vec<_> = std::fs::read_dir(&sb.data).unwrap().flatten().collect();
    assert!(
        created.is_empty() && dirs.is_empty(),
        "{created:?} {dirs:?}"
    );
    // Nor a server started.
    assert!(marked(&bed).is_empty());
    let unknown = sb.run(None, &["status", "nobody"]).code(1);
    assert!(
        unknown.stderr.contains("no sandbox named nobody"),
        "{unknown:#?}"
    );
}

/// Ctrl-C while `git ls-remote` hangs (a host that accepts the connection
/// and never answers): ocm stops git and ssh with their group and exits
/// 130 at once; nothing of the run is left.
#[test]
fn ctrl_c_during_a_hanging_git_stops_it_and_leaves_nothing() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let sandboxes = Sandboxes::new(&bed);
    // Accepts, then says nothing: ssh waits for the server's banner.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let connection = silent.accept().map(|(stream, _)| stream);
        let _ = accepted_tx.send(());
        // Held open until the client goes.
        if let Ok(mut stream) = connection {
            let _ = std::io::Read::read_to_end(&mut stream, &mut Vec::new());
        }
    });
    let url = format!("ssh://git@127.0.0.1:{port}/repo.git");
    let data = path_str(&sandboxes.data).to_string();
    let mut child = bed
        .command(e2e::ocm_bin())
        .args([
            "--state-dir",
            path_str(&bed.state_dir),
            "sandbox",
            "up",
            "hangs",
            "--git",
        ])
        .arg(&url)
        .env("XDG_DATA_HOME", &data)
        .env("OCM_ENV", "development")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    accepted
        .recv_timeout(Duration::from_secs(60))
        .expect("ssh connects to the silent host");
    let interrupted = std::time::Instant::now();
    e2e::send_signal(child.id() as i32, libc::SIGINT);
    let status = poll_until(Duration::from_secs(10), "ocm to end after Ctrl-C", || {
        child.try_wait().unwrap()
    });
    let took = interrupted.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // git and ssh (started with the bed's marker) are gone.
    let left = marked(&bed);
    assert!(left.is_empty(), "left running: {left:?}");
    holder.join().unwrap();
}
