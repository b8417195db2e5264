//! Decoding tests against streams captured from the real server (opencode
//! 1.18.33), kept in the `shared/opencode/` folder beside the repository.

use crate::Error;
use crate::events::{Event, EventKind, GlobalEvent};
use crate::types::{Message, MessageWithParts, Part};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `shared/opencode/` beside the checkout: the captures are real server
/// output kept outside the repository, and CI places `shared/` beside its
/// clone too. A missing folder is a broken setup, so it fails loudly.
fn captures_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Resolved, so the message names a real place rather than a chain of `..`.
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let beside = workspace.parent().unwrap_or(&workspace);
    let dir = beside.join("shared").join("opencode");
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => dir,
        found => panic!(
            "the captured OpenCode streams are missing: looked for the folder {} ({}). \
             These tests decode frames recorded from opencode 1.18.33, which are kept \
             outside the repository in shared/opencode/ beside the checkout {} (CI puts \
             shared/ beside its clone too); put that folder there to run them.",
            dir.display(),
            match found {
                Ok(_) => "it is not a folder".to_string(),
                Err(e) => e.to_string(),
            },
            workspace.display(),
        ),
    }
}

/// The `data` of every frame of a captured stream, split by the real parser.
fn frames(name: &str) -> Vec<String> {
    let path = captures_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the captured stream {}: {e}; the folder shared/opencode/ beside \
             the checkout is there but lacks this capture of opencode 1.18.33",
            path.display()
        )
    });
    let mut parser = httpsse::Parser::new();
    let mut out = Vec::new();
    parser.feed(&bytes, |event| out.push(event.data));
    assert!(!out.is_empty(), "{} holds no frames", path.display());
    out
}

/// Types this crate decodes into typed variants.
const TYPED: &[&str] = &[
    "server.connected",
    "server.heartbeat",
    "server.instance.disposed",
    "session.created",
    "session.updated",
    "session.deleted",
    "session.status",
    "session.idle",
    "session.error",
    "session.compacted",
    "message.updated",
    "message.removed",
    "message.part.updated",
    "message.part.removed",
    "message.part.delta",
    "permission.asked",
    "question.asked",
    "session.next.text.delta",
    "session.next.text.ended",
    "session.next.reasoning.delta",
    "session.next.tool.input.delta",
    "session.next.tool.called",
    "session.next.tool.success",
    "session.next.tool.failed",
    "session.next.step.started",
    "session.next.step.ended",
    "session.next.step.failed",
];

/// Checks one decoded event against its raw JSON: typed when this crate
/// knows the type, else unknown with the raw JSON kept exactly.
fn check(event: &Event, raw: &Value) {
    let kind = raw["type"]
        .as_str()
        .expect("every captured payload has a type");
    assert_eq!(event.kind_name(), kind);
    assert_eq!(event.id, raw["id"].as_str().unwrap_or(""));
    match &event.kind {
        EventKind::Unknown {
            kind: k,
            raw: kept,
            session_id,
        } => {
            assert!(!TYPED.contains(&k.as_str()), "{k} should be typed");
            assert_eq!(kept, raw);
            assert_eq!(
                session_id.as_ref().map(|id| id.as_str()),
                raw["properties"]["sessionID"].as_str()
            );
        }
        _ => assert!(TYPED.contains(&kind), "{kind} decoded as typed"),
    }
}

#[test]
fn every_frame_of_the_prompt_stream_decodes() {
    let mut seen = BTreeMap::<String, usize>::new();
    for data in frames("event-stream-prompt.sse") {
        let event = Event::parse(&data).unwrap_or_else(|e| panic!("{e}\nframe: {data}"));
        let raw: Value = serde_json::from_str(&data).unwrap();
        check(&event, &raw);
        *seen.entry(event.kind_name().to_string()).or_default() += 1;
    }
    // The legacy prompt's sequence, as FACTS.md describes it.
    for kind in [
        "server.connected",
        "server.heartbeat",
        "message.updated",
        "message.part.updated",
        "message.part.delta",
        "session.status",
        "session.idle",
        "plugin.added",
    ] {
        assert!(seen.contains_key(kind), "no {kind} in {seen:?}");
    }
}

