//! The MCP tools on sandboxes (`project_name`), end to end with the real
//! opencode, the mock model and a `file://` bare repository made in the
//! bed (development mode: `.env` is generated). Over stdio,
//! `opencode_start` with `project_name` and `git_url` brings a sandbox up
//! (its server and companion healthy), `opencode_status`,
//! `opencode_prompt`, `opencode_stop` and `opencode_destroy` act on it by
//! name. The sandbox's companion (`ocm mcp --http` on 5100-5199) refuses a
//! request without its bearer token (401) and serves the official Python
//! SDK client with it; a prompt through the companion reaches the
//! sandbox's server (the mock's reply comes back). Over SSH (the bed's
//! sshd), `opencode_start` answers `waiting_for_key` with the generated
//! deploy key until the git server accepts it, then comes up. In
//! production mode a missing `.env` is an error naming the keys. No MCP
//! transcript and no file under the bed's state folder holds the password
//! or the token.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::git_server::GitSshServer;
use e2e::mcp_clients::{self, PYTHON_SDK};
use e2e::mcp_stdio::StdioMcp as Mcp;
use e2e::{TestBed, e2e_skipped, ocm_bin};
use serde_json::{Value, json};

/// A sandbox start clones, starts opencode and the companion.
const ANSWER_DEADLINE: Duration = Duration::from_secs(120);

/// A stdio `ocm mcp` in development mode (`OCM_ENV`), with `extra`
/// arguments.
fn stdio_mcp(bed: &TestBed, extra: &[&str]) -> Mcp {
    start_in(bed, extra, "development")
}

/// `ocm mcp` with `OCM_ENV=mode`.
fn start_in(bed: &TestBed, extra: &[&str], mode: &str) -> Mcp {
    let mut command = bed.command(ocm_bin());
    command.arg("mcp").args(extra).env("OCM_ENV", mode);
    Mcp::start(command, "sandbox-test", ANSWER_DEADLINE)
}

/// The sandbox folder of `name` in the bed (`$XDG_DATA_HOME/ocm/...`).
fn folder(bed: &TestBed, name: &str) -> PathBuf {
    bed.root().join("data/ocm/sandboxes").join(name)
}

/// The password and the token of a sandbox, from its `.env`.
fn secrets(folder: &Path) -> (String, String) {
    let path = folder.join(".env");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let text = std::fs::read_to_string(&path).unwrap();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .trim_matches('"')
            .to_string()
    };
    let (password, token) = (
        value("OPENCODE_SERVER_PASSWORD"),
        value("MCP_TOOL_BEARER_TOKEN"),
    );
    assert!(password.len() >= 16 && token.len() >= 16, "weak secrets");
    (password, token)
}

/// Neither secret in `text` (named `what`).
fn no_secret(what: &str, text: &str, secrets: &(String, String)) {
    assert!(
        !text.contains(&secrets.0),
        "the password is in {what}:\n{text}"
    );
    assert!(
        !text.contains(&secrets.1),
        "the token is in {what}:\n{text}"
    );
}

/// Neither secret in any file under the bed's state folder, nor in the
/// sandbox folder's files other than `.env` and the clone. Returns how
/// many files were read.
fn no_secret_in_files(bed: &TestBed, folder: &Path, secrets: &(String, String)) -> usize {
    let mut all = Vec::new();
    all.extend(e2e::files_under(&bed.state_dir));
    all.extend(e2e::files_under(folder));
    let repo = folder.join("repo");
    let mut read = 0;
    for path in all
        .iter()
        .filter(|p| !p.starts_with(&repo) && *p != &folder.join(".env"))
    {
        let bytes = std::fs::read(path).unwrap_or_default();
        no_secret(
            &path.display().to_string(),
            &String::from_utf8_lossy(&bytes),
            secrets,
        );
        read += 1;
    }
    read
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !e2e::is_zombie(pid as u32)
}

