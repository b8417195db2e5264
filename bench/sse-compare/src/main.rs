//! Throughput of `httpsse::Parser` next to `eventsource-stream` on the same
//! bytes, in the same run.
//!
//! Inputs: the captured OpenCode streams (`*.sse` in the shared folder,
//! repeated to a few tens of MB) and a synthetic stream of large events. Both
//! parsers get the same chunks; each measurement is the best of several rounds.
//!
//! Usage: `sse-compare [--chunk BYTES] [--seconds S] [--check] [--only-httpsse] [DIR_OR_FILE...]`.
//! Without a path it reads `$SSE_COMPARE_INPUT`, else the repository's
//! `../shared/opencode`. A directory is searched for `*.sse`, also in its
//! `opencode/` subfolder. `--check` exits with status 1 when an input is below
//! the target ratio.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::executor::block_on;

/// httpsse must be at least this many times as fast on every input.
const TARGET_RATIO: f64 = 3.0;

/// Each captured-stream input is repeated up to at least this many bytes.
const CAPTURED_BYTES: usize = 32 * 1024 * 1024;

/// What a parse produced, to check that both parsers saw the same events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Summary {
    events: usize,
    data_bytes: usize,
}

fn parse_httpsse(chunks: &[&[u8]]) -> Summary {
    let mut parser = httpsse::Parser::new();
    let mut summary = Summary::default();
    for chunk in chunks {
        parser.feed(chunk, |event| {
            summary.events += 1;
            summary.data_bytes += event.data.len();
            black_box(event);
        });
    }
    summary
}

fn parse_eventsource_stream(chunks: &[&[u8]]) -> Summary {
    use eventsource_stream::Eventsource;
    let stream = futures::stream::iter(
        chunks
            .iter()
            .map(|chunk| Ok::<&[u8], std::convert::Infallible>(chunk)),
    );
    let mut events = stream.eventsource();
    let mut summary = Summary::default();
    block_on(async {
        while let Some(item) = events.next().await {
            // An error means it gave up on the stream; the summaries then differ.
            let Ok(event) = item else { break };
            summary.events += 1;
            summary.data_bytes += event.data.len();
            black_box(event);
        }
    });
    summary
}

/// Best throughput in MB/s (10^6 bytes) over rounds that add up to about
/// `time` (fewer rounds when one parse alone takes longer than that).
fn measure(
    parse: fn(&[&[u8]]) -> Summary,
    chunks: &[&[u8]],
    bytes: usize,
    time: Duration,
) -> (f64, Summary) {
    let started = Instant::now();
    let summary = parse(chunks); // warm-up, and the result to compare
    let warm_up = started.elapsed();
    let mb_per_s =
        |runs: u32, took: Duration| bytes as f64 * f64::from(runs) / took.as_secs_f64() / 1e6;
    let mut best = mb_per_s(1, warm_up);
    let rounds: u32 = if warm_up >= time { 2 } else { 5 };
    for _ in 0..rounds {
        let started = Instant::now();
        let mut runs = 0u32;
        while runs == 0 || started.elapsed() < time / rounds {
            black_box(parse(black_box(chunks)));
            runs += 1;
        }
        best = best.max(mb_per_s(runs, started.elapsed()));
    }
    (best, summary)
}

fn captured_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_file() {
            files.push(path.clone());
            continue;
        }
        for dir in [path.clone(), path.join("opencode")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file = entry.path();
                if file.extension().is_some_and(|e| e == "sse") {
                    files.push(file);
                }
            }
        }
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        let shown: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "no captured streams (*.sse) found in {}; pass the shared folder (e.g. ../shared) or set SSE_COMPARE_INPUT",
            shown.join(", ")
        ));
    }
    Ok(files)
}

/// 64 events of 512 KiB each: half carry one huge data line (a big JSON
/// payload), half carry the same amount in 80-byte data lines (a long text).
fn synthetic_large_events() -> Vec<u8> {
    let mut out = Vec::with_capacity(34 * 1024 * 1024);
    let event_bytes = 512 * 1024;
    for i in 0..64 {
        out.extend_from_slice(format!("id: evt_{i}\nevent: message.part.updated\n").as_bytes());
        if i % 2 == 0 {
            out.extend_from_slice(b"data: {\"type\":\"tool\",\"output\":\"");
            for j in 0..event_bytes {
                out.push(b"abcdefghijklmnopqrstuvwxyz0123456789 ,.;"[j % 40]);
            }
            out.extend_from_slice(b"\"}\n\n");
        } else {
            let line = b"data: Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\n";
            for _ in 0..event_bytes / line.len() {
                out.extend_from_slice(line);
            }
            out.extend_from_slice(b"\n");
        }
    }
    out
}

