//! Unit tests of the turn loop against [`FakeServer`]: the watchdog with
//! short durations, its pause while a permission waits, one turn per
//! session.

use std::time::{Duration, Instant};

use opencode_api::{Client, MessageId, PromptRequest, SessionId};

use crate::fake_server::FakeServer;
use crate::tracker::tests::texts;
use crate::{Engine, Error, FailReason, TurnEvent, TurnOptions};

const ID: &str = "msg_000000000001AAAAAAAAAAAAAA";

fn engine(server: &FakeServer, watchdog: Duration) -> Engine {
    let client = Client::builder(&server.url)
        .directory("/p")
        .build()
        .unwrap();
    Engine::new(
        client,
        TurnOptions {
            watchdog,
            ..TurnOptions::default()
        },
    )
}

fn completed() -> String {
    format!(
        r#"[{{"info":{{"id":"{ID}","role":"user","sessionID":"ses_1","time":{{"created":1}}}},"parts":[]}},
        {{"info":{{"id":"msg_000000000002AAAAAAAAAAAAAA","parentID":"{ID}","role":"assistant","sessionID":"ses_1","finish":"stop","tokens":{{"input":1,"output":2}},"time":{{"created":2,"completed":3}}}},
          "parts":[{{"id":"prt_1","type":"text","text":"ok","messageID":"msg_000000000002AAAAAAAAAAAAAA","sessionID":"ses_1"}}]}}]"#
    )
}

/// The prompt and its reply, begun (not completed), with its first part or
/// none yet.
fn begun_reply(with_part: bool) -> String {
    let part = if with_part {
        r#"{"id":"prt_0","type":"step-start","messageID":"msg_000000000002AAAAAAAAAAAAAA","sessionID":"ses_1"}"#
    } else {
        ""
    };
    format!(
        r#"[{{"info":{{"id":"{ID}","role":"user","sessionID":"ses_1","time":{{"created":1}}}},"parts":[]}},
        {{"info":{{"id":"msg_000000000002AAAAAAAAAAAAAA","parentID":"{ID}","role":"assistant","sessionID":"ses_1","time":{{"created":2}}}},"parts":[{part}]}}]"#
    )
}

fn user_only() -> String {
    format!(
        r#"[{{"info":{{"id":"{ID}","role":"user","sessionID":"ses_1","time":{{"created":1}}}},"parts":[]}}]"#
    )
}