/// The HTTP status of a response, error or not.
fn code(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> u16 {
    match result {
        Ok(response) => response.status().as_u16(),
        Err(ureq::Error::StatusCode(code)) => code,
        Err(other) => panic!("no HTTP answer: {other}"),
    }
}

/// Starts sandbox `name` through `mcp` and checks that both processes run.
fn start(mcp: &mut Mcp, id: i64, name: &str, url: &str) -> Value {
    let status = mcp.ok(
        id,
        "opencode_start",
        json!({"project_name": name, "git_url": url}),
    );
    assert_eq!(status["status"], "success", "{status}");
    assert_eq!(status["name"], name);
    assert_eq!(status["gitUrl"], url);
    let server = &status["server"];
    assert_eq!(server["healthy"], true, "{status}");
    assert!((4100..=4199).contains(&server["port"].as_u64().unwrap()));
    let companion = &status["companion"];
    assert_eq!(companion["answered"], true, "{status}");
    assert!((5100..=5199).contains(&companion["port"].as_u64().unwrap()));
    assert!(alive(server["pid"].as_u64().unwrap()));
    assert!(alive(companion["pid"].as_u64().unwrap()));
    status
}

#[test]
fn stdio_tools_bring_a_sandbox_up_prompt_it_stop_and_destroy_it() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let url = e2e::git_server::file_repo(&bed);
    let name = "mcp-sandbox";
    let mut mcp = stdio_mcp(&bed, &[]);

    // Arguments: exactly one of project and project_name; a bad name; a
    // git_url without a sandbox.
    let both = json!({"project": bed.project, "project_name": name});
    assert!(mcp.fails(1, "opencode_status", both).contains("not both"));
    let text = mcp.fails(2, "opencode_prompt", json!({"text": "hi"}));
    assert!(text.contains("`project_name`"), "{text}");
    let text = mcp.fails(3, "opencode_start", json!({"project_name": "../x"}));
    assert!(text.contains("is not allowed"), "{text}");
    let text = mcp.fails(
        4,
        "opencode_start",
        json!({"project": bed.project, "git_url": url}),
    );
    assert!(text.contains("project_name"), "{text}");
    let text = mcp.fails(5, "opencode_status", json!({"project_name": name}));
    assert!(text.contains("no sandbox named"), "{text}");
    let text = mcp.fails(
        6,
        "opencode_prompt",
        json!({"project_name": name, "text": "hi"}),
    );
    assert!(text.contains("has no clone"), "{text}");
    assert!(
        !folder(&bed, name).exists(),
        "a refused call created the sandbox"
    );

    // Up: generated .env (a warning), clone, server and companion.
    let status = start(&mut mcp, 10, name, &url);
    let folder = folder(&bed, name);
    assert_eq!(status["folder"], json!(folder));
    assert!(
        status["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("review")),
        "{status}"
    );
    let secrets = secrets(&folder);
    let repo = folder.join("repo");
    assert_eq!(
        std::fs::read_to_string(repo.join("README.md")).unwrap(),
        "# origin\n"
    );
    let server_pid = status["server"]["pid"].as_u64().unwrap();
    let companion_pid = status["companion"]["pid"].as_u64().unwrap();

    // Status by name: the same processes, checked now.
    let now = mcp.ok(11, "opencode_status", json!({"project_name": name}));
    assert_eq!(now["status"], "success", "{now}");
    assert_eq!(now["server"]["pid"], server_pid);
    assert_eq!(now["companion"]["pid"], companion_pid);
    assert!(now["lastHealthCheck"].is_string());

    // A second start reuses both.
    let again = mcp.ok(12, "opencode_start", json!({"project_name": name}));
    assert_eq!(again["server"]["pid"], server_pid, "{again}");
    assert_eq!(again["companion"]["pid"], companion_pid, "{again}");

    // The server asks for the password, and a prompt by name reaches it
    // (the tools use the password of .env).
    let agent = e2e::http_agent(Duration::from_secs(5));
    let health = format!(
        "{}/global/health",
        status["server"]["url"].as_str().unwrap()
    );
    assert_eq!(code(agent.get(&health).call()), 401);
    let turn = mcp.ok(
        13,
        "opencode_prompt",
        json!({"project_name": name, "text": "hi sandbox"}),
    );
    assert_eq!(turn["status"], "done", "{turn}");
    assert_eq!(turn["reply"], "echo: hi sandbox", "{turn}");
    let sessions = mcp.ok(14, "opencode_sessions", json!({"project_name": name}));
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "{sessions}"
    );
    // The same server by its folder.
    let by_folder = mcp.ok(15, "opencode_status", json!({"project": repo}));
    assert_eq!(by_folder["pid"], server_pid, "{by_folder}");

    // --allow: a sandbox outside the allowed folders is refused.
    let mut narrow = stdio_mcp(&bed, &["--allow", bed.project.to_str().unwrap()]);
    let text = narrow.fails(1, "opencode_status", json!({"project_name": name}));
    assert!(text.contains("outside the allowed folders"), "{text}");
    no_secret("the --allow transcript", &narrow.transcript(), &secrets);

    // Stop: both.
    let down = mcp.ok(20, "opencode_stop", json!({"project_name": name}));
    assert_eq!(down["serverPid"], server_pid, "{down}");
    assert_eq!(down["companionStopped"], true, "{down}");
    assert!(!alive(server_pid) && !alive(companion_pid));
    let stopped = mcp.ok(21, "opencode_status", json!({"project_name": name}));
    assert_eq!(stopped["status"], "error", "{stopped}");
    assert!(no_secret_in_files(&bed, &folder, &secrets) > 0);

    // Destroy: confirm required; then nothing left.
    let text = mcp.fails(22, "opencode_destroy", json!({"project_name": name}));
    assert!(text.contains("confirm"), "{text}");
    assert!(folder.exists());
    let destroyed = mcp.ok(
        23,
        "opencode_destroy",
        json!({"project_name": name, "confirm": true}),
    );
    assert_eq!(destroyed["folder"], json!(folder), "{destroyed}");
    assert!(!folder.exists());
    assert!(bed.opencode_pids().is_empty());
    let text = mcp.fails(24, "opencode_status", json!({"project_name": name}));
    assert!(text.contains("no sandbox named"), "{text}");

    let transcript = mcp.transcript();
    assert!(transcript.contains("echo: hi sandbox"), "{transcript}");
    no_secret("the stdio transcript", &transcript, &secrets);
    no_secret_in_files(&bed, &folder, &secrets);
}