#[test]
fn every_frame_of_the_global_stream_decodes() {
    let mut directories = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let all = frames("global-event-stream.sse");
    for data in &all {
        let event = GlobalEvent::parse(data).unwrap_or_else(|e| panic!("{e}\nframe: {data}"));
        let raw: Value = serde_json::from_str(data).unwrap();
        check(&event.payload, &raw["payload"]);
        assert_eq!(event.directory.as_deref(), raw["directory"].as_str());
        assert_eq!(event.project.as_deref(), raw["project"].as_str());
        if let Some(dir) = event.directory {
            directories.insert(dir);
        }
        kinds.insert(event.payload.kind_name().to_string());
    }
    let first = GlobalEvent::parse(&all[0]).unwrap();
    assert_eq!(first.payload.kind, EventKind::ServerConnected);
    assert_eq!(
        first.directory, None,
        "server.connected has no envelope fields"
    );
    for dir in ["/home/dev/alpha", "/home/dev/beta", "global"] {
        assert!(directories.contains(dir), "{dir} not in {directories:?}");
    }
    assert!(kinds.contains("sync"), "sync frames are kept as unknown");
    assert!(kinds.contains("session.created"));
}

#[test]
fn the_prompt_deltas_reassemble_to_the_reply() {
    let mut deltas = BTreeMap::<String, String>::new();
    let mut finished = BTreeMap::<String, String>::new();
    let mut completed_assistant = None;
    let mut step_tokens = None;
    let mut statuses = Vec::new();
    for data in frames("event-stream-prompt.sse") {
        match Event::parse(&data).unwrap().kind {
            EventKind::MessagePartDelta(d) => {
                assert_eq!(d.field, "text");
                deltas.entry(d.part_id).or_default().push_str(&d.delta);
            }
            EventKind::MessagePartUpdated(u) => match u.part {
                Part::Text(t) if t.time.as_ref().is_some_and(|t| t.end.is_some()) => {
                    finished.insert(t.id, t.text);
                }
                Part::StepFinish(s) => step_tokens = Some(s.tokens),
                _ => {}
            },
            EventKind::MessageUpdated(m) => {
                if let Message::Assistant(a) = m.info
                    && a.is_completed()
                {
                    completed_assistant = Some(a);
                }
            }
            EventKind::SessionStatus(s) => statuses.push(s.status.kind().to_string()),
            _ => {}
        }
    }
    assert_eq!(deltas.len(), 1, "one streamed text part: {deltas:?}");
    let (part_id, text) = deltas.into_iter().next().unwrap();
    assert_eq!(text, "Hello from the fake model.");
    assert_eq!(finished.get(&part_id), Some(&text), "the final part text");
    let assistant = completed_assistant.expect("a completed assistant message");
    assert!(assistant.error.is_none());
    assert_eq!(assistant.model().to_string(), "fake/echo");
    let tokens = step_tokens.expect("a step-finish part");
    assert_eq!(
        (tokens.input, tokens.output, tokens.total),
        (10, 5, Some(15))
    );
    assert_eq!(statuses.first().map(String::as_str), Some("busy"));
    assert_eq!(statuses.last().map(String::as_str), Some("idle"));
}

