//! End-to-end tests of `opencode-api` against the real opencode server with
//! the offline mock model: every call, two directories on one server,
//! blocking and asynchronous prompts, idempotent client message IDs, event
//! streams, abort and cancellation, Basic auth, and hung servers.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{OPENCODE_VERSION, Reply, Script, ServeOptions, TestBed, e2e_skipped, poll_until};
use opencode_api::{
    CancelToken, Client, DisconnectKind, Error, Event, EventKind, EventStream, Message, ModelRef,
    NewSession, PromptRequest, SessionId, SessionStatus, StreamConfig, StreamEvent, StreamItem,
    new_message_id,
};

/// Bound on anything a test waits for from the server (turns with the mock
/// take about 2 s).
const WAIT: Duration = Duration::from_secs(60);

fn client(url: &str, dir: &Path) -> Client {
    Client::builder(url).directory(dir).build().expect("client")
}

fn dir_string(dir: &Path) -> String {
    dir.display().to_string()
}

/// Waits until the stream is open (`server.connected` arrived), so that what
/// the test does next is on it.
fn wait_connected<E: StreamEvent>(stream: &mut EventStream<E>) {
    stream
        .wait_connected(Instant::now() + WAIT)
        .unwrap_or_else(|e| panic!("event stream did not open: {e}"));
}

/// Panics if a frame of the stream did not decode.
fn assert_all_decoded<E: StreamEvent>(stream: &EventStream<E>) {
    assert_eq!(
        stream.skipped_frames(),
        0,
        "undecodable frame: {:?}",
        stream.last_decode_error()
    );
}

/// Events of `GET /event` until `done` says so; returns them all. Fails on
/// a disconnection and on a frame that does not decode.
fn events_until(
    stream: &mut EventStream,
    what: &str,
    mut done: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let item = stream
            .next(deadline)
            .unwrap_or_else(|e| panic!("event stream ended while waiting for {what}: {e}"));
        assert_all_decoded(stream);
        match item {
            Some(StreamItem::Event(event)) => {
                let stop = done(&event);
                seen.push(event);
                if stop {
                    return seen;
                }
            }
            Some(StreamItem::Connected) => {}
            Some(other) => panic!("event stream broke while waiting for {what}: {other:?}"),
            None => panic!(
                "no {what} within {WAIT:?}; saw {:?}",
                seen.iter().map(Event::kind_name).collect::<Vec<_>>()
            ),
        }
    }
}

fn is_idle_of(event: &Event, session_id: &SessionId) -> bool {
    matches!(&event.kind, EventKind::SessionIdle(e) if e.session_id == *session_id)
}

fn assistant_count(client: &Client, session_id: &SessionId) -> usize {
    client
        .list_messages(session_id, None)
        .expect("list messages")
        .iter()
        .filter(|m| m.info.as_assistant().is_some())
        .count()
}

