//! `cargo xtask demo`: ocm's main job end to end on a scratch project.
//!
//! `ocm up` starts the real opencode for a scratch project, configured with
//! the offline mock model; a prompt goes through the typed API; `ocm status`
//! shows the server; `ocm down` stops it and nothing is left running.
//!
//! A first run installs opencode and compiles ocm, which takes a while:
//! every step says on stderr what it is doing before it starts (`demo:
//! building ocm ...`) and how long it took when it is done, so the demo is
//! never silent for long.

use std::path::Path;
use std::time::Instant;

use crate::{cargo, target_dir, workspace_root};

pub fn run() -> Result<(), String> {
    let began = Instant::now();
    let bin = timed(
        &format!("opencode-ai@{}", e2e::OPENCODE_VERSION),
        "npm installs it into the cache the first time, typically under a minute",
        crate::install_opencode,
    )?;
    eprintln!("demo: opencode is {}", bin.display());
    timed(
        "building ocm",
        "cargo build -p ocm; seconds, as xtask's build compiled most of it",
        || {
            let status = cargo()
                .args(["build", "-p", "ocm"])
                .current_dir(workspace_root())
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("cargo build -p ocm failed ({status})"))
            }
        },
    )?;
    let ocm = target_dir().join("debug").join("ocm");
    let bed = timed(
        "starting the offline model",
        "mock-llm, in a scratch folder with its own HOME and state",
        || {
            Ok(e2e::TestBed::with_script(e2e::Script::reply(
                "Hello from the offline model: the server is up and answering.",
            )))
        },
    )?;
    let project = bed.project.clone();
    println!("\nproject:  {}", project.display());
    println!("model:    mock-llm at {}", bed.mock.base_url());
    println!("state:    {}\n", bed.state_dir.display());

    timed(
        "starting the server",
        "ocm up: opencode's first start",
        || show(&ocm, &bed, &["up"], &project),
    )?;
    let url = capture(&ocm, &bed, &["url"], &project)?;

    let client = opencode_api::Client::builder(&url)
        .directory(&project)
        .build()
        .map_err(|e| format!("client for {url}: {e}"))?;
    let session = client
        .create_session(&opencode_api::NewSession::titled("ocm demo"))
        .map_err(|e| format!("create a session: {e}"))?;
    println!("\n$ prompt {} \"Say hello.\"", session.id);
    let started = Instant::now();
    let reply = client
        .prompt(
            &session.id,
            &opencode_api::PromptRequest::text("Say hello."),
        )
        .map_err(|e| format!("prompt: {e}"))?;
    let text = reply.text();
    println!(
        "reply in {:.2} s: {text:?}\n",
        started.elapsed().as_secs_f64()
    );
    if text.is_empty() {
        return Err("the reply has no text".into());
    }

    show(&ocm, &bed, &["status"], &project)?;
    timed("stopping the server", "ocm down", || {
        show(&ocm, &bed, &["down"], &project)
    })?;
    let left = bed.opencode_pids();
    if !left.is_empty() {
        return Err(format!(
            "opencode processes still running after ocm down: {left:?}"
        ));
    }
    println!("\nno opencode process is left running");
    eprintln!("demo: done in {:.1} s", began.elapsed().as_secs_f64());
    Ok(())
}

/// Runs one step, saying on stderr what it is (`what`, with `how`) before
/// it starts and how long it took when it is done.
fn timed<T>(what: &str, how: &str, step: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    eprintln!("demo: {what} ({how}) ...");
    let started = Instant::now();
    let result = step();
    let took = started.elapsed().as_secs_f64();
    match &result {
        Ok(_) => eprintln!("demo: {what}: done ({took:.1} s)"),
        Err(_) => eprintln!("demo: {what}: FAILED ({took:.1} s)"),
    }
    result
}

/// Runs `ocm ARGS PROJECT` with its output shown.
fn show(ocm: &Path, bed: &e2e::TestBed, args: &[&str], project: &Path) -> Result<(), String> {
    println!("$ ocm {} {}", args.join(" "), project.display());
    let status = bed
        .command(ocm)
        .args(args)
        .arg(project)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", ocm.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ocm {} failed ({status})", args.join(" ")))
    }
}

/// Runs `ocm ARGS PROJECT` and returns its trimmed stdout.
fn capture(
    ocm: &Path,
    bed: &e2e::TestBed,
    args: &[&str],
    project: &Path,
) -> Result<String, String> {
    let output: std::process::Output = bed
        .command(ocm)
        .args(args)
        .arg(project)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ocm.display()))?;
    if !output.status.success() {
        return Err(format!(
            "ocm {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}
