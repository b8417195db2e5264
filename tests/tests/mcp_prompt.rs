//! `ocm mcp`'s prompt tools against the real opencode and the mock model:
//! `opencode_prompt` returns the mock's reply; a cancelled prompt gets no
//! answer and its turn is aborted on the server, and so is a prompt still
//! running when the client goes away; a retry by message ID
//! after the title got a new session is not sent twice; `opencode_turn` follows
//! a prompt that returned `running` to its end; a turn that waits for a
//! permission or a question shows it in `pending` and `opencode_answer`
//! answers it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::mcp_stdio::StdioMcp as Mcp;
use e2e::{Reply, Script, TestBed, e2e_skipped, ocm_bin};
use opencode_api::{Message, SessionId};
use serde_json::{Value, json};

const ANSWER_DEADLINE: Duration = Duration::from_secs(90);

/// A stdio `ocm mcp` allowed the bed's folders.
fn start(bed: &TestBed) -> Mcp {
    start_with(bed, &[])
}

/// [`start`] with more environment (its servers inherit it).
fn start_with(bed: &TestBed, env: &[(&str, String)]) -> Mcp {
    let mut command = bed.command(ocm_bin());
    command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["mcp", "--allow", bed.root().to_str().unwrap()]);
    Mcp::start(command, "prompt-test", ANSWER_DEADLINE)
}

fn client(bed: &TestBed) -> opencode_api::Client {
    let manager = Arc::new(e2e::manager_in(bed, |_| {}));
    turns::Engine::managed(manager, &bed.project, turns::TurnOptions::default())
        .expect("engine")
        .client()
        .expect("client")
}

fn stop(bed: &TestBed) {
    e2e::manager_in(bed, |_| {})
        .stop(&bed.project)
        .expect("stop");
    assert!(bed.opencode_pids().is_empty());
}

#[test]
fn opencode_prompt_returns_the_mock_reply_and_the_sessions_show_usage() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let mut mcp = start(&bed);
    let (progress, result) = mcp.call(
        1,
        "opencode_prompt",
        json!({"project": bed.project, "text": "hello there"}),
    );
    assert_eq!(result["isError"], false, "{result}");
    let reply = &result["structuredContent"];
    assert_eq!(reply["status"], "done", "{reply}");
    assert_eq!(reply["reply"], "echo: hello there", "{reply}");
    assert!(reply["messageId"].as_str().unwrap().starts_with("msg_"));
    let steps: Vec<f64> = progress
        .iter()
        .map(|p| p["params"]["progress"].as_f64().unwrap())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    // The same message ID again: the stored reply, not a second prompt.
    let (_, again) = mcp.call(
        2,
        "opencode_prompt",
        json!({"project": bed.project, "text": "hello there",
               "message_id": reply["messageId"], "session": reply["sessionId"]}),
    );
    assert_eq!(
        again["structuredContent"]["reply"], "echo: hello there",
        "{again}"
    );
    // A session the project's server does not have is refused.
    let (_, foreign) = mcp.call(
        4,
        "opencode_prompt",
        json!({"project": bed.project, "text": "hi", "session": "ses_nope"}),
    );
    assert_eq!(foreign["isError"], true, "{foreign}");
    let (_, sessions) = mcp.call(3, "opencode_sessions", json!({"project": bed.project}));
    assert_eq!(sessions["isError"], false, "{sessions}");
    let list = sessions["structuredContent"]["sessions"]
        .as_array()
        .unwrap();
    assert_eq!(list.len(), 1, "{sessions}");
    assert_eq!(list[0]["sessionId"], reply["sessionId"]);
    let messages = client(&bed)
        .list_messages(&SessionId::from(reply["sessionId"].as_str().unwrap()), None)
        .unwrap();
    assert_eq!(messages.len(), 2, "one prompt, one answer");
    drop(mcp);
    stop(&bed);
}