#[test]
fn sessions_are_created_listed_renamed_and_deleted_per_directory() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let server = bed.start_opencode();
    let dir_a = bed.new_project("alpha");
    let dir_b = bed.new_project("beta dir ü");
    let a = client(&server.url, &dir_a);
    let b = a.with_directory(&dir_b);

    let health = a.health().expect("health");
    assert!(health.healthy);
    assert_eq!(health.version, OPENCODE_VERSION);

    let a1 = a
        .create_session(
            &NewSession::titled("a one")
                .agent("build")
                .model(ModelRef::parse("fake/echo").unwrap()),
        )
        .expect("create a1");
    assert!(a1.id.as_str().starts_with("ses_"), "{a1:?}");
    assert_eq!(a1.directory, dir_string(&dir_a));
    assert_eq!(a1.title, "a one");
    assert_eq!(a1.agent.as_deref(), Some("build"));
    let model = a1.model.as_ref().expect("the chosen model");
    assert_eq!(
        (model.provider_id.as_str(), model.id.as_str()),
        ("fake", "echo")
    );
    assert_eq!(a1.version, OPENCODE_VERSION);

    let b1 = b
        .create_session(&NewSession::titled("b one"))
        .expect("create b1");
    assert_eq!(
        b1.directory,
        dir_string(&dir_b),
        "the header is percent-decoded"
    );
    let child = a
        .create_session(&NewSession::titled("a child").parent(&a1.id))
        .expect("create child");
    assert_eq!(child.parent_id.as_ref(), Some(&a1.id));

    let ids = |c: &Client| -> BTreeSet<SessionId> {
        c.list_sessions()
            .expect("list sessions")
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(ids(&a), BTreeSet::from([a1.id.clone(), child.id.clone()]));
    assert_eq!(ids(&b), BTreeSet::from([b1.id.clone()]));

    let children = a.session_children(&a1.id).expect("children");
    assert_eq!(
        children.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [child.id.as_str()]
    );
    assert!(b.session_children(&b1.id).expect("no children").is_empty());

    let got = a.get_session(&a1.id).expect("get a1");
    assert_eq!(
        (got.id.as_str(), got.title.as_str()),
        (a1.id.as_str(), "a one")
    );
    let renamed = a.update_session_title(&a1.id, "a renamed").expect("rename");
    assert_eq!(renamed.title, "a renamed");
    assert!(renamed.time.updated >= a1.time.updated);
    assert_eq!(a.get_session(&a1.id).expect("get again").title, "a renamed");

    assert!(b.delete_session(&b1.id).expect("delete b1"));
    match b.get_session(&b1.id) {
        Err(Error::NotFound { message, .. }) => {
            assert!(message.contains(b1.id.as_str()), "{message}")
        }
        other => panic!("a deleted session is not found: {other:?}"),
    }
    assert!(ids(&b).is_empty());
    assert_eq!(ids(&a).len(), 2, "deleting in B leaves A alone");

    let unknown = SessionId::from("ses_doesnotexist");
    match a.get_session(&unknown) {
        Err(Error::NotFound { message, request }) => {
            assert_eq!(message, "Session not found: ses_doesnotexist");
            assert!(request.starts_with("GET http://127.0.0.1:"), "{request}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        a.session_status().expect("status").is_empty(),
        "nothing runs"
    );
    // The server answers true even for a session it does not know.
    assert!(a.abort(&unknown).expect("abort unknown"));
}

#[test]
fn a_blocking_prompt_returns_the_mock_text_and_streams_scoped_events() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let server = bed.start_opencode();
    let dir_a = bed.new_project("alpha");
    let dir_b = bed.new_project("beta");
    let a = client(&server.url, &dir_a);
    let b = a.with_directory(&dir_b);
    let mut a_events = a.event_stream().expect("open /event for A");
    let mut all_events = a.global_event_stream().expect("open /global/event");
    wait_connected(&mut a_events);
    wait_connected(&mut all_events);

    let a1 = a
        .create_session(&NewSession::titled("A"))
        .expect("create a1");
    let b1 = b
        .create_session(&NewSession::titled("B"))
        .expect("create b1");

    let b_reply = b
        .prompt(&b1.id, &PromptRequest::text("hello from beta"))
        .expect("prompt in B");
    assert_eq!(b_reply.text(), "echo: hello from beta");
    let reply = a
        .prompt(
            &a1.id,
            &PromptRequest::text("hello from alpha").model(ModelRef::new("fake", "echo")),
        )
        .expect("prompt in A");
    assert_eq!(reply.text(), "echo: hello from alpha");
    assert!(reply.info.is_completed(), "{:?}", reply.info);
    assert!(reply.info.error.is_none(), "{:?}", reply.info);
    assert_eq!(reply.info.session_id, a1.id);
    assert_eq!(reply.info.model(), ModelRef::new("fake", "echo"));
    assert!(reply.info.tokens.output > 0, "{:?}", reply.info.tokens);
    assert!(
        reply.parts.iter().any(|p| p.kind() == "step-finish"),
        "{:?}",
        reply.parts
    );

    // Messages: the prompt and the answer, oldest first.
    let messages = a.list_messages(&a1.id, None).expect("list messages");
    assert_eq!(messages.len(), 2, "{messages:?}");
    let user = messages[0].info.as_user().expect("the prompt first");
    assert_eq!(messages[0].text(), "hello from alpha");
    let assistant = messages[1].info.as_assistant().expect("then the answer");
    assert_eq!(assistant.id, reply.info.id);
    assert_eq!(assistant.parent_id.as_ref(), Some(&user.id));
    assert_eq!(messages[1].text(), reply.text());
    let newest = a.list_messages(&a1.id, Some(1)).expect("list with limit");
    assert_eq!(newest.len(), 1);
    assert_eq!(
        newest[0].info.id(),
        &reply.info.id,
        "limit keeps the newest"
    );
    let one = a.get_message(&a1.id, &user.id).expect("get the prompt");
    assert_eq!(one.info.role(), "user");
    assert_eq!(one.text(), "hello from alpha");
    let missing = a.get_message(&a1.id, &new_message_id());
    assert!(
        matches!(&missing, Err(e) if e.is_not_found()),
        "{missing:?}"
    );

    // A's stream: typed events of A's turn, none of B's (B's turn came first).
    let events = events_until(&mut a_events, "session.idle of A", |e| {
        is_idle_of(e, &a1.id)
    });
    let mut streamed = String::new();
    let mut busy = false;
    let mut completed = false;
    for event in &events {
        assert_ne!(
            event.session_id(),
            Some(&b1.id),
            "B leaked into A: {event:?}"
        );
        match &event.kind {
            EventKind::MessagePartDelta(d) if d.session_id == a1.id && d.field == "text" => {
                streamed.push_str(&d.delta)
            }
            EventKind::SessionStatus(s) if s.session_id == a1.id => {
                busy |= s.status == SessionStatus::Busy
            }
            EventKind::MessageUpdated(m) => {
                if let Message::Assistant(info) = &m.info {
                    completed |= info.id == reply.info.id && info.is_completed();
                }
            }
            _ => {}
        }
    }
    assert_eq!(streamed, reply.text(), "the deltas reassemble to the reply");
    assert!(busy, "a session.status busy event");
    assert!(completed, "a message.updated with the completed answer");

    // The global stream: both directories, each event under its own.
    let mut idle = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while idle.len() < 2 {
        let item = all_events
            .next(deadline)
            .unwrap_or_else(|e| panic!("/global/event ended: {e}"));
        assert_all_decoded(&all_events);
        let event = match item {
            Some(StreamItem::Event(event)) => event,
            Some(StreamItem::Connected) => continue,
            Some(other) => panic!("/global/event broke: {other:?}"),
            None => panic!("both turns idle on /global/event; saw {idle:?}"),
        };
        let expected_dir = match event.payload.session_id() {
            Some(id) if *id == a1.id => dir_string(&dir_a),
            Some(id) if *id == b1.id => dir_string(&dir_b),
            _ => continue,
        };
        assert_eq!(event.directory.as_deref(), Some(expected_dir.as_str()));
        if let EventKind::SessionIdle(e) = &event.payload.kind {
            idle.insert(e.session_id.clone());
        }
    }
}

#[test]
fn prompt_async_with_a_client_message_id_is_found_and_not_repeated() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let server = bed.start_opencode();
    let api = client(&server.url, &bed.project);
    let mut events = api.event_stream().expect("open /event");
    wait_connected(&mut events);
    let session = api
        .create_session(&NewSession::titled("async"))
        .expect("create");

    let first = api
        .prompt(&session.id, &PromptRequest::text("first turn"))
        .expect("first prompt");
    assert_eq!(first.text(), "echo: first turn");
    events_until(&mut events, "idle after the first turn", |e| {
        is_idle_of(e, &session.id)
    });

    let id = new_message_id();
    let earlier = api.list_messages(&session.id, None).expect("list");
    assert!(
        earlier.iter().all(|m| *m.info.id() < id),
        "{id} sorts after the session's messages: {:?}",
        earlier.iter().map(|m| m.info.id()).collect::<Vec<_>>()
    );
    api.prompt_async(
        &session.id,
        &PromptRequest::text("second turn").message_id(&id),
    )
    .expect("prompt_async");
    // Stored asynchronously: 404 until then.
    let stored = poll_until(WAIT, "the async prompt's message", || {
        match api.get_message(&session.id, &id) {
            Ok(m) => Some(m),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("get_message: {e}"),
        }
    });
    assert_eq!(stored.info.role(), "user");
    assert_eq!(stored.info.id(), &id);
    assert_eq!(stored.text(), "second turn");
    events_until(&mut events, "idle after the async turn", |e| {
        is_idle_of(e, &session.id)
    });
    assert_eq!(assistant_count(&api, &session.id), 2);
    let chats_for = |text: &str| {
        bed.mock
            .chat_requests()
            .iter()
            .filter(|r| r.last_user_text() == text)
            .count()
    };
    assert_eq!(chats_for("second turn"), 1);

    // The same ID again: its parts join the same message, no second turn.
    api.prompt_async(
        &session.id,
        &PromptRequest::text(" (again)").message_id(&id),
    )
    .expect("duplicate prompt_async");
    poll_until(WAIT, "the duplicate's part on the same message", || {
        let m = api.get_message(&session.id, &id).expect("get the message");
        (m.parts.len() == 2).then_some(())
    });
    // A later turn runs after the duplicate was handled; then count.
    let third = api
        .prompt(&session.id, &PromptRequest::text("third turn"))
        .expect("third prompt");
    assert_eq!(third.text(), "echo: third turn");
    assert_eq!(
        assistant_count(&api, &session.id),
        3,
        "three turns, not four"
    );
    assert_eq!(chats_for("second turn"), 1);
    assert_eq!(chats_for("second turn (again)"), 0);
    assert_eq!(chats_for(" (again)"), 0);
    let users: Vec<String> = api
        .list_messages(&session.id, None)
        .expect("list")
        .iter()
        .filter(|m| m.info.as_user().is_some())
        .map(|m| m.info.id().to_string())
        .collect();
    assert_eq!(users.len(), 3, "{users:?}");
    assert_eq!(users.iter().filter(|u| **u == id).count(), 1);

    // With client-made part IDs, the same prompt sent twice is stored
    // once: its part is written again, not added.
    let fourth = new_message_id();
    let request = PromptRequest::text("fourth turn")
        .message_id(&fourth)
        .with_part_ids();
    api.prompt_async(&session.id, &request)
        .expect("prompt_async");
    api.prompt_async(&session.id, &request)
        .expect("the same again");
    let fifth = api
        .prompt(&session.id, &PromptRequest::text("fifth turn"))
        .expect("fifth prompt");
    assert_eq!(fifth.text(), "echo: fifth turn");
    let stored = api.get_message(&session.id, &fourth).expect("stored");
    assert_eq!(stored.parts.len(), 1, "{:?}", stored.parts);
    assert_eq!(stored.text(), "fourth turn");
    assert_eq!(chats_for("fourth turn"), 1);
}

