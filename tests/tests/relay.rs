//! End-to-end tests of the event relay beside a server with no supervisor
//! (`ocm relay`, started by `ocm prompt`), against the real opencode
//! server with the mock model: the next prompt takes its events from it,
//! it ends with its server, `ocm down` stops it without calling it a
//! leftover, `OCM_NO_RELAY` keeps a prompt from starting one, a
//! supervisor's relay takes over, and `ocm relay` says why it ends.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use e2e::{Reply, Script, TestBed, e2e_skipped, ocm, pid_of, poll_until};
use serde_json::Value;

/// The bed's project's state folder.
fn state_dir(bed: &TestBed) -> PathBuf {
    let status = ocm(bed, ["status", "--json"]).json();
    PathBuf::from(status["stateDir"].as_str().expect("stateDir"))
}

/// The `done` line of `ocm prompt --json TEXT`. The call returning at all
/// shows the relay it may start holds none of its output pipes.
fn prompt_done(bed: &TestBed, text: &str) -> Value {
    let run = ocm(bed, ["prompt", "--json", text]).ok();
    let done: Value = serde_json::from_str(run.stdout.lines().last().expect("a line")).unwrap();
    assert_eq!(done["type"], "done", "{run:#?}");
    done
}

/// A client of the project's relay, past its hello.
fn relay_client(bed: &TestBed) -> BufReader<UnixStream> {
    e2e::relay_client(&state_dir(bed).join("events.sock"))
}

#[test]
fn a_prompt_leaves_a_relay_the_next_prompt_takes_and_it_ends_with_its_server() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::new().default_reply(Reply::text("told")));
    assert!(bed.relay_pids().is_empty());
    // The first prompt hears a stream of its own, then starts the relay.
    assert_eq!(prompt_done(&bed, "first")["text"], "told");
    let relays = poll_until(Duration::from_secs(5), "one relay", || {
        Some(bed.relay_pids()).filter(|pids| pids.len() == 1)
    });
    let mut watcher = relay_client(&bed);
    let done = prompt_done(&bed, "second");
    assert_eq!(done["text"], "told", "{done}");
    // The relay handed the second turn's frames on.
    let message = done["messageId"].as_str().unwrap().to_string();
    let mut line = String::new();
    poll_until(Duration::from_secs(10), "the prompt's frames", || {
        line.clear();
        watcher.read_line(&mut line).expect("a frame");
        line.contains(&message).then_some(())
    });
    // A prompt that took the relay starts none.
    assert_eq!(bed.relay_pids(), relays);

    // The server dies: the relay ends at once, says why, and counts its
    // clients: the watcher and the second prompt.
    let server = pid_of(&ocm(&bed, ["status", "--json"]).json());
    assert!(e2e::send_signal(server as i32, libc::SIGKILL));
    poll_until(Duration::from_secs(3), "the relay to end", || {
        bed.relay_pids().is_empty().then_some(())
    });
    let log = std::fs::read_to_string(state_dir(&bed).join("relay.log")).expect("relay.log");
    assert!(
        log.contains("relay ended: the event stream of") && log.contains("; 2 clients served"),
        "{log}"
    );
    assert!(!state_dir(&bed).join("events.sock").exists());
    // Its clients were closed: the watcher reads what was sent, then the
    // end.
    let mut rest = String::new();
    while watcher.read_line(&mut rest).expect("a frame or the end") > 0 {}
}

#[test]
fn ocm_down_stops_the_relay_without_calling_it_a_leftover() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::new().default_reply(Reply::text("told")));
    // OCM_NO_RELAY: the prompt starts none.
    let run = e2e::ocm_with(&bed, ["prompt", "no relay"], &[("OCM_NO_RELAY", "1")]).ok();
    assert_eq!(run.stdout, "told\n");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(bed.relay_pids(), Vec::<u32>::new());
    prompt_done(&bed, "start a relay");
    poll_until(Duration::from_secs(5), "one relay", || {
        (bed.relay_pids().len() == 1).then_some(())
    });
    drop(relay_client(&bed));
    // A second relay leaves the one that listens alone.
    let again = ocm(&bed, ["relay"]).ok();
    assert_eq!(
        again.stdout,
        "relay ended: another relay serves the project already\n"
    );
    assert_eq!(bed.relay_pids().len(), 1);

    let down = ocm(&bed, ["down", "--json"]).ok().json();
    assert_eq!(down["wasRunning"], true, "{down}");
    assert_eq!(down["leftoversStopped"], serde_json::json!([]), "{down}");
    assert_eq!(bed.relay_pids(), Vec::<u32>::new());

    // No server: nothing to relay (exit 3); --json is bad usage.
    let none = ocm(&bed, ["relay"]).code(3);
    assert_eq!(none.stdout, "relay ended: no server runs for the project\n");
    ocm(&bed, ["relay", "--json"]).code(2);
}

#[test]
fn a_supervisor_takes_the_relays_socket_and_the_relay_process_ends() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::with_script(Script::new().default_reply(Reply::text("told")));
    prompt_done(&bed, "start a relay");
    poll_until(Duration::from_secs(5), "one relay", || {
        (bed.relay_pids().len() == 1).then_some(())
    });
    drop(relay_client(&bed));
    let mut supervise = bed
        .command(e2e::ocm_bin())
        .arg("supervise")
        .arg(&bed.project)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ocm supervise");
    // The relay process looks at its socket every 10 s.
    poll_until(Duration::from_secs(25), "the relay process to end", || {
        bed.relay_pids().is_empty().then_some(())
    });
    let log = std::fs::read_to_string(state_dir(&bed).join("relay.log")).expect("relay.log");
    assert!(
        log.contains("relay ended: another relay took the socket for"),
        "{log}"
    );
    // The supervisor's relay serves the next prompt, which starts none.
    drop(relay_client(&bed));
    assert_eq!(prompt_done(&bed, "supervised")["text"], "told");
    assert_eq!(bed.relay_pids(), Vec::<u32>::new());
    assert!(e2e::send_signal(supervise.id() as i32, libc::SIGTERM));
    let status = poll_until(Duration::from_secs(10), "ocm supervise to end", || {
        supervise.try_wait().expect("wait for ocm supervise")
    });
    assert_eq!(status.code(), Some(0));
}
