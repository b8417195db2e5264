//! Unit tests of the client: URL and credential rules, and, against tiny
//! fake servers on loopback, the shapes of timeouts, statuses, headers and
//! cancellation.

use super::*;

#[test]
fn base_urls() {
    assert_eq!(
        validate_base_url("http://127.0.0.1:4096/").unwrap(),
        "http://127.0.0.1:4096"
    );
    assert_eq!(
        validate_base_url(" HTTP://[::1]:4096/prefix/ ").unwrap(),
        "http://[::1]:4096/prefix"
    );
    for bad in [
        "127.0.0.1:4096",
        "https://127.0.0.1:4096",
        "ftp://x",
        "http://",
        "http://h:1/?q=1",
        "http://h:99999999",
        "http://[::1]:x",
    ] {
        assert!(
            matches!(validate_base_url(bad), Err(Error::InvalidUrl { .. })),
            "{bad}: {:?}",
            validate_base_url(bad)
        );
    }
}

#[test]
fn credentials_in_a_url_are_refused_without_echoing_them() {
    let err = validate_base_url("http://opencode:hunter2@127.0.0.1:4096").unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("basic_auth"), "{text}");
}

#[test]
fn auth_from_env_follows_the_server_rules() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let b = Client::builder("http://127.0.0.1:1")
        .auth_from_lookup(env(&[("OPENCODE_SERVER_PASSWORD", "pw-from-env")]));
    let c = b.credentials.clone().expect("credentials");
    assert_eq!(c.username, "opencode");
    assert_eq!(
        c.header.0,
        format!("Basic {}", base64(b"opencode:pw-from-env"))
    );
    assert!(!format!("{b:?}").contains("pw-from-env"));
    let c = Client::builder("http://127.0.0.1:1")
        .auth_from_lookup(env(&[
            ("OPENCODE_SERVER_PASSWORD", "pw"),
            ("OPENCODE_SERVER_USERNAME", "me"),
        ]))
        .credentials
        .expect("credentials");
    assert_eq!(c.username, "me");
    for empty in [&[("OPENCODE_SERVER_PASSWORD", "")][..], &[]] {
        assert!(
            Client::builder("http://127.0.0.1:1")
                .basic_auth("x", "y")
                .auth_from_lookup(env(empty))
                .credentials
                .is_none()
        );
    }
}