/// The turns layer makes a prompt's ID from the clock without reading the
/// session first; this is what makes that safe: OpenCode answers a prompt
/// whose ID sorts before its session's messages (a server clock ahead) as
/// its own turn, and the next one too.
#[test]
fn a_prompt_whose_id_sorts_before_the_sessions_messages_is_answered_as_its_own() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let server = bed.start_opencode();
    let api = client(&server.url, &bed.project);
    let session = api
        .create_session(&NewSession::titled("order"))
        .expect("create");
    let first = api
        .prompt(&session.id, &PromptRequest::text("first turn"))
        .expect("first prompt");
    // Before the session's first message: the first turn's user message.
    let oldest = first
        .info
        .parent_id
        .clone()
        .expect("the first turn's prompt");
    let value = opencode_api::id_value(oldest.as_str()).expect("an ascending ID");
    let early = opencode_api::MessageId::from(format!("msg_{:012x}AAAAAAAAAAAAAA", value - 5));
    assert!(early < oldest);
    let second = api
        .prompt(
            &session.id,
            &PromptRequest::text("second turn").message_id(&early),
        )
        .expect("second prompt");
    assert_eq!(second.info.parent_id.as_ref(), Some(&early));
    assert_eq!(second.text(), "echo: second turn");
    let third = api
        .prompt(&session.id, &PromptRequest::text("third turn"))
        .expect("third prompt");
    assert_eq!(third.text(), "echo: third turn");
    assert_eq!(assistant_count(&api, &session.id), 3);
}