#[test]
fn the_companion_serves_the_python_sdk_with_the_token_and_reaches_the_sandbox_server() {
    if e2e_skipped() {
        return;
    }
    let python = mcp_clients::python_with_sdk(PYTHON_SDK).unwrap_or_else(|m| panic!("{m}"));
    let bed = TestBed::new();
    let url = e2e::git_server::file_repo(&bed);
    let name = "companion";
    let mut mcp = stdio_mcp(&bed, &[]);
    let status = start(&mut mcp, 1, name, &url);
    let folder = folder(&bed, name);
    let secrets = secrets(&folder);
    let (_, token) = &secrets;
    let repo = folder.join("repo");
    let server_pid = status["server"]["pid"].as_u64().unwrap();
    let endpoint = format!("{}/mcp", status["companion"]["url"].as_str().unwrap());

    // Without the token, or with another one: 401.
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string();
    let agent = e2e::http_agent(Duration::from_secs(5));
    let post = |auth: Option<&str>| {
        let mut request = agent
            .post(&endpoint)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        code(request.send(initialize.as_str()))
    };
    assert_eq!(post(None), 401);
    assert_eq!(post(Some("Bearer not-the-token")), 401);
    assert_eq!(post(Some(&format!("Bearer {token}"))), 200);

    // The companion does not stop its own sandbox (it would end mid-call).
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "opencode_stop", "arguments": {"project_name": name}}})
    .to_string();
    let response = agent
        .post(&endpoint)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-06-18")
        .header("Authorization", &format!("Bearer {token}"))
        .send(call.as_str())
        .expect("an answer")
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        response.contains("the companion of sandbox companion") && response.contains("isError"),
        "{response}"
    );
    no_secret("the companion's answer", &response, &secrets);
    assert!(alive(server_pid));

    // The official Python SDK over Streamable HTTP with the token: a
    // prompt on the sandbox's clone is answered by the sandbox's server.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/py_client.py");
    let mut command = bed.command(&python);
    command
        .arg(script)
        .args(["--ocm", "unused", "--project"])
        .arg(&repo)
        .args(["--url", &endpoint, "--token-env", "MCP_TOOL_BEARER_TOKEN"])
        .arg("--keep")
        .env("MCP_TOOL_BEARER_TOKEN", token);
    let output = mcp_clients::run_client(command, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{stderr}"
    );
    let summary: Value = serde_json::from_str(stdout.trim()).expect("a JSON summary");
    let start = &summary["start"];
    assert_eq!(start["isError"], false, "{summary}");
    assert_eq!(start["structured"]["reused"], true, "{summary}");
    assert_eq!(start["structured"]["pid"], server_pid, "{summary}");
    assert_eq!(summary["status"]["structured"]["healthy"], true);
    assert_eq!(summary["prompt"]["isError"], false, "{summary}");
    assert_eq!(
        summary["prompt"]["structured"]["reply"], "echo: hello from python",
        "{summary}"
    );
    // The turn is on the sandbox's server: its session list, by name.
    let sessions = mcp.ok(2, "opencode_sessions", json!({"project_name": name}));
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "{sessions}"
    );
    assert_eq!(bed.opencode_pids(), vec![server_pid as u32]);

    // Nothing secret in what the clients saw, nor on disk.
    no_secret("the Python client's output", &stdout, &secrets);
    no_secret("the Python client's stderr", &stderr, &secrets);
    let down = mcp.ok(3, "opencode_stop", json!({"project_name": name}));
    assert_eq!(down["companionStopped"], true, "{down}");
    assert!(no_secret_in_files(&bed, &folder, &secrets) > 0);
    no_secret("the stdio transcript", &mcp.transcript(), &secrets);
    mcp.ok(
        4,
        "opencode_destroy",
        json!({"project_name": name, "confirm": true}),
    );
    assert!(!folder.exists());
}

