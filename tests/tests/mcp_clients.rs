//! `ocm mcp` driven by the real MCP clients people use, pinned and
//! installed by `cargo xtask mcp-clients`: the official Python SDK (2.3.0
//! in its default mode, which probes `server/discover` and speaks
//! 2026-07-28, and in legacy mode; 1.30.0) and the MCP Inspector CLI
//! (0.15.0). Each lists the tools, starts a project's server on the real
//! opencode, reads its status and stops it. A missing client fails the
//! test with how to install it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::mcp_clients::{self, PYTHON_SDK, PYTHON_SDK_1};
use e2e::{TestBed, e2e_skipped, ocm_bin};
use serde_json::Value;

/// The longest one client run may take (three tool calls, a start among
/// them, plus the interpreter's start-up).
const CLIENT_DEADLINE: Duration = Duration::from_secs(180);

const TOOLS: [&str; 11] = [
    "opencode_start",
    "opencode_status",
    "opencode_stop",
    "opencode_restart",
    "opencode_destroy",
    "opencode_list",
    "opencode_prompt",
    "opencode_turn",
    "opencode_abort",
    "opencode_sessions",
    "opencode_answer",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/py_client.py")
}

fn run(command: Command) -> Output {
    mcp_clients::run_client(command, CLIENT_DEADLINE)
}

/// Runs the Python client with `python` (a venv's) and returns its summary.
fn python_client(bed: &TestBed, python: &Path, extra: &[&str]) -> Value {
    let mut command = bed.command(python);
    command
        .arg(script())
        .arg("--ocm")
        .arg(ocm_bin())
        .arg("--project")
        .arg(&bed.project)
        .args(extra);
    let output = run(command);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the client's summary is not JSON ({e}): {stdout}\n{stderr}"))
}

/// What every client run must show.
fn check_summary(bed: &TestBed, summary: &Value) {
    let names: Vec<&str> = summary["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for tool in TOOLS {
        assert!(names.contains(&tool), "{tool} not listed: {summary}");
    }
    let start = &summary["start"];
    assert_eq!(start["isError"], false, "{summary}");
    assert_eq!(start["structured"]["status"], "running", "{summary}");
    let url = start["structured"]["url"].as_str().expect("a URL");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let text: Value = serde_json::from_str(start["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, start["structured"], "the text block is the same JSON");
    let progress = summary["progress"].as_array().expect("progress");
    assert!(
        !progress.is_empty(),
        "no progress reached the client: {summary}"
    );
    let values: Vec<f64> = progress
        .iter()
        .filter_map(|p| p["progress"].as_f64())
        .collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
    assert_eq!(
        summary["status"]["structured"]["status"], "running",
        "{summary}"
    );
    assert_eq!(summary["status"]["structured"]["healthy"], true);
    let prompt = &summary["prompt"];
    assert_eq!(prompt["isError"], false, "{summary}");
    assert_eq!(prompt["structured"]["status"], "done", "{summary}");
    assert_eq!(
        prompt["structured"]["reply"], "echo: hello from python",
        "{summary}"
    );
    assert_eq!(summary["stop"]["isError"], false);
    assert_eq!(
        summary["stop"]["structured"]["wasRunning"], true,
        "{summary}"
    );
    assert!(bed.opencode_pids().is_empty(), "the server was not stopped");
}

fn python(version: &str) -> PathBuf {
    mcp_clients::python_with_sdk(version).unwrap_or_else(|message| panic!("{message}"))
}

#[test]
fn python_sdk_2_default_mode_speaks_the_stateless_revision() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let summary = python_client(&bed, &python(PYTHON_SDK), &["--mode", "auto"]);
    assert_eq!(summary["sdk"], PYTHON_SDK);
    assert_eq!(summary["protocolVersion"], "2026-07-28", "{summary}");
    check_summary(&bed, &summary);
}

#[test]
fn python_sdk_2_legacy_mode_does_the_handshake() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let summary = python_client(&bed, &python(PYTHON_SDK), &["--mode", "legacy"]);
    assert_eq!(summary["protocolVersion"], "2025-11-25", "{summary}");
    check_summary(&bed, &summary);
}

#[test]
fn python_sdk_1() {
    if e2e_skipped() {
        return;
    }
    let bed = TestBed::new();
    let summary = python_client(&bed, &python(PYTHON_SDK_1), &[]);
    assert_eq!(summary["sdk"], PYTHON_SDK_1);
    assert_eq!(summary["protocolVersion"], "2025-11-25", "{summary}");
    check_summary(&bed, &summary);
}

/// One Inspector CLI run (`--cli ocm mcp --method ...`): its JSON output.
fn inspector(bed: &TestBed, bin: &Path, method_args: &[&str]) -> Value {
    let mut command = bed.command(bin);
    command.arg("--cli");
    // The Inspector gives the server only a few variables of its own
    // environment (HOME, PATH...): the bed's go with -e.
    for (key, value) in bed.child_env() {
        command.arg("-e").arg(format!("{key}={value}"));
    }
    command.arg(ocm_bin()).arg("mcp").args(method_args);
    let began = Instant::now();
    let output = run(command);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Inspector failed ({}) after {:?}:\nstdout: {stdout}\nstderr: {}",
        output.status,
        began.elapsed(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the Inspector's output is not JSON ({e}): {stdout}"))
}

#[test]
fn the_inspector_cli() {
    if e2e_skipped() {
        return;
    }
    let bin = mcp_clients::inspector_cli().unwrap_or_else(|message| panic!("{message}"));
    let bed = TestBed::new();
    let project = format!("project={}", bed.project.display());
    let list = inspector(&bed, &bin, &["--method", "tools/list"]);
    let names: Vec<&str> = list["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tool in TOOLS {
        assert!(names.contains(&tool), "{tool} not listed: {list}");
    }
    let call = |tool: &str| {
        inspector(
            &bed,
            &bin,
            &[
                "--method",
                "tools/call",
                "--tool-name",
                tool,
                "--tool-arg",
                &project,
            ],
        )
    };
    let start = call("opencode_start");
    assert_eq!(start["isError"], false, "{start}");
    assert_eq!(start["structuredContent"]["status"], "running", "{start}");
    let status = call("opencode_status");
    assert_eq!(status["structuredContent"]["healthy"], true, "{status}");
    let stop = call("opencode_stop");
    assert_eq!(stop["structuredContent"]["wasRunning"], true, "{stop}");
    assert!(bed.opencode_pids().is_empty());
}