#[test]
fn a_running_turn_shows_busy_and_is_cancelled_and_aborted() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(
        Script::new().when("stall", Reply::text("this never finishes").stall_after(1)),
    );
    let server = bed.start_opencode();
    let api = client(&server.url, &bed.project);
    let mut events = api.event_stream().expect("open /event");
    wait_connected(&mut events);
    let session = api
        .create_session(&NewSession::titled("stall"))
        .expect("create");

    let token = CancelToken::new();
    let call = {
        let api = api.clone();
        let token = token.clone();
        let id = session.id.clone();
        std::thread::spawn(move || {
            api.prompt_with_cancel(&id, &PromptRequest::text("please stall"), &token)
        })
    };
    // The turn runs once the model's step started (the mock then stalls).
    events_until(&mut events, "the model step's start", |e| {
        matches!(&e.kind, EventKind::MessagePartUpdated(u)
            if *u.part.session_id() == session.id && u.part.kind() == "step-start")
    });
    let status = api.session_status().expect("status");
    assert_eq!(
        status.get(&session.id),
        Some(&SessionStatus::Busy),
        "{status:?}"
    );
    // The status map is per directory: a client of another directory on the
    // same server does not see this busy session (it is still busy: see
    // below, after the cancel).
    let other_dir = bed.new_project("other");
    let other = api
        .with_directory(&other_dir)
        .session_status()
        .expect("status of another directory");
    assert!(!other.contains_key(&session.id), "{other:?}");

    let cancelled_at = Instant::now();
    token.cancel();
    let result = call.join().expect("the prompt thread");
    assert!(
        matches!(&result, Err(Error::Cancelled { .. })),
        "{result:?}"
    );
    assert!(cancelled_at.elapsed() < Duration::from_secs(5));
    // Cancelling only closed our connection; the turn runs on until aborted.
    let status = api.session_status().expect("status after cancel");
    assert_eq!(
        status.get(&session.id),
        Some(&SessionStatus::Busy),
        "{status:?}"
    );

    assert!(api.abort(&session.id).expect("abort"));
    let after = events_until(&mut events, "idle after the abort", |e| {
        is_idle_of(e, &session.id)
    });
    let aborted = after.iter().any(|e| {
        matches!(&e.kind, EventKind::SessionError(f)
            if f.session_id.as_ref() == Some(&session.id)
                && f.error.as_ref().is_some_and(|err| err.is_aborted()))
    });
    assert!(aborted, "a session.error MessageAbortedError before idle");
    assert!(
        !api.session_status()
            .expect("status")
            .contains_key(&session.id)
    );
    let messages = api.list_messages(&session.id, None).expect("list");
    let last = messages
        .iter()
        .rev()
        .find_map(|m| m.info.as_assistant())
        .expect("an assistant message");
    assert!(last.is_completed());
    assert!(
        last.error.as_ref().is_some_and(|e| e.is_aborted()),
        "{:?}",
        last.error
    );

    // A plain blocking prompt whose turn is aborted returns the aborted answer.
    let call = {
        let api = api.clone();
        let id = session.id.clone();
        std::thread::spawn(move || api.prompt(&id, &PromptRequest::text("stall again")))
    };
    events_until(&mut events, "the second model step's start", |e| {
        matches!(&e.kind, EventKind::MessagePartUpdated(u)
            if *u.part.session_id() == session.id && u.part.kind() == "step-start")
    });
    assert!(api.abort(&session.id).expect("abort again"));
    let reply = call
        .join()
        .expect("the prompt thread")
        .expect("the aborted turn's answer");
    assert!(reply.info.is_completed(), "{:?}", reply.info);
    assert!(
        reply.info.error.as_ref().is_some_and(|e| e.is_aborted()),
        "{:?}",
        reply.info.error
    );
}

