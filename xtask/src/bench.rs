//! `cargo xtask bench`: the speed and memory figures, in one run.
//!
//! - httpsse: parser throughput on the captured OpenCode streams and on a
//!   synthetic stream of large events, next to `eventsource-stream` (built
//!   only here, in `bench/sse-compare`, outside the workspace).
//! - ocm: cold `ocm up` time over bare opencode's time to its listening line
//!   (both from exec, alternating, same isolated environment), warm `ocm up`
//!   as a whole process, and the `ocm` process's peak resident memory.
//! - supervision: the time from a SIGKILL to the `crashed` transition and
//!   to `running` again, and what a supervisor of 5 idle servers costs in
//!   60 s (CPU time, threads, resident memory).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{cargo, step, target_dir, workspace_root};

const COLD_RUNS: usize = 5;
const WARM_RUNS: usize = 50;

pub fn run() -> Result<(), String> {
    let shared = workspace_root().join("../shared");
    step(
        "httpsse throughput vs eventsource-stream",
        cargo()
            .args([
                "run",
                "--release",
                "--quiet",
                "--manifest-path",
                "bench/sse-compare/Cargo.toml",
                "--",
            ])
            .arg(&shared),
    )?;
    step(
        "build ocm (release)",
        cargo().args(["build", "--release", "--quiet", "-p", "ocm"]),
    )?;
    let bin = crate::install_opencode()?;
    let ocm = target_dir().join("release").join("ocm");
    eprintln!("\n==> ocm up: cold vs bare opencode, warm, memory");
    let bed = e2e::TestBed::new();
    let env_bin = ("OPENCODE_BIN".to_string(), bin.display().to_string());

    // One start first so that opencode's one-time set-up of its data folder
    // is not counted against either side.
    drop(bed.start_opencode());

    let mut bare = Vec::new();
    let mut cold = Vec::new();
    let mut cold_rss = Vec::new();
    for i in 0..COLD_RUNS {
        let started = Instant::now();
        let server = bed.start_opencode();
        bare.push(started.elapsed());
        drop(server);

        let project = bed.new_project(&format!("cold-{i}"));
        let (elapsed, rss, output) = timed(
            bed.command(&ocm)
                .env(&env_bin.0, &env_bin.1)
                .arg("up")
                .arg(&project)
                .arg("--json"),
        )?;
        cold.push(elapsed);
        cold_rss.push(rss);
        let started = serde_json::from_str::<serde_json::Value>(&output)
            .is_ok_and(|v| v["pid"].is_u64() && v["reused"] == serde_json::Value::Bool(false));
        if !started {
            return Err(format!("ocm up printed no server: {output}"));
        }
        if i + 1 < COLD_RUNS {
            run_quiet(bed.command(&ocm).arg("down").arg(&project))?;
        }
    }
    let warm_project = bed.new_project(&format!("cold-{}", COLD_RUNS - 1));
    let mut warm = Vec::new();
    let mut warm_rss = Vec::new();
    for _ in 0..WARM_RUNS {
        let (elapsed, rss, output) = timed(
            bed.command(&ocm)
                .env(&env_bin.0, &env_bin.1)
                .arg("up")
                .arg(&warm_project)
                .arg("--json"),
        )?;
        let reused = serde_json::from_str::<serde_json::Value>(&output)
            .is_ok_and(|v| v["reused"] == serde_json::Value::Bool(true));
        if !reused {
            return Err(format!("a warm ocm up did not reuse the server: {output}"));
        }
        warm.push(elapsed);
        warm_rss.push(rss);
    }
    run_quiet(bed.command(&ocm).arg("down").arg(&warm_project))?;

    let bare_median = median(&mut bare);
    let cold_median = median(&mut cold);
    let ratio = cold_median.as_secs_f64() / bare_median.as_secs_f64();
    let warm_median = median(&mut warm);
    warm.sort();
    let warm_p90 = warm[(warm.len() * 9 / 10).min(warm.len() - 1)];
    let verdict = |ok: bool| if ok { "ok" } else { "ABOVE TARGET" };
    println!();
    println!(
        "ocm up ({COLD_RUNS} cold runs alternating with bare opencode, {WARM_RUNS} warm runs)"
    );
    println!(
        "  bare opencode, exec to listening line   median {:>8.1} ms",
        ms(bare_median)
    );
    println!(
        "  cold ocm up, whole process              median {:>8.1} ms",
        ms(cold_median)
    );
    println!(
        "  cold / bare                             {ratio:>15.3}   target <= 1.10  {}",
        verdict(ratio <= 1.10)
    );
    println!(
        "  warm ocm up, whole process              median {:>8.1} ms  p90 {:.1} ms   target < 20 ms  {}",
        ms(warm_median),
        ms(warm_p90),
        verdict(warm_median < Duration::from_millis(20))
    );
    println!(
        "  ocm peak resident memory                cold {:.1} MiB, warm {:.1} MiB",
        max(&cold_rss) as f64 / 1024.0,
        max(&warm_rss) as f64 / 1024.0
    );
    crate::chaos::kill_figures(&ocm, &bin, crate::chaos::KILLS)?.print();
    crate::chaos::idle_figures(&ocm, &bin, 5, Duration::from_secs(60))?.print();
    crate::bench_turns::run(&ocm)
}

/// Runs `command` to completion; returns its wall time from spawn to exit,
/// its peak resident memory in KiB (from wait4) and its stdout.
pub(crate) fn timed(command: &mut Command) -> Result<(Duration, u64, String), String> {
    use std::io::Read;
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let (status, rss_kib) = wait4(child.id());
    let elapsed = started.elapsed();
    if status != 0 {
        return Err(format!(
            "{command:?} failed (wait status {status}):\n{stdout}{stderr}"
        ));
    }
    Ok((elapsed, rss_kib, stdout))
}

/// Waits for `pid` and returns its wait status and peak RSS in KiB.
fn wait4(pid: u32) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    let waited = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if waited < 0 {
        return (-1, 0);
    }
    (status, usage.ru_maxrss.max(0) as u64)
}

fn run_quiet(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn max(samples: &[u64]) -> u64 {
    samples.iter().copied().max().unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
