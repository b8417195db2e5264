//! Unit tests of `companion.rs`: port selection, the record, redaction,
//! the HTTP answer check, and which sweeps reach a companion.

use std::io::{Read, Write};
use std::net::TcpListener;

use super::probe::is_status_line;
use super::*;
use crate::Config;

#[test]
fn a_fixed_port_that_is_taken_names_its_holder() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    match choose_port(&PortPolicy::Fixed(port)) {
        Err(Error::PortInUse {
            port: p, holder, ..
        }) => {
            assert_eq!(p, port);
            assert_eq!(holder.map(|h| h.pid), Some(std::process::id()));
        }
        other => panic!("expected PortInUse, got {other:?}"),
    }
    drop(listener);
    assert_eq!(choose_port(&PortPolicy::Fixed(port)).unwrap(), port);
}

#[test]
fn a_range_gives_its_first_free_port_or_an_error_when_none_is_free() {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = a.local_addr().unwrap().port();
    // The range's first port is taken: the next free one is given (the
    // one after may be taken by someone else; any free one after counts).
    let Some(last) = port.checked_add(20) else {
        return;
    };
    let chosen = choose_port(&PortPolicy::Range(port..=last)).unwrap();
    assert!(chosen > port && chosen <= last, "{chosen}");
    match choose_port(&PortPolicy::Range(port..=port)) {
        Err(Error::NoFreePort { first, last, .. }) => assert_eq!((first, last), (port, port)),
        other => panic!("expected NoFreePort, got {other:?}"),
    }
}

#[test]
fn other_port_policies_are_refused() {
    for policy in [PortPolicy::Auto, PortPolicy::Project] {
        let err = choose_port(&policy).unwrap_err();
        assert!(matches!(err, Error::CompanionPortPolicy { .. }), "{err}");
        assert!(err.to_string().contains("fixed or a range"), "{err}");
    }
}

#[test]
fn debug_redacts_environment_values() {
    let spec = CompanionSpec {
        command: vec!["ocm".into(), "mcp".into()],
        env: vec![("MCP_TOOL_BEARER_TOKEN".into(), "s3cret-value".into())],
        port: PortPolicy::Fixed(1),
        start_timeout: Duration::from_secs(1),
    };
    let text = format!("{spec:?}");
    assert!(!text.contains("s3cret-value"), "{text}");
    assert!(text.contains("MCP_TOOL_BEARER_TOKEN=<redacted>"), "{text}");
    assert!(text.contains("mcp"), "{text}");
}

#[test]
fn the_record_round_trips_and_keeps_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ProjectPaths::new(dir.path(), "0123456789abcdef0123456789abcdef");
    let record = CompanionRecord {
        schema_version: SCHEMA_VERSION,
        pid: 42,
        start_time: 7,
        boot_id: "b".into(),
        port: 29001,
        url: "http://127.0.0.1:29001".into(),
        command: vec!["ocm".into(), "mcp".into()],
        started_at: "2026-12-01T00:00:00.000Z".into(),
        log: paths.dir.join("companion.log"),
        nonce: "n".into(),
        extra: serde_json::Map::new(),
    };
    write_record(&paths, &record).unwrap();
    assert_eq!(read_record(&paths).unwrap(), Some(record.clone()));
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record_path(&paths)).unwrap()).unwrap();
    assert_eq!(value["startTime"], 7);
    assert!(value.get("env").is_none());
    value["future"] = serde_json::json!(1);
    std::fs::write(record_path(&paths), value.to_string()).unwrap();
    let back = read_record(&paths).unwrap().unwrap();
    assert_eq!(back.extra["future"], 1);
    std::fs::write(record_path(&paths), b"{broken").unwrap();
    assert!(read_record(&paths).unwrap_err().is_corrupt());
}

#[test]
fn a_corrupt_record_is_moved_aside_by_stop() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("p");
    std::fs::create_dir(&project).unwrap();
    let manager = Manager::new(Config {
        state_root: Some(root.path().join("state")),
        ..Config::default()
    })
    .unwrap();
    let paths = manager.paths(&project).unwrap();
    statefile::ensure_dir(&paths.dir).unwrap();
    std::fs::write(record_path(&paths), b"{broken").unwrap();
    assert_eq!(manager.stop_companion(&project).unwrap(), None);
    assert!(!record_path(&paths).exists());
    let aside = std::fs::read_dir(&paths.dir).unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("companion.json.corrupt")
    });
    assert!(aside, "the corrupt record was not kept");
}

#[test]
fn port_is_substituted_in_every_argument() {
    let command = vec!["x".to_string(), "--http".into(), "127.0.0.1:{port}".into()];
    assert_eq!(
        substitute(&command, 29005),
        vec!["x", "--http", "127.0.0.1:29005"]
    );
}

#[test]
fn any_status_line_is_an_answer_and_silence_is_not() {
    assert!(is_status_line(b"HTTP/1.1 401 Unauthorized\r\n"));
    assert!(is_status_line(b"HTTP/1.0 404 "));
    assert!(!is_status_line(b"SSH-2.0-OpenSSH"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 256];
        let _ = stream.read(&mut buf);
        stream.write_all(b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap();
        // A second connection that never answers.
        let (_silent, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(600));
    });
    assert!(answers(port, Duration::from_secs(2)).is_some());
    let started = Instant::now();
    assert!(answers(port, Duration::from_millis(300)).is_none());
    assert!(started.elapsed() < Duration::from_secs(2));
    server.join().unwrap();
}

#[test]
fn log_lines_have_control_characters_escaped() {
    assert_eq!(escaped("boom\u{1b}[31m\r"), "boom\\u{1b}[31m\\r");
    assert_eq!(escaped("tab\tok"), "tab\tok");
}

#[test]
fn server_sweeps_spare_a_companion_and_orphan_sweeps_take_it() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let manager = Manager::new(Config {
        state_root: Some(root.path().join("state")),
        ..Config::default()
    })
    .unwrap();
    let hash = portmap::project_hash(&project).unwrap();
    let companion = procutil::spawn_detached(
        &procutil::SpawnSpec::new("sleep")
            .arg("300")
            .env(PROJECT_HASH_VAR, &hash)
            .env(STATE_ROOT_VAR, manager.state_root().as_os_str())
            .env(COMPANION_VAR, "start-1"),
    )
    .unwrap();
    assert!(manager.sweep_project(&hash, None).is_empty());
    assert!(companion.identity().is_alive());
    // Recorded: not an orphan, left alone by the server's stop.
    let paths = manager.paths(&project).unwrap();
    statefile::ensure_dir(&paths.dir).unwrap();
    let mut record = CompanionRecord {
        schema_version: SCHEMA_VERSION,
        pid: companion.pid(),
        start_time: companion.identity().start_time,
        boot_id: companion.identity().boot_id.clone(),
        port: 1,
        url: String::new(),
        command: vec!["sleep".into()],
        started_at: String::new(),
        log: log_path(&paths),
        nonce: "start-1".into(),
        extra: serde_json::Map::new(),
    };
    write_record(&paths, &record).unwrap();
    manager.stop(&project).unwrap();
    assert!(companion.identity().is_alive(), "stop took the companion");
    // Another start is recorded: this one is an orphan now.
    record.nonce = "start-2".into();
    write_record(&paths, &record).unwrap();
    manager.stop(&project).unwrap();
    assert!(!companion.identity().is_alive(), "the orphan still runs");
    let _ = companion.wait_timeout(Duration::from_secs(5));
}