#[test]
fn over_ssh_start_waits_for_the_deploy_key_then_comes_up() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let git = GitSshServer::start(&bed);
    git.bare_repo("app");
    let url = git.url("app");
    let name = "ssh-app";
    let mut mcp = stdio_mcp(&bed, &[]);

    // The key is not accepted yet: the public key and what to do, not an
    // error, and nothing started.
    let waiting = mcp.ok(
        1,
        "opencode_start",
        json!({"project_name": name, "git_url": url}),
    );
    assert_eq!(waiting["status"], "waiting_for_key", "{waiting}");
    let public_key = waiting["publicKey"].as_str().expect("the public key");
    assert!(public_key.starts_with("ssh-ed25519 "), "{waiting}");
    let key_path = PathBuf::from(waiting["keyPath"].as_str().unwrap());
    assert_eq!(
        key_path,
        bed.root()
            .join("data/ocm/keys")
            .join(format!("{name}-deploy"))
    );
    assert!(key_path.exists());
    let next = waiting["nextStep"].as_str().unwrap();
    assert!(next.contains("deploy key") && next.contains(name), "{next}");
    assert!(bed.opencode_pids().is_empty());
    let status = mcp.ok(2, "opencode_status", json!({"project_name": name}));
    assert_eq!(status["status"], "waiting_for_key", "{status}");
    assert_eq!(status["publicKey"], public_key, "{status}");

    // Once the git server has the key, the same call continues.
    git.authorize(public_key);
    let up = mcp.ok(3, "opencode_start", json!({"project_name": name}));
    assert_eq!(up["status"], "success", "{up}");
    assert_eq!(up["keyOwner"], "ocm", "{up}");
    assert_eq!(up["server"]["healthy"], true, "{up}");
    assert_eq!(up["companion"]["answered"], true, "{up}");
    let folder = folder(&bed, name);
    assert_eq!(
        std::fs::read_to_string(folder.join("repo/README.md")).unwrap(),
        "# app\n"
    );
    let secrets = secrets(&folder);

    // Restart replaces both; destroy removes the generated key too.
    let restarted = mcp.ok(4, "opencode_restart", json!({"project_name": name}));
    assert_eq!(restarted["status"], "success", "{restarted}");
    assert_ne!(restarted["server"]["pid"], up["server"]["pid"]);
    assert_ne!(restarted["companion"]["pid"], up["companion"]["pid"]);
    assert!(no_secret_in_files(&bed, &folder, &secrets) > 0);
    let destroyed = mcp.ok(
        5,
        "opencode_destroy",
        json!({"project_name": name, "confirm": true}),
    );
    assert_eq!(destroyed["removedKey"], json!(key_path), "{destroyed}");
    assert!(!key_path.exists() && !folder.exists());
    assert!(bed.opencode_pids().is_empty());
    no_secret("the stdio transcript", &mcp.transcript(), &secrets);
    no_secret_in_files(&bed, &folder, &secrets);
}

#[test]
fn in_production_a_missing_env_is_an_error_naming_the_keys() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let url = e2e::git_server::file_repo(&bed);
    let name = "prod";
    let mut mcp = start_in(&bed, &[], "production");
    let text = mcp.fails(
        1,
        "opencode_start",
        json!({"project_name": name, "git_url": url}),
    );
    let env = folder(&bed, name).join(".env");
    for needed in [
        env.to_str().unwrap(),
        "does not exist",
        "OPENCODE_SERVER_PASSWORD",
        "MCP_TOOL_BEARER_TOKEN",
        "OCM_ENV=development",
    ] {
        assert!(text.contains(needed), "{needed} not in: {text}");
    }
    assert!(!env.exists(), "nothing is generated in production");
    let text = mcp.fails(
        2,
        "opencode_start",
        json!({"project_name": name, "git_url": url, "user_ssh_key": "id_ed25519"}),
    );
    assert!(text.contains("absolute path"), "{text}");
    assert!(bed.opencode_pids().is_empty());
}
