//! `cargo xtask demo`: the main job end to end on a scratch project.
//!
//! Until the manager exists this runs the test bed's path: the real opencode
//! with the offline model, one session and one prompt.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub fn run() -> Result<(), String> {
    let bin = crate::install_opencode()?;
    let bed = e2e::TestBed::with_script(e2e::Script::reply(
        "Hello from the offline model: the server is up and answering.",
    ));
    println!("opencode:  {}", bin.display());
    println!("project:   {}", bed.project.display());
    println!("mock llm:  {}", bed.mock.base_url());
    let started = Instant::now();
    let server = bed.start_opencode();
    println!(
        "server:    {} (pid {}) listening after {:.2} s",
        server.url,
        server.pid,
        started.elapsed().as_secs_f64()
    );
    let agent = e2e::http_agent(Duration::from_secs(60));
    let directory = bed.project.display().to_string();
    let session: Value = agent
        .post(format!("{}/session", server.url))
        .query("directory", &directory)
        .send_json(json!({ "title": "demo" }))
        .and_then(|mut r| r.body_mut().read_json())
        .map_err(|e| format!("create session: {e}"))?;
    let id = session["id"].as_str().ok_or("the session has no id")?;
    println!("session:   {id}");
    let started = Instant::now();
    let reply: Value = agent
        .post(format!("{}/session/{id}/message", server.url))
        .query("directory", &directory)
        .send_json(json!({ "parts": [{ "type": "text", "text": "Say hello." }] }))
        .and_then(|mut r| r.body_mut().read_json())
        .map_err(|e| format!("prompt: {e}"))?;
    let text: String = reply["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["type"] == "text")
        .filter_map(|p| p["text"].as_str())
        .collect();
    println!(
        "reply:     {text:?} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    drop(server);
    println!("stopped:   the server and the mock model are gone");
    if text.is_empty() {
        return Err(format!("the reply had no text: {reply}"));
    }
    Ok(())
}