#[test]
fn captured_message_ids_encode_their_creation_time() {
    // The format new_message_id copies: the hex digits are the low 48 bits of
    // created_ms * 0x1000 + counter (counter >= 1).
    let mut checked = 0;
    for name in ["event-stream-prompt.sse", "global-event-stream.sse"] {
        for data in frames(name) {
            let raw: Value = serde_json::from_str(&data).unwrap();
            let payload = raw.get("payload").unwrap_or(&raw);
            if payload["type"] != "message.updated" {
                continue;
            }
            let info = &payload["properties"]["info"];
            let id = info["id"].as_str().unwrap();
            let created = info["time"]["created"].as_u64().unwrap();
            let value = crate::id_value(id).unwrap_or_else(|| panic!("{id} has no time value"));
            assert_eq!(id.len(), 30, "{id}");
            let counter = value & 0xfff;
            let ms = value >> 12;
            let created_low = created & ((1 << 36) - 1);
            // A user message's time is set a few ms after its ID.
            assert!(
                counter >= 1 && created_low >= ms && created_low - ms < 50,
                "{id}: {ms} vs created {created_low}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} message IDs checked");
}

/// The messages of the prompt stream as `GET /session/{id}/message` lists
/// them: each message's last state with its parts' last states.
fn captured_message_list() -> Value {
    let mut infos = BTreeMap::<String, Value>::new();
    let mut parts = BTreeMap::<String, BTreeMap<String, Value>>::new();
    for data in frames("event-stream-prompt.sse") {
        let mut raw: Value = serde_json::from_str(&data).unwrap();
        let properties = raw["properties"].take();
        match raw["type"].as_str() {
            Some("message.updated") => {
                let id = properties["info"]["id"].as_str().unwrap().to_string();
                infos.insert(id, properties["info"].clone());
            }
            Some("message.part.updated") => {
                let part = &properties["part"];
                let message = part["messageID"].as_str().unwrap().to_string();
                let id = part["id"].as_str().unwrap().to_string();
                parts.entry(message).or_default().insert(id, part.clone());
            }
            _ => {}
        }
    }
    let list: Vec<Value> = infos
        .into_iter()
        .map(|(id, info)| {
            let parts: Vec<&Value> = parts
                .get(&id)
                .into_iter()
                .flat_map(|p| p.values())
                .collect();
            json!({"info": info, "parts": parts})
        })
        .collect();
    assert!(list.len() >= 2, "a user and an assistant message: {list:?}");
    Value::Array(list)
}

/// Every scalar of `value`: its path in the decoder's notation and its JSON
/// pointer.
fn scalars(value: &Value, path: String, pointer: String, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, member) in map {
                let plain =
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                let segment = if plain {
                    format!(".{key}")
                } else {
                    format!("[{}]", Value::String(key.clone()))
                };
                let escaped = key.replace('~', "~0").replace('/', "~1");
                scalars(
                    member,
                    path.clone() + &segment,
                    format!("{pointer}/{escaped}"),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                scalars(item, format!("{path}[{i}]"), format!("{pointer}/{i}"), out);
            }
        }
        _ => out.push((path, pointer)),
    }
}

/// Replaces each scalar in turn with one of another type: the document
/// either still decodes (the field is optional or unknown) or the error
/// names exactly that scalar's path. Returns how many failed.
fn check_every_wrong_scalar(doc: &Value, decode: impl Fn(&str) -> Result<(), Error>) -> usize {
    let mut found = Vec::new();
    scalars(doc, "$".into(), String::new(), &mut found);
    let mut located = 0;
    for (path, pointer) in &found {
        let mut wrong = doc.clone();
        let slot = wrong.pointer_mut(pointer).expect("a pointer from the walk");
        *slot = if slot.is_string() {
            json!(7)
        } else {
            json!("x")
        };
        match decode(&wrong.to_string()) {
            Ok(()) => {}
            Err(Error::Decode { path: at, .. }) if at == *path => located += 1,
            Err(other) => panic!("a wrong {path} was reported as: {other}"),
        }
    }
    located
}

#[test]
fn a_wrong_value_in_a_captured_document_is_reported_at_its_path() {
    let list = captured_message_list();
    let located = check_every_wrong_scalar(&list, |text| {
        crate::decode::from_str::<Vec<MessageWithParts>>(text)
            .map(drop)
            .map_err(|f| Error::decode("list", "Vec<MessageWithParts>", f))
    });
    assert!(located >= 50, "only {located} failures located");

    let mut located = 0;
    for data in frames("global-event-stream.sse") {
        let frame: Value = serde_json::from_str(&data).unwrap();
        located += check_every_wrong_scalar(&frame, |text| GlobalEvent::parse(text).map(drop));
    }
    assert!(located >= 500, "only {located} failures located");
}
