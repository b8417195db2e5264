//! End-to-end tests of `ocm prompt` against the real opencode server with
//! the mock model: the reply is streamed to stdout, `--json` ends with
//! `done` and the usage, a failed turn exits 5 with its message ID, and
//! `--message-id` retries it without a duplicate; a server that cannot be
//! started exits 4; every fresh process reports all of a two-step turn.

use std::process::Output;
use std::time::Duration;

use e2e::{Reply, Script, TestBed, e2e_skipped};
use serde_json::Value;

fn ocm(bed: &TestBed, args: &[&str]) -> Output {
    bed.command(e2e::ocm_bin())
        .args(args)
        .current_dir(&bed.project)
        .output()
        .expect("run ocm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The objects `ocm prompt --json` printed, one a line.
fn json_lines(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// A client of the project's server, found with `ocm url`.
fn server_client(bed: &TestBed) -> opencode_api::Client {
    let project = bed.project.display().to_string();
    let url = text(&ocm(bed, &["url", &project]).stdout)
        .trim()
        .to_string();
    opencode_api::Client::builder(&url)
        .directory(&bed.project)
        .build()
        .unwrap()
}

#[test]
fn ocm_prompt_prints_the_mock_text_and_json_ends_with_done_and_usage() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::reply("Hello from the mock."));
    let project = bed.project.display().to_string();
    let out = ocm(&bed, &["prompt", &project, "say hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello from the mock.\n");

    let out = ocm(
        &bed,
        &["prompt", &project, "--title", "json one", "--json", "again"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    let last = lines.last().expect("some output");
    assert_eq!(last["type"], "done", "{lines:?}");
    assert_eq!(last["text"], "Hello from the mock.");
    assert!(last["messageId"].as_str().unwrap().starts_with("msg_"));
    let streamed: String = lines
        .iter()
        .filter(|l| l["type"] == "text")
        .map(|l| l["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, "Hello from the mock.");
    let steps: Vec<&Value> = lines.iter().filter(|l| l["type"] == "usage").collect();
    assert!(!steps.is_empty(), "{lines:?}");
    let summed: u64 = steps
        .iter()
        .map(|l| l["usage"]["output"].as_u64().unwrap())
        .sum();
    assert_eq!(last["usage"]["output"].as_u64().unwrap(), summed);
    assert!(summed > 0, "the mock reports usage");
    assert!(last["cost"].is_number());

    // The registry has the totals; ls shows both sessions; rm closes one.
    let out = ocm(&bed, &["session", "show", &project, "json one", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["usage"], last["usage"], "{shown}");
    assert_eq!(shown["turns"], 1);
    assert_eq!(shown["sessionId"], last["sessionId"]);
    let out = ocm(&bed, &["session", "ls", &project, "--json"]);
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    // The table ends with the project's totals: both turns, their tokens.
    let out = ocm(&bed, &["session", "ls", &project]);
    let table = text(&out.stdout);
    let total: Vec<&str> = table.lines().last().unwrap().split_whitespace().collect();
    let output: u64 = listed
        .iter()
        .map(|s| s["usage"]["output"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total[..2], ["total", "2"], "{table}");
    assert_eq!(total[3], output.to_string(), "{table}");
    assert_eq!(total[4], "cost", "{table}");
    let out = ocm(&bed, &["session", "rm", &project, "json one"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = ocm(&bed, &["session", "show", &project, "json one", "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["status"], "closed");
    assert_eq!(shown["onServer"], false);
    // A session the project does not have: an error object, exit 1.
    let out = ocm(&bed, &["session", "show", &project, "nope", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("no session nope"),
        "{error}"
    );
    assert!(
        error["hint"].as_str().unwrap().contains("ocm session ls"),
        "{error}"
    );
    assert_eq!(error["exitCode"], 1, "{error}");
    let out = ocm(
        &bed,
        &[
            "session", "new", &project, "--team", "red", "--agent", "a1", "--role", "lead",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ses_"));
}

#[test]
fn a_failed_turn_exits_5_with_its_message_id_and_a_retry_by_id_is_not_a_duplicate() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(
        Script::new().default_reply(Reply::text("stuck forever").stall_after(1)),
    );
    let project = bed.project.display().to_string();
    let out = ocm(
        &bed,
        &["prompt", &project, "--json", "--timeout", "3", "first try"],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    // With --json the failure is the last line, as every error object,
    // and nothing is said on stderr.
    assert!(
        !text(&out.stderr).contains("error"),
        "{}",
        text(&out.stderr)
    );
    let failed: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(failed["type"], "failed", "{failed}");
    assert_eq!(failed["exitCode"], 5, "{failed}");
    let id = failed["messageId"].as_str().unwrap().to_string();
    assert!(id.starts_with("msg_"), "{failed}");
    assert!(
        failed["hint"]
            .as_str()
            .unwrap()
            .contains(&format!("--message-id {id}")),
        "{failed}"
    );
    bed.mock.set_script(Script::reply("Now it works."));
    std::thread::sleep(Duration::from_millis(200));
    let out = ocm(
        &bed,
        &["prompt", &project, "--message-id", &id, "first try"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Now it works.\n");
    // Once more: already answered, the stored reply is printed.
    let out = ocm(
        &bed,
        &["prompt", &project, "--message-id", &id, "first try"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Now it works.\n");
    // On the server: the prompt's ID once, with one completed reply.
    let client = server_client(&bed);
    let (mut users, mut replies) = (0, 0);
    for session in client.list_sessions().unwrap() {
        for m in client.list_messages(&session.id, None).unwrap() {
            if m.info.id().as_str() == id {
                users += 1;
            }
            if let Some(a) = m.info.as_assistant()
                && a.parent_id.as_ref().is_some_and(|p| p.as_str() == id)
                && a.is_completed()
                && a.error.is_none()
            {
                replies += 1;
            }
        }
    }
    assert_eq!((users, replies), (1, 1));

    let out = ocm(
        &bed,
        &["prompt", &project, "--new", "--session", "ses_x", "hi"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// A test bed whose replies stream 16 words, a word every `every`.
fn slow_bed(every: Duration) -> TestBed {
    TestBed::with_script(
        Script::new()
            .default_reply(Reply::text("a b c d e f g h i j k l m n o p").chunk_delay(every)),
    )
}

/// `ocm prompt PROJECT ARGS... "slow one"` started, once it streamed its
/// first byte: the process (stderr piped) and the rest of its stdout.
fn slow_prompt(bed: &TestBed, args: &[&str]) -> (std::process::Child, std::process::ChildStdout) {
    use std::io::Read;
    let project = bed.project.display().to_string();
    let mut child = bed
        .command(e2e::ocm_bin())
        .args(["prompt", &project])
        .args(args)
        .arg("slow one")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ocm");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout
        .read_exact(&mut first)
        .expect("the first streamed byte");
    (child, stdout)
}

/// The turns the registry counts for the project's default session.
fn default_session_turns(bed: &TestBed) -> Value {
    let project = bed.project.display().to_string();
    let out = ocm(
        bed,
        &["session", "show", &project, "ocm::default", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    shown["turns"].clone()
}

/// Sends Ctrl-C to a `slow_prompt --json` and checks how it ends: exit 130,
/// its last line a `failed` object that says so, with the prompt's message
/// ID.
fn interrupt_json_prompt(mut child: std::process::Child, mut stdout: std::process::ChildStdout) {
    use std::io::Read;
    assert!(e2e::send_signal(child.id() as i32, libc::SIGINT));
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    // The last line says so, with the exit status the process has.
    let failed: Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    assert_eq!(failed["type"], "failed", "{failed}");
    assert_eq!(failed["exitCode"], 130, "{failed}");
    assert!(
        failed["messageId"].as_str().unwrap().starts_with("msg_"),
        "{failed}"
    );
}

#[test]
fn ctrl_c_aborts_the_turn_and_exits_130_with_the_message_id() {
    if e2e_skipped() {
        return;
    }
    let bed = slow_bed(Duration::from_millis(400));
    let (child, stdout) = slow_prompt(&bed, &["--json"]);
    interrupt_json_prompt(child, stdout);
    // The aborted turn is recorded in the registry, as every ended turn.
    assert_eq!(default_session_turns(&bed), 1);
}

/// A server that hangs mid-turn (stopped) does not hold Ctrl-C up: the
/// abort it cannot answer is given up within seconds, and the command
/// exits 130 with the prompt's message ID.
#[test]
fn ctrl_c_while_the_server_hangs_exits_130_within_seconds() {
    if e2e_skipped() {
        return;
    }
    let bed = slow_bed(Duration::from_millis(400));
    let (child, stdout) = slow_prompt(&bed, &["--json"]);
    let project = bed.project.display().to_string();
    let status: Value =
        serde_json::from_slice(&ocm(&bed, &["status", &project, "--json"]).stdout).unwrap();
    let server = status["pid"].as_i64().expect("the server's pid") as i32;
    // Stopped, and killed with the bed (SIGKILL ends a stopped process).
    assert!(e2e::send_signal(-server, libc::SIGSTOP));
    let began = std::time::Instant::now();
    interrupt_json_prompt(child, stdout);
    let took = began.elapsed();
    assert!(took < Duration::from_secs(15), "Ctrl-C took {took:?}");
    e2e::send_signal(-server, libc::SIGCONT);
}

#[test]
fn a_second_ocm_prompt_on_a_session_with_a_turn_in_flight_is_refused() {
    use std::io::Read;
    if e2e_skipped() {
        return;
    }
    let bed = slow_bed(Duration::from_millis(300));
    let project = bed.project.display().to_string();
    let (mut first, mut stdout) = slow_prompt(&bed, &[]);
    let out = ocm(&bed, &["prompt", &project, "--json", "meanwhile"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let failed: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(failed["type"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("in flight in another process"),
        "{failed}"
    );
    // The first turn goes on to its end, the only prompt of the session.
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(first.wait().unwrap().code(), Some(0));
    assert!(rest.trim_end().ends_with('p'), "{rest}");
    assert_eq!(default_session_turns(&bed), 1);
}

#[test]
fn a_prompt_to_an_unknown_model_fails_at_once_with_the_servers_reason() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::reply("never"));
    let project = bed.project.display().to_string();
    let began = std::time::Instant::now();
    let out = ocm(
        &bed,
        &["prompt", &project, "--json", "--model", "nope/none", "hi"],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let failed: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("Model not found: nope/none"),
        "{failed}"
    );
    // Not the watchdog's 180 s: the server said so within seconds.
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "{:?}",
        began.elapsed()
    );
}

/// The task tool runs a sub-agent in a session of its own; that session's
/// permission request is the turn's to show and answer.
#[test]
fn permissions_allow_answers_a_sub_agents_permission_too() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(
        Script::new()
            .when(
                "child work",
                Reply::text("child done").tool_call(
                    "bash",
                    r#"{"command":"echo child-marker","description":"print a marker"}"#,
                ),
            )
            .when(
                "delegate it",
                Reply::text("delegated").tool_call(
                    "task",
                    r#"{"description":"sub job","prompt":"child work please","subagent_type":"general"}"#,
                ),
            ),
    );
    let mut config: Value = serde_json::from_str(&bed.mock.opencode_config()).unwrap();
    config["permission"] = serde_json::json!({"bash": "ask"});
    let project = bed.project.display().to_string();
    let out = bed
        .command(e2e::ocm_bin())
        .args([
            "prompt",
            &project,
            "--json",
            "--timeout",
            "60",
            "--permissions",
            "allow",
            "delegate it",
        ])
        .env("OPENCODE_CONFIG_CONTENT", config.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert!(lines.iter().any(|l| l["type"] == "permission"), "{lines:?}");
    let task_done = lines
        .iter()
        .any(|l| l["type"] == "tool" && l["tool"] == "task" && l["status"] == "completed");
    assert!(task_done, "{lines:?}");
    assert_eq!(lines.last().unwrap()["type"], "done");
    assert_eq!(lines.last().unwrap()["text"], "delegated");
}

#[test]
fn ocm_events_prints_the_project_events_until_ctrl_c() {
    use std::io::{BufRead, BufReader};
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::reply("evented"));
    let project = bed.project.display().to_string();
    // Start the server first, so the events command connects at once.
    let out = ocm(&bed, &["prompt", &project, "warm up"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut child = bed
        .command(e2e::ocm_bin())
        .args(["events", &project, "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ocm events");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["type"], "(connected)");
    let out = ocm(&bed, &["prompt", &project, "--json", "while watched"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let kind = event["type"].as_str().unwrap_or_default().to_string();
        seen.push(kind.clone());
        if kind == "session.idle" {
            break;
        }
    }
    assert!(seen.iter().any(|k| k == "message.part.delta"), "{seen:?}");
    assert!(e2e::send_signal(child.id() as i32, libc::SIGINT));
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

#[test]
fn permissions_allow_answers_a_tool_permission_and_the_turn_ends_done() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::new().default_reply(Reply::text("ran it").tool_call(
        "bash",
        r#"{"command":"echo perm-marker-7","description":"print a marker"}"#,
    )));
    // Make bash ask for permission.
    let mut config: Value = serde_json::from_str(&bed.mock.opencode_config()).unwrap();
    config["permission"] = serde_json::json!({"bash": "ask"});
    let project = bed.project.display().to_string();
    let out = bed
        .command(e2e::ocm_bin())
        .args([
            "prompt",
            &project,
            "--json",
            "--permissions",
            "allow",
            "use bash",
        ])
        .env("OPENCODE_CONFIG_CONTENT", config.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert!(lines.iter().any(|l| l["type"] == "permission"), "{lines:?}");
    let tool_done = lines
        .iter()
        .any(|l| l["type"] == "tool" && l["status"] == "completed");
    assert!(tool_done, "{lines:?}");
    assert_eq!(lines.last().unwrap()["type"], "done");
    assert_eq!(lines.last().unwrap()["text"], "ran it");
}

#[test]
fn ocm_prompt_exits_4_when_the_server_cannot_be_started() {
    if e2e_skipped() {
        return;
    }
    // The server is ensured once, by the engine: a start that fails is
    // still exit 4 and names the binary.
    let bed = TestBed::with_script(Script::reply("never"));
    let broken = bed.root().join("broken-opencode");
    std::fs::write(&broken, "#!/nonexistent/interpreter\n").expect("write the script");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
    }
    let project = bed.project.display().to_string();
    let out = bed
        .command(e2e::ocm_bin())
        .args(["prompt", &project, "say hi"])
        .env("OPENCODE_BIN", &broken)
        .output()
        .expect("run ocm");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&broken.display().to_string()),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// Each `ocm prompt` is a new process with a new event stream, which
/// OpenCode may subscribe only after the prompt was stored (see `turns`'
/// demultiplexer; its unit tests make that happen on purpose, here it
/// happens when it does). Every run of a two-step turn must report all of
/// it: the streamed text is the reply, the steps' `usage` events add up
/// to `done`'s usage, and that is what the server stored for the prompt.
#[test]
fn every_fresh_ocm_prompt_of_a_tool_turn_reports_all_of_it() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::new().default_reply(
        Reply::text("the tool ran").tool_call(
            "bash",
            r#"{"command":"echo tool-output-9","description":"print a marker"}"#,
        ),
    ));
    let project = bed.project.display().to_string();
    for i in 0..5 {
        let out = ocm(&bed, &["prompt", "--json", &project, &format!("tool {i}")]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let lines = json_lines(&out);
        let done = lines.last().unwrap();
        assert_eq!(done["type"], "done", "{lines:?}");
        let streamed: String = lines
            .iter()
            .filter(|l| l["type"] == "text")
            .map(|l| l["delta"].as_str().unwrap())
            .collect();
        assert_eq!(streamed, "the tool ran", "run {i}: {lines:?}");
        let tool_done = lines
            .iter()
            .any(|l| l["type"] == "tool" && l["status"] == "completed");
        assert!(tool_done, "run {i}: {lines:?}");
        let summed = |key: &str| -> u64 {
            lines
                .iter()
                .filter(|l| l["type"] == "usage")
                .map(|l| l["usage"][key].as_u64().unwrap())
                .sum()
        };
        let reported = (
            done["usage"]["input"].as_u64().unwrap(),
            done["usage"]["output"].as_u64().unwrap(),
        );
        assert_eq!((summed("input"), summed("output")), reported, "run {i}");
        // What the server stored for this prompt: two steps, the tool's
        // and the answer's.
        let client = server_client(&bed);
        let session = opencode_api::SessionId::from(done["sessionId"].as_str().unwrap());
        let id = done["messageId"].as_str().unwrap();
        let steps: Vec<_> = client
            .list_messages(&session, None)
            .unwrap()
            .into_iter()
            .filter_map(|m| m.info.as_assistant().cloned())
            .filter(|a| a.parent_id.as_ref().is_some_and(|p| p.as_str() == id))
            .collect();
        assert_eq!(steps.len(), 2, "run {i}: {steps:?}");
        let stored = steps.iter().fold((0, 0), |(i, o), a| {
            (i + a.tokens.input, o + a.tokens.output)
        });
        assert_eq!(stored, reported, "run {i}");
    }
}