#[test]
fn the_watchdog_fails_a_silent_turn_after_its_duration() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let engine = engine(&server, Duration::from_millis(300));
    let session = SessionId::from("ses_1");
    let began = Instant::now();
    let err = engine
        .prompt(
            &session,
            PromptRequest::text("hi").message_id(MessageId::from(ID)),
        )
        .unwrap()
        .wait(Instant::now() + Duration::from_secs(10))
        .unwrap_err();
    let waited = began.elapsed();
    assert!(
        matches!(
            &err,
            Error::TurnFailed {
                reason: FailReason::Watchdog(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[test]
fn a_pending_permission_pauses_the_watchdog_and_a_second_turn_is_refused() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let engine = engine(&server, Duration::from_millis(200));
    let session = SessionId::from("ses_1");
    let mut turn = engine
        .prompt(
            &session,
            PromptRequest::text("hi").message_id(MessageId::from(ID)),
        )
        .unwrap();
    assert!(matches!(
        engine.prompt(&session, PromptRequest::text("again")),
        Err(Error::Busy { .. })
    ));
    server.event(
        r#"{"id":"e1","type":"permission.asked","properties":{"id":"per_1","sessionID":"ses_1","permission":"bash","patterns":[],"metadata":{},"always":[]}}"#,
    );
    let first = turn.next(Instant::now() + Duration::from_secs(5)).unwrap();
    assert!(matches!(first, Some(TurnEvent::Permission(_))), "{first:?}");
    // Four watchdog periods pass: nothing, the turn waits for the answer.
    assert_eq!(
        turn.next(Instant::now() + Duration::from_millis(800))
            .unwrap(),
        None
    );
    // The reply arrives and completes.
    server.set_messages(&completed());
    server.event(r#"{"id":"e2","type":"session.idle","properties":{"sessionID":"ses_1"}}"#);
    let done = turn.wait(Instant::now() + Duration::from_secs(5)).unwrap();
    assert_eq!(done.text, "ok");
    assert_eq!(done.usage.output, 2);
    // The session is free again.
    drop(
        engine
            .prompt(&session, PromptRequest::text("next"))
            .unwrap(),
    );
}

#[test]
fn a_turn_whose_end_was_lost_with_a_cut_stream_ends_done_through_reconcile() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let engine = engine(&server, Duration::from_secs(60));
    let session = SessionId::from("ses_1");
    let turn = engine
        .prompt(
            &session,
            PromptRequest::text("hi").message_id(MessageId::from(ID)),
        )
        .unwrap();
    // The turn ends while the stream is cut: no event tells.
    server.set_messages(&completed());
    server.cut();
    let began = Instant::now();
    let done = turn.wait(Instant::now() + Duration::from_secs(10)).unwrap();
    assert_eq!(done.text, "ok");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

/// A turn that ended while its stream was cut, on a server that takes
/// `delay` to list the messages that say so.
fn ended_in_a_gap_read_slowly(server: &FakeServer, delay: Duration) -> crate::Turn {
    server.set_messages(&user_only());
    let turn = prompt_hi(server);
    server.set_messages(&completed());
    server.delay_lists(delay);
    server.cut();
    turn
}

#[test]
fn next_keeps_its_deadline_while_a_read_of_the_messages_hangs_and_reads_again_later() {
    let server = FakeServer::start();
    let mut turn = ended_in_a_gap_read_slowly(&server, Duration::from_secs(4));
    // A read is given 1 s at least, not the client's 30 s.
    let began = Instant::now();
    let early = turn.next(began + Duration::from_millis(500)).unwrap();
    let took = began.elapsed();
    assert!(took < Duration::from_millis(1600), "next took {took:?}");
    assert!(early.is_none(), "{early:?}");
    // The read the deadline cut short is made again: the turn ends done.
    server.delay_lists(Duration::ZERO);
    let events = all_events(&mut turn);
    assert!(
        matches!(events.last(), Some(TurnEvent::Done(done)) if done.text == "ok"),
        "{events:?}"
    );
}

#[test]
fn a_server_slower_than_every_callers_slice_is_still_read_in_the_end() {
    let server = FakeServer::start();
    let mut turn = ended_in_a_gap_read_slowly(&server, Duration::from_millis(1500));
    // Slices of 200 ms, as `ocm prompt` waits: the read cut short at 1 s
    // is given 2 s the next time, and answers.
    let began = Instant::now();
    let done = loop {
        assert!(began.elapsed() < Duration::from_secs(10), "no end");
        match turn
            .next(Instant::now() + Duration::from_millis(200))
            .unwrap()
        {
            Some(TurnEvent::Done(done)) => break done,
            Some(TurnEvent::Failed { reason, .. }) => panic!("{reason}"),
            _ => {}
        }
    };
    assert_eq!(done.text, "ok");
}

/// The prompt "hi" with message ID [`ID`] on session `ses_1`, through an
/// engine with a 60 s watchdog.
fn prompt_hi(server: &FakeServer) -> crate::Turn {
    engine(server, Duration::from_secs(60))
        .prompt(
            &SessionId::from("ses_1"),
            PromptRequest::text("hi").message_id(MessageId::from(ID)),
        )
        .unwrap()
}

/// Every event of `turn` until its end.
fn all_events(turn: &mut crate::Turn) -> Vec<TurnEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    while let Some(event) = turn.next(deadline).unwrap() {
        events.push(event);
    }
    events
}

/// Records `session` in `registry` as the active session titled `t`.
fn record_active(registry: &crate::Registry, session: SessionId) {
    registry
        .record(crate::SessionEntry {
            key: "t".into(),
            session_id: session,
            title: "t".into(),
            status: crate::SessionState::Active,
            model: None,
            usage: crate::Usage::default(),
            turns: 0,
            created: 1,
            last_active: 0,
        })
        .unwrap();
}

#[test]
fn a_turn_settled_from_the_messages_hands_out_the_text_the_stream_did_not() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    server.set_messages(&completed());
    server.cut();
    let events = all_events(&mut turn);
    assert_eq!(texts(&events), "ok", "{events:?}");
    assert!(
        matches!(events.last(), Some(TurnEvent::Done(_))),
        "{events:?}"
    );
}

#[test]
fn a_retried_prompt_found_answered_hands_out_its_reply_text_before_done() {
    let server = FakeServer::start();
    server.set_messages(&completed());
    let mut turn = prompt_hi(&server);
    let events = all_events(&mut turn);
    assert_eq!(texts(&events), "ok", "{events:?}");
    match events.last() {
        Some(TurnEvent::Done(done)) => assert_eq!(done.text, "ok"),
        other => panic!("{other:?}"),
    }
    assert!(
        !server.requests().iter().any(|r| r.starts_with("POST")),
        "an answered prompt is not sent again: {:?}",
        server.requests()
    );
}

const REPLY: &str = "msg_000000000002AAAAAAAAAAAAAA";

/// The server's answer to the blocking send: the completed reply "ok".
fn answer() -> String {
    format!(
        r#"{{"info":{{"id":"{REPLY}","parentID":"{ID}","role":"assistant","sessionID":"ses_1","finish":"stop","tokens":{{"input":1,"output":2}},"time":{{"created":2,"completed":3}}}},
          "parts":[{{"id":"prt_1","type":"text","text":"ok","messageID":"{REPLY}","sessionID":"ses_1"}}]}}"#
    )
}

