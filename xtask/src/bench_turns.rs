//! `cargo xtask bench` (turns part): event latency from the demultiplexer
//! receiving a frame to the turn taking it (median, p99), and the overhead
//! of a prompt through `turns` and through `ocm prompt` over a bare
//! blocking `POST /session/{id}/message` on the same server.
//!
//! The server's own time for one prompt varies by tens of milliseconds
//! from run to run (its work after a turn, its scheduling on 2 cores), so
//! the overhead is the median of paired differences: each measured prompt
//! against the bare POST just before it, each started on a settled server.
//! It is shown twice: of the wall times, and of the time outside the
//! server's span (wall time minus the server's own time from storing the
//! prompt to completing the reply, by its message times): the second is
//! what the caller adds, without the server's run-to-run noise. The
//! command `ocm prompt` is set against the same POST made by a process of
//! its own (`xtask bench-post`, the same client): a command against a
//! command. It is measured three ways: with no relay beside the server
//! (a first prompt: it waits for a stream of its own and starts `ocm
//! relay`), through the relay a first prompt left (the target's measure:
//! every later prompt), and supervised (the supervisor's relay).

use std::time::{Duration, Instant};

use e2e::{Reply, Script, TestBed};
use opencode_api::{Client, Message, NewSession, PromptRequest, SessionId};
use turns::{Engine, TurnEvent, TurnOptions};