struct Options {
    chunks: Vec<usize>,
    /// Measure httpsse alone (for profiling it).
    only_httpsse: bool,
    time: Duration,
    check: bool,
    paths: Vec<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut opts = Options {
        chunks: Vec::new(),
        only_httpsse: false,
        time: Duration::from_secs(1),
        check: false,
        paths: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--chunk" => {
                opts.chunks.push(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&n| n > 0)
                        .ok_or("--chunk needs a positive number of bytes")?,
                );
            }
            "--seconds" => {
                let secs: f64 = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&s: &f64| s > 0.0 && s < 3600.0)
                    .ok_or("--seconds needs a positive number")?;
                opts.time = Duration::from_secs_f64(secs);
            }
            "--check" => opts.check = true,
            "--only-httpsse" => opts.only_httpsse = true,
            "-h" | "--help" => {
                return Err("usage: sse-compare [--chunk BYTES] [--seconds S] [--check] [--only-httpsse] [DIR_OR_FILE...]".into());
            }
            _ => opts.paths.push(PathBuf::from(arg)),
        }
    }
    if opts.chunks.is_empty() {
        // Large reads (a busy stream, the reader's 64 KiB buffer) and
        // packet-sized ones (a live stream delivers about one event per read).
        opts.chunks = vec![64 * 1024, 1500];
    }
    if opts.paths.is_empty() {
        let path = match std::env::var_os("SSE_COMPARE_INPUT") {
            Some(path) => PathBuf::from(path),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/opencode"),
        };
        opts.paths.push(path);
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let opts = match options() {
        Ok(opts) => opts,
        Err(message) => {
            eprintln!("sse-compare: {message}");
            return ExitCode::from(2);
        }
    };
    let files = match captured_files(&opts.paths) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("sse-compare: {message}");
            return ExitCode::from(2);
        }
    };
    let mut captured_once = Vec::new();
    for file in &files {
        match std::fs::read(file) {
            Ok(bytes) => captured_once.extend_from_slice(&bytes),
            Err(e) => {
                eprintln!("sse-compare: cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        }
    }
    let repeats = CAPTURED_BYTES.div_ceil(captured_once.len().max(1));
    let captured = captured_once.repeat(repeats);

    if cfg!(debug_assertions) {
        println!("WARNING: debug build; run with --release for meaningful numbers");
    }
    println!(
        "sse-compare: httpsse::Parser vs eventsource-stream 0.2.3 (futures executor) on the same bytes in the same chunks; best of several rounds"
    );
    let names: Vec<_> = files
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    println!(
        "captured streams: {} ({} bytes) repeated {repeats} times",
        names.join(", "),
        captured_once.len()
    );
    println!(
        "synthetic large events: 64 events of 512 KiB, half one data line, half 80-byte data lines"
    );
    println!();
    println!(
        "{:<26} {:>6} {:>6} {:>7} {:>13} {:>17} {:>7}  result",
        "input", "chunk", "MB", "events", "httpsse MB/s", "eventsource MB/s", "ratio"
    );

    let inputs = [
        ("captured OpenCode streams", captured),
        ("synthetic large events", synthetic_large_events()),
    ];
    let mut all_ok = true;
    for (name, bytes) in &inputs {
        for &chunk in &opts.chunks {
            let chunks: Vec<&[u8]> = bytes.chunks(chunk).collect();
            let (ours, our_summary) = measure(parse_httpsse, &chunks, bytes.len(), opts.time);
            let size = bytes.len() as f64 / 1e6;
            let events = our_summary.events;
            if opts.only_httpsse {
                println!("{name:<26} {chunk:>6} {size:>6.1} {events:>7} {ours:>13.1}");
                continue;
            }
            let (theirs, their_summary) =
                measure(parse_eventsource_stream, &chunks, bytes.len(), opts.time);
            let ratio = ours / theirs;
            let ok = ratio >= TARGET_RATIO;
            all_ok &= ok;
            let verdict = if ok { "ok" } else { "below target" };
            println!(
                "{name:<26} {chunk:>6} {size:>6.1} {events:>7} {ours:>13.1} {theirs:>17.1} {ratio:>6.1}x  {verdict}"
            );
            if our_summary != their_summary {
                println!(
                    "  note: the parsers disagree on this input: httpsse {our_summary:?}, eventsource-stream {their_summary:?}"
                );
            }
        }
    }
    println!();
    println!("target: httpsse at least {TARGET_RATIO}x eventsource-stream on every input");
    if opts.check && !all_ok {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