/// A retry by message ID with no session looks first where the prompt was
/// sent, as `ocm prompt --message-id` does: the title's session was
/// replaced since, and the retry must not send the prompt there again.
#[test]
fn a_retry_by_id_after_the_title_got_a_new_session_is_not_sent_twice() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let mut mcp = start(&bed);
    let (_, first) = mcp.call(
        1,
        "opencode_prompt",
        json!({"project": bed.project, "title": "t", "text": "only once"}),
    );
    let first = &first["structuredContent"];
    assert_eq!(first["status"], "done", "{first}");
    // The title gets a new session.
    let manager = Arc::new(e2e::manager_in(&bed, |_| {}));
    let engine = turns::Engine::managed(
        Arc::clone(&manager),
        &bed.project,
        turns::TurnOptions::default(),
    )
    .unwrap();
    let registry = turns::Registry::open(&manager, &bed.project).unwrap();
    let sessions = turns::Sessions::new(engine, registry);
    let replacement = sessions
        .create(&turns::SessionKey::Title("t".into()), None)
        .unwrap();
    assert_ne!(first["sessionId"], replacement.session_id.as_str());
    let (_, again) = mcp.call(
        2,
        "opencode_prompt",
        json!({"project": bed.project, "title": "t", "text": "only once",
               "message_id": first["messageId"]}),
    );
    let again = &again["structuredContent"];
    assert_eq!(again["status"], "done", "{again}");
    assert_eq!(again["reply"], "echo: only once", "{again}");
    assert_eq!(copies(&bed, &first["messageId"]), (1, 1));

    // Unanswered where it was sent: taken back from there, then sent to
    // the title's new session.
    bed.mock
        .set_script(Script::new().default_reply(Reply::text("stuck").stall_after(1)));
    let (_, stuck) = mcp.call(
        3,
        "opencode_prompt",
        json!({"project": bed.project, "title": "t", "text": "stuck", "wait_s": 1}),
    );
    let stuck = &stuck["structuredContent"];
    assert_eq!(stuck["status"], "running", "{stuck}");
    assert_eq!(stuck["sessionId"], replacement.session_id.as_str());
    let newest = sessions
        .create(&turns::SessionKey::Title("t".into()), None)
        .unwrap();
    bed.mock.set_script(Script::reply("unstuck"));
    let (_, retried) = mcp.call(
        4,
        "opencode_prompt",
        json!({"project": bed.project, "title": "t", "text": "stuck",
               "message_id": stuck["messageId"]}),
    );
    let retried = &retried["structuredContent"];
    assert_eq!(retried["status"], "done", "{retried}");
    assert_eq!(retried["reply"], "unstuck", "{retried}");
    assert_eq!(retried["sessionId"], newest.session_id.as_str());
    assert_eq!(copies(&bed, &stuck["messageId"]), (1, 1));
    drop(mcp);
    stop(&bed);
}

/// How often the project's sessions hold the prompt `id`, and its
/// completed replies without an error.
fn copies(bed: &TestBed, id: &Value) -> (usize, usize) {
    let api = client(bed);
    let (mut prompts, mut replies) = (0, 0);
    for session in api.list_sessions().unwrap() {
        for m in api.list_messages(&session.id, None).unwrap() {
            match &m.info {
                Message::User(u) if u.id.as_str() == id => prompts += 1,
                Message::Assistant(a)
                    if a.parent_id.as_ref().is_some_and(|p| p.as_str() == id)
                        && a.is_completed()
                        && a.error.is_none() =>
                {
                    replies += 1
                }
                _ => {}
            }
        }
    }
    (prompts, replies)
}

/// A prompt that writes its reply slowly (8 s), and the stdio `ocm mcp`
/// running it once the reply's text flows.
fn slow_prompt(bed: &TestBed) -> Mcp {
    let mut mcp = start(bed);
    mcp.send(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "opencode_prompt",
                   "arguments": {"project": bed.project, "text": "slow one"},
                   "_meta": {"progressToken": "slow"}}}));
    // Wait for the turn's text to flow.
    loop {
        let message = mcp.next();
        assert_eq!(message["method"], "notifications/progress", "{message}");
        if message["params"]["message"] == "writing the reply" {
            break;
        }
    }
    mcp
}

fn slow_bed() -> TestBed {
    TestBed::with_script(
        Script::new().default_reply(
            Reply::text("a b c d e f g h i j k l m n o p q r s t")
                .chunk_delay(Duration::from_millis(400)),
        ),
    )
}