const LATENCY_TURNS: usize = 10;
const OVERHEAD_RUNS: usize = 30;
/// The pause before each measured prompt: OpenCode goes on working after a
/// turn (session diff, plugin and catalog updates for some hundred
/// milliseconds), which would slow the next prompt.
const SETTLE: Duration = Duration::from_millis(300);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples
        .get((samples.len() * p / 100).min(samples.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Waits [`SETTLE`], then until no session of the server is busy (at most
/// 5 s): OpenCode
/// goes on with a turn for some milliseconds after the blocking POST
/// returned and after the turn's last message (status, idle events), so
/// each measured prompt starts on a quiet server, not in the tail of the
/// one before.
fn quiet(client: &Client) -> Result<(), String> {
    std::thread::sleep(SETTLE);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let status = client.session_status().map_err(|e| e.to_string())?;
        if !status.values().any(|s| s.is_active()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The server's own time for the newest turn of `session`, in ms of its
/// clock: from storing the prompt to completing the reply.
fn server_span(client: &Client, session: &SessionId) -> Result<f64, String> {
    let newest = client
        .list_messages(session, Some(2))
        .map_err(|e| e.to_string())?;
    if let [prompt, reply] = newest.as_slice()
        && let (Message::User(prompt), Message::Assistant(reply)) = (&prompt.info, &reply.info)
        && reply.parent_id.as_ref() == Some(&prompt.id)
        && let Some(completed) = reply.time.completed
    {
        return Ok(completed.saturating_sub(prompt.time.created) as f64);
    }
    Err(format!(
        "the newest turn of {session} is not one completed reply to one prompt"
    ))
}

/// One measured prompt: its wall time and the time outside the server's
/// span (both ms).
#[derive(Clone, Copy)]
struct Run {
    wall: f64,
    outside: f64,
}

impl Run {
    fn of(wall: Duration, client: &Client, session: &SessionId) -> Result<Run, String> {
        let wall = ms(wall);
        Ok(Run {
            wall,
            outside: wall - server_span(client, session)?,
        })
    }
}

/// `cargo xtask bench turns`: builds ocm (release) and runs this part.
pub fn standalone() -> Result<(), String> {
    crate::step(
        "build ocm (release)",
        crate::cargo().args(["build", "--release", "--quiet", "-p", "ocm"]),
    )?;
    crate::install_opencode()?;
    run(&crate::target_dir().join("release").join("ocm"))
}

/// Runs this part, in a release build of xtask: the engine is measured in
/// the process that runs it, as an embedder's release build runs it (a
/// debug build's event decoding takes CPU from the server on 2 cores and
/// shows as overhead).
pub fn run(ocm: &std::path::Path) -> Result<(), String> {
    if cfg!(debug_assertions) {
        return crate::step(
            "turns part, in a release build of xtask",
            crate::cargo().args([
                "run",
                "--release",
                "--locked",
                "--quiet",
                "-p",
                "xtask",
                "--",
                "bench",
                "turns",
            ]),
        );
    }
    measure(ocm)
}

/// The median and quartiles of `samples`, in ms.
fn spread(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    (at(50), at(25), at(75))
}

fn measure(ocm: &std::path::Path) -> Result<(), String> {
    eprintln!("\n==> turns: event latency, prompt overhead");
    let words: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
    // The latency turns stream their words a millisecond apart, so each
    // comes as a frame of its own; the others answer at once.
    let bed = TestBed::with_script(
        Script::new()
            .when(
                "latency",
                Reply::text(words.join(" ")).chunk_delay(Duration::from_millis(1)),
            )
            .default_reply(Reply::text(words.join(" "))),
    );
    let server = bed.start_opencode();
    let client = Client::builder(&server.url)
        .directory(&bed.project)
        .build()
        .map_err(|e| e.to_string())?;
    let engine = Engine::new(client.clone(), TurnOptions::default());
    let session = client
        .create_session(&NewSession::titled("bench"))
        .map_err(|e| e.to_string())?
        .id;
    let deadline = || Instant::now() + Duration::from_secs(120);

    let mut latencies = Vec::new();
    for i in 0..LATENCY_TURNS {
        quiet(&client)?;
        let mut turn = engine
            .prompt(&session, PromptRequest::text(format!("latency {i}")))
            .map_err(|e| e.to_string())?;
        while let Some(event) = turn.next(deadline()).map_err(|e| e.to_string())? {
            if let TurnEvent::Failed { reason, .. } = event {
                return Err(format!("a bench turn failed: {reason}"));
            }
        }
        latencies.extend_from_slice(turn.event_latencies());
    }
    let count = latencies.len();
    let median = percentile(&mut latencies, 50);
    let p99 = percentile(&mut latencies, 99);

    // The same prompt: bare blocking POST vs turns, alternating.
    let mut bare = Vec::new();
    let mut through_turns = Vec::new();
    quiet(&client)?;
    for i in 0..OVERHEAD_RUNS {
        let began = Instant::now();
        client
            .prompt(&session, &PromptRequest::text(format!("bare {i}")))
            .map_err(|e| e.to_string())?;
        bare.push(Run::of(began.elapsed(), &client, &session)?);
        quiet(&client)?;
        let began = Instant::now();
        engine
            .prompt(&session, PromptRequest::text(format!("turns {i}")))
            .and_then(|t| t.wait(deadline()))
            .map_err(|e| e.to_string())?;
        through_turns.push(Run::of(began.elapsed(), &client, &session)?);
        quiet(&client)?;
    }
    drop(engine);
    drop(server);

    // ocm prompt (a whole process, the server ensured and reused) against
    // a bare POST to that server.
    let project = bed.project.display().to_string();
    let run_ocm = |text: &str| -> Result<(Duration, SessionId), String> {
        let (took, _, stdout) =
            crate::bench::timed(bed.command(ocm).args(["prompt", "--json", &project, text]))?;
        let done: serde_json::Value = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .ok_or_else(|| format!("ocm prompt --json printed no done line: {stdout}"))?;
        let session = done["sessionId"]
            .as_str()
            .ok_or_else(|| format!("ocm prompt --json: no sessionId in {done}"))?;
        Ok((took, SessionId::from(session)))
    };
    run_ocm("warm up")?;
    let url = bed
        .command(ocm)
        .args(["url", &project])
        .output()
        .map_err(|e| e.to_string())?;
    let url = String::from_utf8_lossy(&url.stdout).trim().to_string();
    let managed = Client::builder(&url)
        .directory(&bed.project)
        .build()
        .map_err(|e| e.to_string())?;
    let bare_session = managed
        .create_session(&NewSession::titled("bare"))
        .map_err(|e| e.to_string())?
        .id;
    // The same POST from a process of its own, started as ocm is.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let run_post = |text: &str| -> Result<Duration, String> {
        let (took, _, _) = crate::bench::timed(
            std::process::Command::new(&exe)
                .arg("bench-post")
                .arg(&url)
                .arg(&bed.project)
                .arg(bare_session.to_string())
                .arg(text),
        )?;
        Ok(took)
    };
    // One `ocm prompt`, then the POST by a process, each on a settled
    // server.
    let ocm_then_post = |text: &str, ocm: &mut Vec<Run>, post: &mut Vec<Run>| {
        let (took, ocm_session) = run_ocm(text)?;
        ocm.push(Run::of(took, &managed, &ocm_session)?);
        quiet(&managed)?;
        let took = run_post(&format!("post {text}"))?;
        post.push(Run::of(took, &managed, &bare_session)?);
        quiet(&managed)
    };
    let state_dir = bed
        .command(ocm)
        .args(["status", "--json", &project])
        .output()
        .map_err(|e| e.to_string())
        .and_then(|out| {
            serde_json::from_slice::<serde_json::Value>(&out.stdout).map_err(|e| e.to_string())
        })?["stateDir"]
        .as_str()
        .map(std::path::PathBuf::from)
        .ok_or("ocm status --json: no stateDir")?;
    let socket = state_dir.join("events.sock");
    // First, `ocm prompt` with no relay beside the server: each one hears
    // a stream of its own, then starts `ocm relay` (stopped again before
    // the next).
    let mut bare_managed = Vec::new();
    let mut alone_runs = Vec::new();
    let mut alone_posts = Vec::new();
    for i in 0..OVERHEAD_RUNS {
        stop_relays(&bed)?;
        quiet(&managed)?;
        let began = Instant::now();
        managed
            .prompt(&bare_session, &PromptRequest::text(format!("bare {i}")))
            .map_err(|e| e.to_string())?;
        bare_managed.push(Run::of(began.elapsed(), &managed, &bare_session)?);
        quiet(&managed)?;
        ocm_then_post(&format!("alone {i}"), &mut alone_runs, &mut alone_posts)?;
    }
    // Then as it runs after its first prompt: through the relay it left.
    relay_ready(&socket, Duration::from_secs(20))?;
    let mut ocm_runs = Vec::new();
    let mut post_runs = Vec::new();
    quiet(&managed)?;
    for i in 0..OVERHEAD_RUNS {
        ocm_then_post(&format!("ocm {i}"), &mut ocm_runs, &mut post_runs)?;
    }
    stop_relays(&bed)?;
    // The same with the project supervised: `ocm prompt` takes its events
    // from the supervisor's relay, subscribed once a frame after its
    // `server.connected` came (the heartbeat, within 10 s).
    let bin = e2e::find_opencode()?;
    let supervisor =
        crate::chaos::Supervising::start(ocm, &bed, &bin, &[], std::slice::from_ref(&bed.project))?;
    supervisor.expect("running", Duration::from_secs(60))?;
    relay_ready(&socket, Duration::from_secs(20))?;
    let mut relayed_runs = Vec::new();
    let mut relayed_posts = Vec::new();
    quiet(&managed)?;
    for i in 0..OVERHEAD_RUNS {
        ocm_then_post(
            &format!("relayed {i}"),
            &mut relayed_runs,
            &mut relayed_posts,
        )?;
    }
    supervisor.stop()?;
    let _ = bed.command(ocm).args(["down", &project]).output();

    let verdict = |d: f64| if d < 5.0 { "ok" } else { "ABOVE TARGET" };
    println!();
    println!(
        "turns ({LATENCY_TURNS} turns, {count} frames with events; {OVERHEAD_RUNS} alternating runs; \
         overhead: median of paired differences [quartiles], of wall times and of the time \
         outside the server's span)"
    );
    println!(
        "  event latency, demux to turn            median {:>8.3} ms  p99 {:.3} ms",
        ms(median),
        ms(p99)
    );
    let line = |name: &str, measured: &[Run], base_name: &str, base: &[Run], target: bool| {
        let wall = |runs: &[Run]| spread(&mut runs.iter().map(|r| r.wall).collect::<Vec<_>>()).0;
        let paired = |of: fn(&Run) -> f64| {
            spread(
                &mut measured
                    .iter()
                    .zip(base)
                    .map(|(m, b)| of(m) - of(b))
                    .collect::<Vec<_>>(),
            )
        };
        let (raw, raw_q1, raw_q3) = paired(|r| r.wall);
        let (outside, out_q1, out_q3) = paired(|r| r.outside);
        let verdict = if target {
            format!("  target < 5 ms  {}", verdict(outside))
        } else {
            String::new()
        };
        println!(
            "  {name}: median {:.1} ms ({base_name} {:.1} ms)  overhead {raw:+.1} ms \
             [{raw_q1:+.1}, {raw_q3:+.1}], outside the server {outside:+.1} ms \
             [{out_q1:+.1}, {out_q3:+.1}]{verdict}",
            wall(measured),
            wall(base),
        );
    };
    // The targets: the library against the POST made in the same process,
    // the command against the same POST made by a process of its own (a
    // command against a command: what `curl` would do, by the client the
    // in-process POST uses).
    line(
        "Engine::prompt + wait",
        &through_turns,
        "bare POST in-process",
        &bare,
        true,
    );
    line(
        "ocm prompt (through the relay a first prompt left)",
        &ocm_runs,
        "bare POST by a process",
        &post_runs,
        true,
    );
    line(
        "ocm prompt, supervised (the supervisor's relay)",
        &relayed_runs,
        "bare POST by a process",
        &relayed_posts,
        true,
    );
    // Not a target's measure: the first prompt on a server, which waits
    // for a stream of its own and starts the relay.
    line(
        "ocm prompt, no relay yet (starts one)",
        &alone_runs,
        "bare POST by a process",
        &alone_posts,
        false,
    );
    // Not a target's measure: what starting any process costs here.
    line(
        "the bare POST by a process",
        &post_runs,
        "in-process",
        &bare_managed,
        false,
    );
    line(
        "ocm prompt",
        &ocm_runs,
        "bare POST in-process",
        &bare_managed,
        false,
    );
    line(
        "ocm prompt, supervised",
        &relayed_runs,
        "bare POST in-process",
        &bare_managed,
        false,
    );
    Ok(())
}

/// Waits until the supervisor's relay at `socket` takes clients (it
/// answers with its hello line), at most `bound`.
fn relay_ready(socket: &std::path::Path, bound: Duration) -> Result<(), String> {
    use std::io::BufRead;
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut hello = String::new();
            if std::io::BufReader::new(stream)
                .read_line(&mut hello)
                .is_ok_and(|n| n > 0)
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "the supervisor's event relay at {} took no client within {bound:?}",
        socket.display()
    ))
}

/// Stops the `ocm relay` processes `bed`'s commands started, and waits
/// until they are gone (at most 5 s).
fn stop_relays(bed: &TestBed) -> Result<(), String> {
    for pid in bed.relay_pids() {
        e2e::send_signal(pid as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bed.relay_pids().is_empty() {
        if Instant::now() > deadline {
            return Err("the relays did not end within 5 s of SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// `xtask bench-post URL DIR SESSION TEXT`: one blocking prompt POST, by
/// the client the in-process bare POST uses.
pub fn post(args: &[String]) -> Result<(), String> {
    let [url, dir, session, text] = args else {
        return Err("usage: cargo xtask bench-post URL DIR SESSION TEXT".into());
    };
    Client::builder(url)
        .directory(std::path::Path::new(dir))
        .build()
        .and_then(|client| {
            client.prompt(
                &SessionId::from(session.as_str()),
                &PromptRequest::text(text.as_str()),
            )
        })
        .map(drop)
        .map_err(|e| e.to_string())
}
