//! Proves the test bed: the real opencode, configured with the offline mock
//! model, answers a prompt with the mock's text and streams events.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use e2e::{Reply, Script, TestBed, e2e_skipped, http_agent};
use serde_json::{Value, json};

#[test]
fn real_opencode_answers_a_prompt_with_the_mock_text() {
    if e2e_skipped() {
        return;
    }
    let bed =
        TestBed::with_script(Script::new().when("smoke", Reply::text("The smoke test passed.")));
    let server = bed.start_opencode();
    let agent = http_agent(Duration::from_secs(60));
    let directory = bed.project.display().to_string();

    let health: Value = agent
        .get(format!("{}/global/health", server.url))
        .call()
        .expect("health request")
        .body_mut()
        .read_json()
        .expect("health JSON");
    assert_eq!(health["healthy"], true, "{health}");
    assert_eq!(health["version"], e2e::OPENCODE_VERSION);

    // The event stream first, so the frames of the prompt are on it.
    let mut events = agent
        .get(format!("{}/event", server.url))
        .query("directory", &directory)
        .header("accept", "text/event-stream")
        .call()
        .expect("open /event");
    assert_eq!(events.status(), 200);
    let mut lines = BufReader::new(events.body_mut().as_reader());
    let mut first = String::new();
    lines.read_line(&mut first).expect("read the first frame");
    let frame: Value = serde_json::from_str(
        first
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not a data line: {first:?}")),
    )
    .expect("frame JSON");
    assert_eq!(frame["type"], "server.connected", "{frame}");

    let session: Value = agent
        .post(format!("{}/session", server.url))
        .query("directory", &directory)
        .send_json(json!({ "title": "smoke" }))
        .expect("create session")
        .body_mut()
        .read_json()
        .expect("session JSON");
    let session_id = session["id"].as_str().expect("session id");
    assert!(session_id.starts_with("ses_"), "{session}");

    let mut response = agent
        .post(format!("{}/session/{session_id}/message", server.url))
        .query("directory", &directory)
        .send_json(json!({ "parts": [{ "type": "text", "text": "run the smoke test" }] }))
        .expect("prompt");
    assert_eq!(response.status(), 200);
    let reply: Value = response.body_mut().read_json().expect("reply JSON");
    let text: String = reply["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter(|p| p["type"] == "text")
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(text, "The smoke test passed.", "{reply}");
    assert!(reply["info"]["time"]["completed"].is_number(), "{reply}");

    // The mock saw the prompt, sent by opencode as a streamed chat request.
    let chats = bed.mock.chat_requests();
    let prompt = chats
        .iter()
        .find(|r| r.last_user_text().contains("run the smoke test"))
        .unwrap_or_else(|| panic!("the mock never received the prompt: {chats:?}"));
    assert_eq!(prompt.body["model"], "echo");
    assert_eq!(prompt.body["stream"], true);

    // The prompt's frames reached the event stream, ending with session.idle.
    let mut saw_delta = false;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).expect("read a frame") == 0 {
            panic!("event stream ended before session.idle");
        }
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let frame: Value = serde_json::from_str(data).expect("frame JSON");
        match frame["type"].as_str() {
            Some("message.part.delta") => saw_delta = true,
            Some("session.idle") if frame["properties"]["sessionID"] == session_id => break,
            _ => {}
        }
    }
    assert!(saw_delta, "no message.part.delta frame before session.idle");
    assert_eq!(bed.opencode_pids(), vec![server.pid]);
}