#[test]
fn with_a_server_password_only_the_right_credentials_get_in() {
    if e2e_skipped() {
        return;
    }
    let password = "e2e-Pw-9d4f1c";
    let bed = TestBed::new();
    let server = bed.start_opencode_with(ServeOptions {
        env: vec![("OPENCODE_SERVER_PASSWORD".into(), password.into())],
        ..ServeOptions::default()
    });
    let anonymous = Client::new(&server.url).unwrap();
    let err = anonymous.health().expect_err("no credentials");
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                credentials_sent: false,
                ..
            }
        ),
        "{err:?}"
    );
    let wrong = Client::builder(&server.url)
        .basic_auth("opencode", "not-the-password")
        .build()
        .unwrap();
    let err_wrong = wrong.list_sessions().expect_err("wrong password");
    assert!(
        matches!(
            err_wrong,
            Error::Unauthorized {
                credentials_sent: true,
                ..
            }
        ),
        "{err_wrong:?}"
    );

    let right = Client::builder(&server.url)
        .basic_auth("opencode", password)
        .directory(&bed.project)
        .build()
        .unwrap();
    assert_eq!(right.health().expect("health").version, OPENCODE_VERSION);
    let session = right
        .create_session(&NewSession::titled("secured"))
        .expect("create");
    assert_eq!(right.list_sessions().expect("list").len(), 1);
    let not_found = right
        .get_session(&SessionId::from("ses_doesnotexist"))
        .expect_err("404");
    assert!(not_found.is_not_found());

    let mut reader = right.event_stream().expect("open /event with credentials");
    wait_connected(&mut reader);
    let mut refused = anonymous
        .event_stream_with(&StreamConfig::new().max_failures(Some(1)))
        .expect("start the anonymous stream");
    let reason = match refused.wait_connected(Instant::now() + WAIT) {
        Ok(()) => panic!("the stream opened without credentials"),
        Err(e) => e.to_string(),
    };
    assert!(reason.contains("401"), "{reason}");
    let first = refused.next(Instant::now() + WAIT);
    assert!(
        matches!(
            &first,
            Ok(Some(StreamItem::Disconnected {
                kind: DisconnectKind::Status(401),
                ..
            }))
        ),
        "{first:?}"
    );

    for shown in [
        format!("{err} {err:?}"),
        format!("{err_wrong} {err_wrong:?}"),
        format!("{not_found} {not_found:?}"),
        format!("{right:?} {wrong:?} {anonymous:?}"),
        format!("{reader:?} {refused:?}"),
        reason.clone(),
    ] {
        assert!(!shown.contains(password), "the password shows: {shown}");
        assert!(!shown.contains("not-the-password"), "{shown}");
        assert!(!shown.contains("Basic "), "a Basic header shows: {shown}");
    }
    drop(session);
}

#[test]
fn a_server_that_accepts_but_never_answers_makes_health_time_out() {
    if e2e_skipped() {
        return;
    }
    let limit = Duration::from_millis(500);

    // A listener nobody reads: the kernel accepts into the backlog.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = Client::builder(&format!("http://{}", listener.local_addr().unwrap()))
        .health_timeout(limit)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = silent.health().expect_err("a silent listener");
    assert!(
        matches!(err, Error::Timeout { limit: l, .. } if l == limit),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A stopped opencode: the port is open, nothing answers.
    let bed = TestBed::new();
    let server = bed.start_opencode();
    let api = Client::builder(&server.url)
        .health_timeout(limit)
        .build()
        .unwrap();
    assert!(api.health().expect("health while running").healthy);
    server.signal(libc::SIGSTOP);
    let started = Instant::now();
    let err = api.health().expect_err("a stopped server");
    let took = started.elapsed();
    server.signal(libc::SIGCONT);
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_unreachable());
    assert!(took >= limit && took < Duration::from_secs(5), "{took:?}");
    // Continued, it answers again.
    let healthy = poll_until(WAIT, "health after SIGCONT", || api.health().ok());
    assert!(healthy.healthy);
    drop(server);
}