/// Waits (10 s at most) for the project's only session to be idle with
/// an aborted reply.
fn assert_aborted(bed: &TestBed) {
    let client = client(bed);
    let session = client.list_sessions().unwrap().remove(0).id;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let idle = client
            .session_status()
            .unwrap()
            .get(&session)
            .is_none_or(|s| !s.is_active());
        let messages = client.list_messages(&session, None).unwrap();
        let aborted = messages.iter().any(|m| {
            matches!(&m.info, Message::Assistant(a)
                if a.error.as_ref().is_some_and(|e| e.name == "MessageAbortedError"))
        });
        if idle && aborted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the turn was not aborted: {messages:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The client goes away mid-prompt (its input closes): the turn is
/// aborted on the server before `ocm mcp` exits, not left to run.
#[test]
fn input_closed_mid_prompt_aborts_the_turn_before_exiting() {
    if e2e_skipped() {
        return;
    }
    let bed = slow_bed();
    let mut mcp = slow_prompt(&bed);
    let status = mcp.close_input(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "ocm mcp did not exit 0 within 10 s: {status:?}"
    );
    assert_aborted(&bed);
    drop(mcp);
    stop(&bed);
}

#[test]
fn a_cancelled_prompt_gets_no_answer_and_its_turn_is_aborted() {
    if e2e_skipped() {
        return;
    }
    let bed = slow_bed();
    let mut mcp = slow_prompt(&bed);
    mcp.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "test"}}),
    );
    // A ping gets its answer; nothing comes for the cancelled call.
    std::thread::sleep(Duration::from_secs(3));
    mcp.send(&json!({"jsonrpc": "2.0", "id": 8, "method": "ping"}));
    loop {
        let message = mcp.next();
        assert_ne!(
            message["id"], 7,
            "the cancelled call was answered: {message}"
        );
        if message["id"] == 8 {
            break;
        }
        assert_eq!(message["method"], "notifications/progress", "{message}");
    }
    assert_aborted(&bed);
    drop(mcp);
    stop(&bed);
}

#[test]
fn opencode_turn_follows_a_running_prompt_to_its_end() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::new().default_reply(
        Reply::text("one two three four five six").chunk_delay(Duration::from_millis(500)),
    ));
    let mut mcp = start(&bed);
    // Start the server first: a prompt's wait covers only the turn.
    let (_, started) = mcp.call(1, "opencode_start", json!({"project": bed.project}));
    assert_eq!(started["isError"], false, "{started}");
    let (_, first) = mcp.call(
        2,
        "opencode_prompt",
        json!({"project": bed.project, "text": "count", "wait_s": 0.5}),
    );
    let running = &first["structuredContent"];
    assert_eq!(running["status"], "running", "{first}");
    let id = running["messageId"].clone();
    let (_, turn) = mcp.call(
        3,
        "opencode_turn",
        json!({"project": bed.project, "message_id": id, "wait_s": 40}),
    );
    let turn = &turn["structuredContent"];
    assert_eq!(turn["status"], "done", "{turn}");
    assert_eq!(turn["reply"], "one two three four five six", "{turn}");
    // A fresh process reads the same turn from the server.
    drop(mcp);
    let mut other = start(&bed);
    let (_, stored) = other.call(
        1,
        "opencode_turn",
        json!({"project": bed.project, "message_id": id, "wait_s": 0}),
    );
    assert_eq!(stored["structuredContent"]["status"], "done", "{stored}");
    assert_eq!(
        stored["structuredContent"]["reply"],
        "one two three four five six"
    );
    // While a later prompt runs in the same session, the earlier turn
    // read from the server is still done.
    let (_, later) = other.call(
        5,
        "opencode_prompt",
        json!({"project": bed.project, "text": "count again", "wait_s": 0.5}),
    );
    assert_eq!(later["structuredContent"]["status"], "running", "{later}");
    let (_, stored) = other.call(
        6,
        "opencode_turn",
        json!({"project": bed.project, "message_id": id, "wait_s": 0}),
    );
    assert_eq!(stored["structuredContent"]["status"], "done", "{stored}");
    let (_, bad) = other.call(
        2,
        "opencode_turn",
        json!({"project": bed.project, "message_id": "msg_nope"}),
    );
    assert_eq!(bad["isError"], true, "{bad}");
    drop(other);
    stop(&bed);
}

/// The schema says a `running` call's `message_id` retries it without a
/// duplicate: while the turn still runs here, the retry waits on it.
#[test]
fn a_retry_of_a_running_prompt_by_its_id_follows_it() {
    if e2e_skipped() {
        return;
    }
    let bed =
        TestBed::with_script(Script::new().default_reply(
            Reply::text("one two three four").chunk_delay(Duration::from_millis(400)),
        ));
    let mut mcp = start(&bed);
    let (_, started) = mcp.call(1, "opencode_start", json!({"project": bed.project}));
    assert_eq!(started["isError"], false, "{started}");
    let (_, first) = mcp.call(
        2,
        "opencode_prompt",
        json!({"project": bed.project, "text": "count", "wait_s": 0.5}),
    );
    let running = &first["structuredContent"];
    assert_eq!(running["status"], "running", "{first}");
    let id = running["messageId"].clone();
    let (_, again) = mcp.call(
        3,
        "opencode_prompt",
        json!({"project": bed.project, "text": "count", "message_id": id, "wait_s": 40}),
    );
    assert_eq!(again["isError"], false, "{again}");
    let again = &again["structuredContent"];
    assert_eq!(again["status"], "done", "{again}");
    assert_eq!(again["reply"], "one two three four", "{again}");
    assert_eq!(copies(&bed, &id), (1, 1));
    drop(mcp);
    stop(&bed);
}