#[test]
fn server_messages() {
    assert_eq!(
        server_message(r#"{"name":"NotFoundError","data":{"message":"Session not found"}}"#)
            .as_deref(),
        Some("Session not found")
    );
    assert_eq!(
        server_message(r#"{"_tag":"InvalidRequestError","message":"bad"}"#).as_deref(),
        Some("bad")
    );
    assert_eq!(server_message("oops"), None);
}

/// Against fake servers.
mod fake_server {

    use super::*;
    use crate::fake_server::{Answer, FakeServer, header, json_response};
    use std::net::TcpListener;
    use std::time::Instant;

    #[test]
    fn a_server_that_never_answers_makes_health_time_out() {
        let fake = FakeServer::start(Answer::Never);
        let limit = Duration::from_millis(300);
        let client = Client::builder(&fake.url())
            .health_timeout(limit)
            .build()
            .unwrap();
        let started = Instant::now();
        let err = client.health().unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(&err, Error::Timeout { limit: l, .. } if *l == limit),
            "{err:?}"
        );
        assert!(err.is_unreachable());
        assert!(took >= limit, "returned before the limit: {took:?}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(
            fake.next_request()
                .starts_with("GET /global/health HTTP/1.1")
        );
    }

    #[test]
    fn a_listener_that_never_accepts_makes_health_time_out() {
        // The kernel completes the handshake into the backlog; nobody reads.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let client = Client::builder(&url)
            .health_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let started = Instant::now();
        let err = client.health().unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn nothing_listening_is_a_connect_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = client.health().unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&port.to_string()), "{err}");
    }

    #[test]
    fn unauthorized_without_and_with_credentials_and_the_password_stays_secret() {
        let fake = FakeServer::start(Answer::With(
            "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic\r\ncontent-length: 0\r\n\r\n",
        ));
        let err = Client::new(&fake.url()).unwrap().health().unwrap_err();
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
        assert_eq!(header(&fake.next_request(), "authorization"), None);

        let password = "correct horse battery staple";
        let client = Client::builder(&fake.url())
            .basic_auth("opencode", password)
            .build()
            .unwrap();
        let err = client.health().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unauthorized {
                    credentials_sent: true,
                    ..
                }
            ),
            "{err:?}"
        );
        let request = fake.next_request();
        let sent = header(&request, "authorization").expect("an authorization header");
        assert_eq!(
            sent,
            format!(
                "Basic {}",
                base64(format!("opencode:{password}").as_bytes())
            )
        );
        let encoded = base64(password.as_bytes());
        for shown in [err.to_string(), format!("{err:?}"), format!("{client:?}")] {
            assert!(
                !shown.contains(password) && !shown.contains(&encoded),
                "{shown}"
            );
            assert!(!shown.contains(&sent[6..]), "{shown}");
        }
    }

    #[test]
    fn not_found_carries_the_server_message() {
        let fake = FakeServer::start(Answer::With(json_response(
            "404 Not Found",
            r#"{"name":"NotFoundError","data":{"message":"Session not found: ses_x"}}"#,
        )));
        let client = Client::new(&fake.url()).unwrap();
        let err = client.get_session(&"ses_x".into()).unwrap_err();
        match &err {
            Error::NotFound { request, message } => {
                assert_eq!(message, "Session not found: ses_x");
                assert_eq!(request, &format!("GET {}/session/ses_x", fake.url()));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.is_not_found());
    }

    #[test]
    fn other_statuses_carry_an_excerpt_of_the_body() {
        let fake = FakeServer::start(Answer::With(json_response(
            "500 Internal Server Error",
            r#"{"name":"UnknownError","data":{"message":"boom"}}"#,
        )));
        let err = Client::new(&fake.url())
            .unwrap()
            .list_sessions()
            .unwrap_err();
        match err {
            Error::Http { status, body, .. } => {
                assert_eq!(status, 500);
                assert!(body.contains("boom"), "{body}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wrong_shape_is_a_decode_error_with_the_path() {
        let body = r#"[{"info":{"id":"msg_1","sessionID":"ses_1","role":"user","time":{"created":1}},
            "parts":[{"id":"prt_1","type":"text","text":"ok"},{"id":"prt_2","type":"text","text":7}]}]"#;
        let fake = FakeServer::start(Answer::With(json_response("200 OK", body)));
        let err = Client::new(&fake.url())
            .unwrap()
            .list_messages(&"ses_1".into(), Some(5))
            .unwrap_err();
        match &err {
            Error::Decode {
                context,
                target,
                path,
                message,
            } => {
                assert!(
                    context.ends_with("/session/ses_1/message?limit=5"),
                    "{context}"
                );
                assert_eq!(target, "Vec<MessageWithParts>");
                assert_eq!(path, "$[0].parts[1].text");
                assert!(message.contains("invalid type"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_directory_goes_percent_encoded_in_its_header() {
        let fake = FakeServer::start(Answer::With(json_response("200 OK", "[]")));
        let client = Client::builder(&fake.url())
            .directory("/tmp/a dir/ü")
            .build()
            .unwrap();
        assert!(client.list_sessions().unwrap().is_empty());
        let request = fake.next_request();
        assert_eq!(header(&request, "content-length"), None, "{request}");
        assert_eq!(
            header(&request, DIRECTORY_HEADER),
            Some("/tmp/a%20dir/%C3%BC")
        );
        let other = client.with_directory(Path::new("/srv/b"));
        assert!(other.list_sessions().unwrap().is_empty());
        assert_eq!(
            header(&fake.next_request(), DIRECTORY_HEADER),
            Some("/srv/b")
        );
        // Without a directory no header is sent.
        Client::new(&fake.url()).unwrap().list_sessions().unwrap();
        assert_eq!(header(&fake.next_request(), DIRECTORY_HEADER), None);
    }

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        let fake = FakeServer::start(Answer::With(json_response("200 OK", "true")));
        let client = Client::new(&fake.url()).unwrap();
        assert!(client.abort(&"ses_a/../b?c".into()).unwrap());
        assert!(
            fake.next_request()
                .starts_with("POST /session/ses_a%2F..%2Fb%3Fc/abort HTTP/1.1")
        );
    }

    #[test]
    fn a_blocked_prompt_is_cancelled_from_another_thread() {
        let fake = FakeServer::start(Answer::Never);
        let client = Client::builder(&fake.url())
            .timeout(Duration::from_millis(100))
            .health_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let token = CancelToken::new();
        let call = {
            let client = client.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                client.prompt_with_cancel(&"ses_1".into(), &PromptRequest::text("hi"), &token)
            })
        };
        // The request reached the server: the call is blocked on the answer
        // (and stays blocked: the prompt has no overall limit, unlike the
        // 100 ms of ordinary calls).
        let request = fake.next_request();
        assert!(request.starts_with("POST /session/ses_1/message HTTP/1.1"));
        assert!(request.contains(r#""parts":[{"type":"text","text":"hi"}]"#));
        let cancelled_at = Instant::now();
        token.cancel();
        let result = call.join().unwrap();
        assert!(
            matches!(&result, Err(Error::Cancelled { request }) if request.contains("/session/ses_1/message")),
            "{result:?}"
        );
        assert!(cancelled_at.elapsed() < Duration::from_secs(5));
        // A cancelled token fails later calls at once, without a request.
        let again = client.prompt_with_cancel(&"ses_1".into(), &PromptRequest::text("x"), &token);
        assert!(matches!(again, Err(Error::Cancelled { .. })), "{again:?}");
        assert!(fake.requests.try_recv().is_err());
        // The shared client is unaffected.
        assert!(matches!(client.health(), Err(Error::Timeout { .. })));
    }
}

mod no_content {
    use super::*;
    use crate::fake_server::{Answer, FakeServer, header};

    #[test]
    fn prompt_async_takes_a_204_and_sends_its_message_id() {
        let fake = FakeServer::start(Answer::With(
            "HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        ));
        let client = Client::new(&fake.url()).unwrap();
        let id = crate::new_message_id();
        client
            .prompt_async(&"ses_1".into(), &PromptRequest::text("hi").message_id(&id))
            .unwrap();
        let request = fake.next_request();
        assert!(request.starts_with("POST /session/ses_1/prompt_async HTTP/1.1"));
        assert_eq!(header(&request, "content-type"), Some("application/json"));
        assert!(
            request.contains(&format!(r#""messageID":"{id}""#)),
            "{request}"
        );
        // Anything else decodes a 204 as null.
        let value: Value = client.call_json("POST", "x", None).unwrap();
        assert_eq!(value, Value::Null);
        assert!(client.call_json::<bool>("POST", "x", None).is_err());
    }
}
