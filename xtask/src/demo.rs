//! `cargo xtask demo`: ocm's main job end to end on a scratch project.
//!
//! `ocm up` starts the real opencode for a scratch project, configured with
//! the offline mock model; a prompt goes through the typed API; `ocm status`
//! shows the server; `ocm down` stops it and nothing is left running.

use std::path::Path;
use std::time::Instant;

use crate::{cargo, step, target_dir};

pub fn run() -> Result<(), String> {
    crate::install_opencode()?;
    step("build ocm", cargo().args(["build", "--quiet", "-p", "ocm"]))?;
    let ocm = target_dir().join("debug").join("ocm");
    let bed = e2e::TestBed::with_script(e2e::Script::reply(
        "Hello from the offline model: the server is up and answering.",
    ));
    let project = bed.project.clone();
    println!("\nproject:  {}", project.display());
    println!("model:    mock-llm at {}", bed.mock.base_url());
    println!("state:    {}\n", bed.state_dir.display());

    show(&ocm, &bed, &["up"], &project)?;
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
    show(&ocm, &bed, &["down"], &project)?;
    let left = bed.opencode_pids();
    if !left.is_empty() {
        return Err(format!(
            "opencode processes still running after ocm down: {left:?}"
        ));
    }
    println!("\nno opencode process is left running");
    Ok(())
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