#[test]
fn opencode_abort_stops_a_running_turn_by_message_id_or_session() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(
        Script::new().default_reply(
            Reply::text("a b c d e f g h i j k l m n o p q r s t")
                .chunk_delay(Duration::from_millis(400)),
        ),
    );
    let mut mcp = start(&bed);
    let (_, started) = mcp.call(1, "opencode_start", json!({"project": bed.project}));
    assert_eq!(started["isError"], false, "{started}");
    let (_, first) = mcp.call(
        2,
        "opencode_prompt",
        json!({"project": bed.project, "text": "slow", "wait_s": 1}),
    );
    let running = first["structuredContent"].clone();
    assert_eq!(running["status"], "running", "{first}");
    let (_, aborted) = mcp.call(
        3,
        "opencode_abort",
        json!({"project": bed.project, "message_id": running["messageId"]}),
    );
    let aborted = &aborted["structuredContent"];
    assert_eq!(aborted["aborted"], true, "{aborted}");
    assert_eq!(aborted["turn"]["status"], "aborted", "{aborted}");
    // By session: an idle session is fine (nothing to abort).
    let (_, idle) = mcp.call(
        4,
        "opencode_abort",
        json!({"project": bed.project, "session": running["sessionId"]}),
    );
    assert_eq!(idle["isError"], false, "{idle}");
    let (_, turn) = mcp.call(
        5,
        "opencode_turn",
        json!({"project": bed.project, "message_id": running["messageId"], "wait_s": 0}),
    );
    assert_eq!(turn["structuredContent"]["status"], "aborted", "{turn}");
    drop(mcp);
    stop(&bed);
}