/// The stream's `message.updated` of the reply: begun, or completed (the
/// same as `answer()`'s).
fn reply_updated(completed: bool) -> String {
    let end = if completed {
        r#""finish":"stop","tokens":{"input":1,"output":2},"time":{"created":2,"completed":3}"#
    } else {
        r#""time":{"created":2}"#
    };
    format!(
        r#"{{"id":"e{}","type":"message.updated","properties":{{"sessionID":"ses_1","info":{{"id":"{REPLY}","parentID":"{ID}","role":"assistant","sessionID":"ses_1",{end}}}}}}}"#,
        if completed { 3 } else { 1 }
    )
}

/// The stream's whole text part "ok" of the reply.
fn reply_text_ok() -> String {
    format!(
        r#"{{"id":"e2","type":"message.part.updated","properties":{{"sessionID":"ses_1","part":{{"id":"prt_1","sessionID":"ses_1","messageID":"{REPLY}","type":"text","text":"ok"}}}}}}"#
    )
}

/// Reads of the session's messages (not of one message) so far.
fn list_reads(server: &FakeServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /session/ses_1/message") && !r.contains("/message/"))
        .count()
}

#[test]
fn the_answer_to_the_send_ends_the_turn_before_the_stream_tells() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    // The stream tells the reply was made, then nothing more.
    server.event(&reply_updated(false));
    std::thread::sleep(Duration::from_millis(200));
    let reads = list_reads(&server);
    server.answer(&answer());
    let events = all_events(&mut turn);
    assert_eq!(texts(&events), "ok", "{events:?}");
    match events.last() {
        Some(TurnEvent::Done(done)) => {
            assert_eq!(done.text, "ok");
            assert_eq!(done.usage.output, 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(list_reads(&server), reads, "ended by the answer, no read");
}

/// The stream's subscription came after the prompt was stored and after
/// the reply's first delta ("o" of "ok"): the delta after it cannot be
/// placed, so the part comes whole, and the end is read.
#[test]
fn a_turn_told_from_its_middle_hands_out_its_text_in_order_and_reads_its_end() {
    let server = FakeServer::start_late();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    let reads = list_reads(&server);
    server.event(&format!(
        r#"{{"id":"e1","type":"message.part.delta","properties":{{"sessionID":"ses_1","messageID":"{REPLY}","partID":"prt_1","field":"text","delta":"k"}}}}"#
    ));
    server.event(&reply_text_ok());
    server.set_messages(&completed());
    server.event(&reply_updated(true));
    let events = all_events(&mut turn);
    assert_eq!(texts(&events), "ok", "{events:?}");
    match events.last() {
        Some(TurnEvent::Done(done)) => assert_eq!(done.text, "ok"),
        other => panic!("{other:?}"),
    }
    assert!(list_reads(&server) > reads, "the end was read");
}

/// The answer came first, and the stream (heard from the turn's start)
/// tells the reply a moment later: the turn ends from the events, with
/// nothing read.
#[test]
fn an_answer_the_stream_tells_right_after_ends_the_turn_without_a_read() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    // The stream tells the prompt's own part (after its message, which
    // was the proof of delivery) before the answer comes: the turn is
    // told from its start. Under load that part could come after the
    // answer, and the end was read (once in about 60 runs).
    let quiet = turn.next(Instant::now() + Duration::from_millis(300));
    assert!(matches!(quiet, Ok(None)), "{quiet:?}");
    let reads = list_reads(&server);
    server.set_messages(&completed());
    server.answer(&answer());
    std::thread::sleep(Duration::from_millis(50));
    server.event(&reply_updated(true));
    let events = all_events(&mut turn);
    assert_eq!(texts(&events), "ok", "{events:?}");
    match events.last() {
        Some(TurnEvent::Done(done)) => assert_eq!(done.usage.output, 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(list_reads(&server), reads, "ended by the events, no read");
}

/// The stream, subscribed after the prompt was stored, first tells the
/// session going busy: one read then finds no reply begun, or one begun
/// with no part, so the reply is told from its start and its end needs no
/// read; when the read finds a part already made, the end is read.
#[test]
fn a_late_stream_that_first_tells_busy_reads_once_then_ends_from_the_events() {
    for (begun, with_part) in [(false, false), (true, false), (true, true)] {
        let server = FakeServer::start_late();
        server.set_messages(&user_only());
        let mut turn = prompt_hi(&server);
        let reads = list_reads(&server);
        if begun {
            server.set_messages(&begun_reply(with_part));
        }
        server.event(BUSY);
        let nothing = turn
            .next(Instant::now() + Duration::from_millis(300))
            .unwrap();
        assert!(nothing.is_none(), "{nothing:?}");
        assert_eq!(list_reads(&server), reads + 1, "one read after busy");
        server.set_messages(&completed());
        server.event(&reply_updated(false));
        server.event(&reply_text_ok());
        server.event(&reply_updated(true));
        let events = all_events(&mut turn);
        assert_eq!(texts(&events), "ok", "{events:?}");
        match events.last() {
            Some(TurnEvent::Done(done)) => assert_eq!(done.usage.output, 2),
            other => panic!("{other:?}"),
        }
        let more = if with_part {
            "the end was read"
        } else {
            "no read at the end"
        };
        let read = list_reads(&server) > reads + 1;
        assert_eq!(read, with_part, "{more}: {:?}", server.requests());
    }
}

/// The stream never tells the reply the send was answered with (it may
/// be stalled): after a short wait the end is read.
#[test]
fn an_answer_about_a_reply_the_stream_never_told_is_settled_from_the_messages() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    let reads = list_reads(&server);
    server.set_messages(&completed());
    server.answer(&answer());
    let events = all_events(&mut turn);
    assert_eq!(texts(&events), "ok", "{events:?}");
    assert!(
        matches!(events.last(), Some(TurnEvent::Done(_))),
        "{events:?}"
    );
    assert!(list_reads(&server) > reads, "the messages were read");
}

#[test]
fn a_dead_server_fails_the_turn_within_a_second() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let engine = engine(&server, Duration::from_secs(60));
    let session = SessionId::from("ses_1");
    let turn = engine
        .prompt(
            &session,
            PromptRequest::text("hi").message_id(MessageId::from(ID)),
        )
        .unwrap();
    let began = Instant::now();
    drop(server);
    let err = turn
        .wait(Instant::now() + Duration::from_secs(10))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::TurnFailed {
                reason: FailReason::ServerCrashed(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("server crashed mid-turn"), "{err}");
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
}

fn crashed(err: &Error) -> bool {
    matches!(
        err,
        Error::TurnFailed {
            reason: FailReason::ServerCrashed(_),
            ..
        }
    )
}

#[test]
fn a_retried_turn_fails_when_its_restarted_server_dies_before_the_stream_reached_it() {
    let first = FakeServer::start();
    first.set_messages(&user_only());
    let port = first.port();
    let engine = engine(&first, Duration::from_secs(60));
    let session = SessionId::from("ses_1");
    let prompt = || PromptRequest::text("hi").message_id(MessageId::from(ID));
    let turn = engine.prompt(&session, prompt()).unwrap();
    drop(first);
    let err = turn
        .wait(Instant::now() + Duration::from_secs(10))
        .unwrap_err();
    assert!(crashed(&err), "{err}");
    // The server is back on its port; the event stream has not reached it
    // yet (it answers, but no `server.connected`). The prompt is retried
    // by its ID and delivered there, then that server dies too.
    let second = FakeServer::start_on(port, true);
    second.set_messages(&user_only());
    let retried = engine.prompt(&session, prompt()).unwrap();
    let began = Instant::now();
    drop(second);
    let err = retried
        .wait(Instant::now() + Duration::from_secs(10))
        .unwrap_err();
    assert!(
        crashed(&err),
        "told the server crashed, not left waiting: {err}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn a_prompt_reads_nothing_for_its_id_and_sorts_after_what_the_stream_told() {
    let server = FakeServer::start();
    let engine = engine(&server, Duration::from_secs(60));
    let session = SessionId::from("ses_1");
    let limit_reads = || {
        server
            .requests()
            .iter()
            .filter(|r| r.starts_with("GET /session/ses_1/message?limit"))
            .count()
    };
    let mut first = engine.prompt(&session, PromptRequest::text("one")).unwrap();
    assert_eq!(limit_reads(), 0, "{:?}", server.requests());
    // Another client's message, stamped by a server clock far ahead, told
    // by the stream; then a delta of the first turn, to know it was routed.
    let ahead = "msg_fffffffff000AAAAAAAAAAAAAA";
    server.event(&format!(
        r#"{{"id":"e1","type":"message.updated","properties":{{"sessionID":"ses_1","info":{{"id":"{ahead}","role":"user","sessionID":"ses_1","time":{{"created":1}}}}}}}}"#
    ));
    let reply = "msg_fffffffff001AAAAAAAAAAAAAA";
    server.event(&format!(
        r#"{{"id":"e2","type":"message.updated","properties":{{"sessionID":"ses_1","info":{{"id":"{reply}","parentID":"{}","role":"assistant","sessionID":"ses_1","time":{{"created":2}}}}}}}}"#,
        first.message_id()
    ));
    server.event(&format!(
        r#"{{"id":"e3","type":"message.part.delta","properties":{{"sessionID":"ses_1","messageID":"{reply}","partID":"prt_1","field":"text","delta":"hi"}}}}"#
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match first.next(deadline).unwrap() {
            Some(TurnEvent::Text { .. }) => break,
            Some(_) => {}
            None => panic!("the first turn's text never came"),
        }
    }
    drop(first);
    let second = engine.prompt(&session, PromptRequest::text("two")).unwrap();
    assert_eq!(limit_reads(), 0, "{:?}", server.requests());
    assert!(
        second.message_id().as_str() > reply,
        "{} sorts after {reply}",
        second.message_id()
    );
}

#[test]
fn ensuring_a_recorded_session_then_prompting_it_asks_the_server_once() {
    // The check that the server still has the session reads its newest
    // message, which the prompt's ID needs: no second request for it.
    let server = FakeServer::start();
    let engine = engine(&server, Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let registry = crate::Registry::at(dir.path());
    let key = crate::SessionKey::Title("t".into());
    record_active(&registry, SessionId::from("ses_1"));
    let sessions = crate::Sessions::new(engine.clone(), registry);
    let entry = sessions.ensure(&key, None).unwrap();
    assert_eq!(entry.session_id, "ses_1");
    let turn = engine
        .prompt(&entry.session_id, PromptRequest::text("hi"))
        .unwrap();
    let asked: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| {
            r.starts_with("GET /session/ses_1?")
                || r == "GET /session/ses_1"
                || r.starts_with("GET /session/ses_1/message?")
        })
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    drop(turn);
}

#[test]
fn an_idle_event_that_came_before_the_prompt_was_sent_is_no_reason_to_read() {
    // The `session.idle` that ends an earlier turn comes after its last
    // message, so it reaches a prompt made at once after that turn; it
    // says nothing of the new prompt and must not make it read the
    // session's messages (a whole long session, twice).
    let server = FakeServer::start();
    let engine = engine(&server, Duration::from_secs(60));
    let session = SessionId::from("ses_1");
    // A retry by ID looks the prompt up first (not stored: "[]"); the idle
    // arrives while that read is answered, before the send.
    server.event_on_next_list(
        r#"{"id":"e0","type":"session.idle","properties":{"sessionID":"ses_1"}}"#,
    );
    let mut turn = engine
        .prompt(
            &session,
            PromptRequest::text("hi").message_id(MessageId::from(ID)),
        )
        .unwrap();
    let full_reads = || {
        server
            .requests()
            .iter()
            .filter(|r| *r == "GET /session/ses_1/message")
            .count()
    };
    assert_eq!(full_reads(), 1, "the look-up: {:?}", server.requests());
    // The turn takes what came so far (the idle among it): nothing ends.
    assert!(
        turn.next(Instant::now() + Duration::from_millis(300))
            .unwrap()
            .is_none()
    );
    // The prompt's own end: its idle after the reply is stored.
    server.set_messages(&completed());
    server.event(r#"{"id":"e1","type":"session.idle","properties":{"sessionID":"ses_1"}}"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match turn.next(deadline).unwrap() {
            Some(TurnEvent::Done(done)) => {
                assert_eq!(done.text, "ok");
                break;
            }
            Some(TurnEvent::Failed { reason, .. }) => panic!("failed: {reason}"),
            Some(_) => {}
            None => panic!("no end"),
        }
    }
    let reconcile_reads = server
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /session/ses_1/message?limit"))
        .count();
    // The reconcile's read of the newest messages holds the prompt: no
    // read of the whole session.
    assert_eq!(
        (reconcile_reads, full_reads()),
        (1, 1),
        "one reconcile, for the prompt's own idle: {:?}",
        server.requests()
    );
}

#[test]
fn a_prompt_to_a_recorded_session_the_server_lost_goes_to_a_fresh_one() {
    let server = FakeServer::start();
    let engine = engine(&server, Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let registry = crate::Registry::at(dir.path());
    let gone = SessionId::from("ses_gone");
    record_active(&registry, gone.clone());
    let sessions = crate::Sessions::new(engine, registry.clone());
    server.answer(&answer());
    let (entry, turn) = sessions
        .prompt(
            &crate::SessionKey::Title("t".into()),
            None,
            PromptRequest::text("hi"),
        )
        .unwrap();
    assert_eq!(entry.session_id, "ses_1");
    let requests = server.requests();
    let first = requests
        .iter()
        .position(|r| r.starts_with("POST /session/ses_gone/message"));
    assert!(
        first.is_some()
            && !requests[..first.unwrap()]
                .iter()
                .any(|r| r.contains("ses_gone")),
        "sent without asking first: {requests:?}"
    );
    assert!(
        requests.contains(&"POST /session".to_string()),
        "{requests:?}"
    );
    let old = registry
        .entries()
        .unwrap()
        .into_iter()
        .find(|e| e.session_id == gone)
        .unwrap();
    assert_eq!(old.status, crate::SessionState::Crashed);
    drop(turn);
}

/// A caller that aborts after taking part of a batch that already ends
/// the turn (here a prompt found answered: its text, then `Done`) gets
/// one terminal event, and no abort is sent: the turn was over.
#[test]
fn an_abort_after_the_end_is_queued_adds_no_second_terminal_event() {
    let server = FakeServer::start();
    server.set_messages(&completed());
    let mut turn = prompt_hi(&server);
    let first = turn.next(Instant::now() + Duration::from_secs(5)).unwrap();
    assert!(matches!(first, Some(TurnEvent::Text { .. })), "{first:?}");
    turn.abort().unwrap();
    let rest = all_events(&mut turn);
    let terminals = rest.iter().filter(|e| e.is_terminal()).count();
    assert_eq!(terminals, 1, "{rest:?}");
    assert!(matches!(rest.last(), Some(TurnEvent::Done(_))), "{rest:?}");
    assert!(
        !server.requests().iter().any(|r| r.contains("/abort")),
        "{:?}",
        server.requests()
    );
}

/// `wait` whose deadline passes aborts the turn; a turn that completed
/// meanwhile (unseen: no event told it) is done, not failed.
#[test]
fn wait_past_its_deadline_returns_the_reply_that_completed_meanwhile() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let turn = prompt_hi(&server);
    server.set_messages(&completed());
    let done = turn
        .wait(Instant::now() + Duration::from_millis(300))
        .unwrap();
    assert_eq!(done.text, "ok");
    assert_eq!(done.usage.output, 2);
}

/// Two engines on one project (two processes, as two `ocm prompt` runs):
/// while one has a turn in flight on a session, the other's prompt to it
/// is refused, until that turn ends.
#[test]
fn a_turn_in_flight_in_another_engine_of_the_project_refuses_a_second() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let state = tempfile::tempdir().unwrap();
    let first =
        engine(&server, Duration::from_secs(60)).with_registry(crate::Registry::at(state.path()));
    let second =
        engine(&server, Duration::from_secs(60)).with_registry(crate::Registry::at(state.path()));
    let session = SessionId::from("ses_1");
    let mut turn = first
        .prompt(
            &session,
            PromptRequest::text("hi").message_id(MessageId::from(ID)),
        )
        .unwrap();
    let refused = second.prompt(&session, PromptRequest::text("again"));
    match &refused {
        Err(e @ Error::BusyElsewhere { .. }) => {
            assert!(e.to_string().contains("another process"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.starts_with("POST /session/ses_1/message"))
            .count(),
        1,
        "the refused prompt was not sent: {:?}",
        server.requests()
    );
    // The turn ends: the session is free for the other engine.
    server.set_messages(&completed());
    server.event(r#"{"id":"e2","type":"session.idle","properties":{"sessionID":"ses_1"}}"#);
    let events = all_events(&mut turn);
    assert!(
        matches!(events.last(), Some(TurnEvent::Done(_))),
        "{events:?}"
    );
    drop(
        second
            .prompt(&session, PromptRequest::text("next"))
            .unwrap(),
    );
}

/// The failure OpenCode 1.18.33 reports when it fails a stored prompt
/// before any reply (an unknown model: measured): the POST is answered
/// 500, the stream tells `session.error`, then `session.idle`.
const MODEL_NOT_FOUND: &str = r#"{"id":"e1","type":"session.error","properties":{"sessionID":"ses_1","error":{"name":"UnknownError","data":{"message":"Model not found: nope/none."}}}}"#;

#[test]
fn a_prompt_the_server_fails_before_replying_fails_with_its_error() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    let began = Instant::now();
    server.event(BUSY);
    server.answer_error(
        "500 Internal Server Error",
        r#"{"name":"UnknownError","data":{"message":"Unexpected server error."}}"#,
    );
    server.event(MODEL_NOT_FOUND);
    server.event(r#"{"id":"e2","type":"session.idle","properties":{"sessionID":"ses_1"}}"#);
    assert_failed_model_not_found(&all_events(&mut turn));
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

/// The same without the stream's word (it was down): the POST's error
/// ends the turn.
#[test]
fn a_prompt_answered_with_a_server_error_fails_without_the_stream() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    let began = Instant::now();
    server.answer_error(
        "500 Internal Server Error",
        r#"{"name":"UnknownError","data":{"message":"Unexpected server error."}}"#,
    );
    let events = all_events(&mut turn);
    match events.last() {
        Some(TurnEvent::Failed {
            reason: FailReason::Rejected(why),
            ..
        }) => assert!(why.contains("500"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

/// A delivered prompt deleted from its session (by another client) ends
/// the turn at once: not after the watchdog.
#[test]
fn a_delivered_prompt_that_disappears_fails_the_turn_as_gone() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    let began = Instant::now();
    server.set_messages("[]");
    server.event(r#"{"id":"e2","type":"session.idle","properties":{"sessionID":"ses_1"}}"#);
    let events = all_events(&mut turn);
    assert!(
        matches!(
            events.last(),
            Some(TurnEvent::Failed {
                reason: FailReason::MessageGone,
                ..
            })
        ),
        "{events:?}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

/// Resuming an interrupted session writes the registry before the send:
/// a registry that cannot be written fails the prompt before it is sent,
/// never after (which dropped a delivered turn: a rerun was a duplicate).
#[test]
fn a_registry_that_cannot_be_written_fails_a_resume_before_the_send() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let engine = engine(&server, Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let registry = crate::Registry::at(dir.path());
    record_active(&registry, SessionId::from("ses_1"));
    registry
        .set_status(&SessionId::from("ses_1"), crate::SessionState::Interrupted)
        .unwrap();
    // Reads need no lock, writes do: a folder where the lock file goes.
    std::fs::remove_file(dir.path().join("sessions.lock")).unwrap();
    std::fs::create_dir(dir.path().join("sessions.lock")).unwrap();
    let sessions = crate::Sessions::new(engine, registry);
    let got = sessions.prompt(
        &crate::SessionKey::Title("t".into()),
        None,
        PromptRequest::text("hi"),
    );
    assert!(
        matches!(got, Err(Error::Registry(_))),
        "the registry could not be written: {:?}",
        got.err()
    );
    assert!(
        !server.requests().iter().any(|r| r.starts_with("POST")),
        "{:?}",
        server.requests()
    );
}

/// After 300 ms, a turn that hands out nothing more: not ended.
fn assert_still_running(turn: &mut crate::Turn) {
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        turn.next(Instant::now() + Duration::from_millis(300))
            .unwrap(),
        None,
        "still running"
    );
}

/// The turn ended failed with [`MODEL_NOT_FOUND`]'s error.
fn assert_failed_model_not_found(events: &[TurnEvent]) {
    match events.last() {
        Some(TurnEvent::Failed {
            reason: FailReason::Model(error),
            ..
        }) => assert!(error.to_string().contains("Model not found"), "{error}"),
        other => panic!("{other:?}"),
    }
}

const BUSY: &str = r#"{"id":"b","type":"session.status","properties":{"sessionID":"ses_1","status":{"type":"busy"}}}"#;
const IDLE: &str = r#"{"id":"i","type":"session.idle","properties":{"sessionID":"ses_1"}}"#;

/// OpenCode also tells `session.error` for what it recovers from (a
/// context overflow: it compacts and runs the prompt again, busy all
/// along): that does not fail the turn.
#[test]
fn a_session_error_the_server_recovers_from_does_not_fail_the_turn() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    server.event(BUSY);
    server.event(
        r#"{"id":"e1","type":"session.error","properties":{"sessionID":"ses_1","error":{"name":"ContextOverflowError","data":{"message":"too long"}}}}"#,
    );
    assert_still_running(&mut turn);
    server.set_messages(&completed());
    server.event(IDLE);
    let events = all_events(&mut turn);
    assert!(
        matches!(events.last(), Some(TurnEvent::Done(_))),
        "{events:?}"
    );
}

/// The session's earlier turn ended with an error whose events come just
/// after this prompt was sent (before this turn's `busy`): not this
/// turn's.
#[test]
fn an_earlier_turns_late_error_does_not_fail_the_next_turn() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    server.event(MODEL_NOT_FOUND);
    server.event(IDLE);
    assert_still_running(&mut turn);
    server.event(BUSY);
    server.set_messages(&completed());
    server.event(IDLE);
    let events = all_events(&mut turn);
    assert!(
        matches!(events.last(), Some(TurnEvent::Done(_))),
        "{events:?}"
    );
}

/// The order OpenCode tells a prompt it fails before replying, without
/// the POST's answer (the stream alone): busy, `session.error`, idle.
#[test]
fn a_turns_own_error_then_idle_fails_it_with_the_error() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    server.event(BUSY);
    server.event(MODEL_NOT_FOUND);
    server.event(IDLE);
    assert_failed_model_not_found(&all_events(&mut turn));
}

/// The send answered with an error and only an earlier turn's error told
/// (before this turn's busy): the turn fails with the send's error, not
/// with that one.
#[test]
fn a_rejected_send_is_not_given_an_earlier_turns_error() {
    let server = FakeServer::start();
    server.set_messages(&user_only());
    let mut turn = prompt_hi(&server);
    server.event(MODEL_NOT_FOUND);
    server.answer_error(
        "500 Internal Server Error",
        r#"{"name":"UnknownError","data":{"message":"Unexpected server error."}}"#,
    );
    let events = all_events(&mut turn);
    assert!(
        matches!(
            events.last(),
            Some(TurnEvent::Failed {
                reason: FailReason::Rejected(_),
                ..
            })
        ),
        "{events:?}"
    );
}