/// The outputs of the session's `tool` parts.
fn tool_outputs(bed: &TestBed, session: &str) -> Vec<(String, String)> {
    client(bed)
        .list_messages(&SessionId::from(session), None)
        .expect("messages")
        .into_iter()
        .flat_map(|m| m.parts)
        .filter_map(|p| match p {
            opencode_api::Part::Tool(t) => Some((t.tool, t.state.output.unwrap_or_default())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_permission_waits_in_pending_until_opencode_answer_replies() {
    if e2e_skipped() {
        return;
    }
    // The output differs from the command: it is there only if bash ran.
    let bed = TestBed::with_script(Script::new().default_reply(Reply::text("ran it").tool_call(
        "bash",
        r#"{"command":"printf 'mcp-%s' answered","description":"print a marker"}"#,
    )));
    let mut config: Value = serde_json::from_str(&bed.mock.opencode_config()).unwrap();
    config["permission"] = json!({"bash": "ask"});
    let mut mcp = start_with(&bed, &[("OPENCODE_CONFIG_CONTENT", config.to_string())]);
    let (_, started) = mcp.call(1, "opencode_start", json!({"project": bed.project}));
    assert_eq!(started["isError"], false, "{started}");
    // The call returns once the turn waits for the answer, well before
    // its wait is over.
    let began = Instant::now();
    let (progress, first) = mcp.call(
        2,
        "opencode_prompt",
        json!({"project": bed.project, "text": "use bash", "wait_s": 45}),
    );
    assert!(began.elapsed() < Duration::from_secs(35), "{first}");
    let running = &first["structuredContent"];
    assert_eq!(running["status"], "running", "{first}");
    let pending = &running["pending"];
    assert_eq!(pending["kind"], "permission", "{first}");
    assert_eq!(pending["permission"], "bash", "{first}");
    let request = pending["id"].as_str().expect("a request id").to_string();
    let said = progress.iter().any(|p| {
        p["params"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("permission `bash`")
    });
    assert!(said, "no progress says what is asked: {progress:?}");
    // Bad combinations are tool errors.
    let (_, both) = mcp.call(
        3,
        "opencode_answer",
        json!({"project": bed.project, "request_id": request, "reply": "once", "reject": true}),
    );
    assert_eq!(both["isError"], true, "{both}");
    let (_, answered) = mcp.call(
        4,
        "opencode_answer",
        json!({"project": bed.project, "request_id": request, "reply": "once"}),
    );
    assert_eq!(answered["isError"], false, "{answered}");
    assert_eq!(
        answered["structuredContent"],
        json!({"answered": true, "requestId": request})
    );
    let (_, again) = mcp.call(
        5,
        "opencode_answer",
        json!({"project": bed.project, "request_id": request, "reply": "once"}),
    );
    assert_eq!(again["isError"], true, "{again}");
    let text = again["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("no pending permission request {request}")),
        "{text}"
    );
    let (_, turn) = mcp.call(
        6,
        "opencode_turn",
        json!({"project": bed.project, "message_id": running["messageId"], "wait_s": 45}),
    );
    let turn = &turn["structuredContent"];
    assert_eq!(turn["status"], "done", "{turn}");
    assert_eq!(turn["reply"], "ran it", "{turn}");
    assert_eq!(turn["pending"], Value::Null, "{turn}");
    let session = turn["sessionId"].as_str().unwrap().to_string();
    let outputs = tool_outputs(&bed, &session);
    assert!(
        outputs
            .iter()
            .any(|(tool, out)| tool == "bash" && out.contains("mcp-answered")),
        "{outputs:?}"
    );
    // `permissions: allow` answers at once: nothing is pending.
    let (_, allowed) = mcp.call(
        7,
        "opencode_prompt",
        json!({"project": bed.project, "session": session, "text": "again",
               "permissions": "allow", "wait_s": 45}),
    );
    let allowed = &allowed["structuredContent"];
    assert_eq!(allowed["status"], "done", "{allowed}");
    assert_eq!(allowed["pending"], Value::Null, "{allowed}");
    let ran = tool_outputs(&bed, &session)
        .iter()
        .filter(|(tool, out)| tool == "bash" && out.contains("mcp-answered"))
        .count();
    assert_eq!(ran, 2, "bash ran for both prompts");
    drop(mcp);
    stop(&bed);
}

#[test]
fn a_question_waits_in_pending_until_opencode_answer_answers_it() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::new().default_reply(
        Reply::text("thanks for answering").tool_call(
            "question",
            r#"{"questions":[{"question":"Which colour?","header":"Colour","options":[{"label":"red","description":"warm"},{"label":"blue","description":"cold"}]}]}"#,
        ),
    ));
    let mut mcp = start_with(&bed, &[("OPENCODE_ENABLE_QUESTION_TOOL", "1".into())]);
    let (_, started) = mcp.call(1, "opencode_start", json!({"project": bed.project}));
    assert_eq!(started["isError"], false, "{started}");
    let (progress, first) = mcp.call(
        2,
        "opencode_prompt",
        json!({"project": bed.project, "text": "ask me", "wait_s": 45}),
    );
    let running = &first["structuredContent"];
    assert_eq!(running["status"], "running", "{first}");
    let pending = &running["pending"];
    assert_eq!(pending["kind"], "question", "{first}");
    let question = &pending["questions"][0];
    assert_eq!(question["question"], "Which colour?", "{first}");
    let labels: Vec<&str> = question["options"]
        .as_array()
        .expect("options")
        .iter()
        .filter_map(|o| o["label"].as_str())
        .collect();
    assert_eq!(labels, ["red", "blue"], "{first}");
    let said = progress.iter().any(|p| {
        p["params"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("Which colour? [red, blue]")
    });
    assert!(said, "no progress says what is asked: {progress:?}");
    let request = pending["id"].as_str().expect("a request id").to_string();
    // Answers of the wrong shape are a tool error.
    let (_, wrong) = mcp.call(
        3,
        "opencode_answer",
        json!({"project": bed.project, "request_id": request, "answers": "blue"}),
    );
    assert_eq!(wrong["isError"], true, "{wrong}");
    let (_, answered) = mcp.call(
        4,
        "opencode_answer",
        json!({"project": bed.project, "request_id": request, "answers": [["blue"]]}),
    );
    assert_eq!(answered["isError"], false, "{answered}");
    let (_, turn) = mcp.call(
        5,
        "opencode_turn",
        json!({"project": bed.project, "message_id": running["messageId"], "wait_s": 45}),
    );
    let turn = &turn["structuredContent"];
    assert_eq!(turn["status"], "done", "{turn}");
    assert_eq!(turn["reply"], "thanks for answering", "{turn}");
    assert_eq!(turn["pending"], Value::Null, "{turn}");
    let outputs = tool_outputs(&bed, turn["sessionId"].as_str().unwrap());
    assert!(
        outputs
            .iter()
            .any(|(tool, out)| tool == "question" && out.contains("blue")),
        "{outputs:?}"
    );
    drop(mcp);
    stop(&bed);
}
