//! How results look: one human line or block, or one JSON value.
//!
//! Every JSON object that reports on a project (the one object of `up`,
//! `restart`, `down`, `destroy`, `status`, `url`, `port` and `logs`, each
//! entry of `ls`, each project listed by `gc`) carries `project`, `url`,
//! `port`, `pid`, `status`, `healthy`, `startedAt` and `logPath` (null when
//! unknown), so scripts can read every command's output the same way.
//! `port` is always the recorded server's port (null when none was started
//! or it was stopped; a dead server's last port otherwise, see `status`);
//! the deterministic port is `projectPort`. Errors are
//! `{"error", "hint", "exitCode"}`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use manager::{GcReport, ServerInfo, ServerState, ServerStatus, StopKind, StopReport};
use serde_json::{Map, Value, json};

/// `ocm up`/`restart` as JSON: the server plus `elapsedMs` (how long the
/// call took) and `uptimeSeconds`.
pub fn server_json(info: &ServerInfo, elapsed: Duration) -> Value {
    let mut value = to_object(info);
    value.insert("elapsedMs".into(), json!(elapsed.as_millis() as u64));
    value.insert(
        "uptimeSeconds".into(),
        json!(info.uptime().map(|d| d.as_secs())),
    );
    Value::Object(value)
}

/// `ocm up`/`restart` for humans: `ready at URL (pid N) in 1.31 s`, or
/// `running at URL (pid N), up 5m` for a reused server.
pub fn server_line(info: &ServerInfo, elapsed: Duration) -> String {
    let auth = if info.has_auth() {
        ", password required"
    } else {
        ""
    };
    if info.reused {
        let up = info
            .uptime()
            .map(|d| format!(", up {}", duration_short(d)))
            .unwrap_or_default();
        format!("running at {} (pid {}){up}{auth}", info.url, info.pid)
    } else {
        format!(
            "ready at {} (pid {}) in {:.2} s{auth}",
            info.url,
            info.pid,
            elapsed.as_secs_f64()
        )
    }
}

/// `ocm status`/`ls` entries as JSON, plus `projectPort` (the deterministic
/// port) when it can be computed and `projectExists` (false when the
/// project folder was deleted, perhaps while its server runs).
pub fn status_json(status: &ServerStatus) -> Value {
    Value::Object(status_object(status))
}

fn status_object(status: &ServerStatus) -> Map<String, Value> {
    let mut value = to_object(status);
    value.insert("projectPort".into(), json!(status.project_port));
    value.insert("projectExists".into(), json!(status.project.is_dir()));
    value
}

/// `ocm status` for humans: a block of `name value` lines.
pub fn status_block(status: &ServerStatus) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    rows.push(("project", status.project.display().to_string()));
    let state = match (status.status, &status.detail) {
        (ServerState::Running, _) => "running (healthy)".to_string(),
        (state, Some(detail)) => format!("{state}: {detail}"),
        (state, None) => state.to_string(),
    };
    rows.push(("status", state));
    let live = matches!(status.status, ServerState::Running | ServerState::Unhealthy);
    if live {
        if let Some(url) = &status.url {
            rows.push(("url", url.clone()));
        }
        if let Some(pid) = status.pid {
            rows.push(("pid", pid.to_string()));
        }
        if let Some(seconds) = status.uptime_seconds {
            let since = status
                .started_at
                .as_deref()
                .map(|s| format!(" (since {s})"))
                .unwrap_or_default();
            rows.push((
                "uptime",
                format!("{}{since}", duration_long(Duration::from_secs(seconds))),
            ));
        }
        if let Some(bytes) = status.resident_memory_bytes {
            rows.push(("memory", bytes_human(bytes)));
        }
        if let Some(version) = &status.version {
            rows.push(("version", version.clone()));
        }
    } else {
        if let Some(port) = status.project_port {
            rows.push(("port", format!("{port} (the project's port)")));
        }
        if let (Some(url), Some(pid)) = (&status.url, status.pid) {
            rows.push(("last run", format!("{url} (pid {pid})")));
        }
    }
    rows.extend(crate::supervise::status_rows(status));
    rows.push(("log", status.log_path.display().to_string()));
    rows.iter()
        .map(|(name, value)| format!("{name:<8} {value}\n"))
        .collect()
}

/// `ocm ls` for humans: a table, or a line saying there is nothing.
pub fn list_table(all: &[ServerStatus]) -> String {
    if all.is_empty() {
        return "no projects (start one with `ocm up`)\n".to_string();
    }
    let mut rows = vec![[
        "STATUS".to_string(),
        "PORT".into(),
        "PID".into(),
        "UPTIME".into(),
        "PROJECT".into(),
    ]];
    for status in all {
        let live = matches!(status.status, ServerState::Running | ServerState::Unhealthy);
        let dash = || "-".to_string();
        rows.push([
            status.status.to_string(),
            status
                .port
                .filter(|_| live)
                .map_or_else(dash, |p| p.to_string()),
            status
                .pid
                .filter(|_| live)
                .map_or_else(dash, |p| p.to_string()),
            status
                .uptime_seconds
                .map_or_else(dash, |s| duration_short(Duration::from_secs(s))),
            status.project.display().to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (i, width) in widths.iter().enumerate() {
            out.push_str(&format!("{:<width$}  ", row[i]));
        }
        out.push_str(&row[4]);
        out.push('\n');
    }
    out
}

/// `ocm down`/`destroy` as JSON: the status after the stop, plus what the
/// stop did: `wasRunning`, `stopped` (`terminated`, `killed`,
/// `already-gone` or null), `stoppedPid`, `orphansStopped`, `leftAlone`.
pub fn stop_json(after: &ServerStatus, report: &StopReport) -> Value {
    let mut value = status_object(after);
    let stop = to_object(report);
    value.insert("wasRunning".into(), json!(was_running(report)));
    value.insert(
        "stopped".into(),
        stop.get("stopped").cloned().unwrap_or(Value::Null),
    );
    value.insert("stoppedPid".into(), json!(report.pid));
    value.insert("orphansStopped".into(), json!(report.orphans_stopped));
    value.insert("leftAlone".into(), json!(report.left_alone));
    Value::Object(value)
}

fn was_running(report: &StopReport) -> bool {
    matches!(
        report.stopped,
        Some(StopKind::ExitedOnTerm) | Some(StopKind::Killed)
    ) || !report.orphans_stopped.is_empty()
}

/// `ocm down` for humans: what was stopped, or that nothing was running.
pub fn stop_lines(report: &StopReport) -> Vec<String> {
    let mut lines = Vec::new();
    let at = report
        .url
        .as_ref()
        .map(|u| format!(" at {u}"))
        .unwrap_or_default();
    match (report.pid, report.stopped) {
        (Some(pid), Some(StopKind::ExitedOnTerm)) => {
            lines.push(format!("stopped the server{at} (pid {pid})"));
        }
        (Some(pid), Some(StopKind::Killed)) => lines.push(format!(
            "killed the server{at} (pid {pid}): it ignored SIGTERM"
        )),
        (Some(pid), Some(StopKind::AlreadyGone)) => {
            lines.push(format!("the server (pid {pid}) had already exited"));
        }
        _ => {}
    }
    if !report.orphans_stopped.is_empty() {
        lines.push(format!(
            "stopped unrecorded server(s) of this project: pid {}",
            join(&report.orphans_stopped)
        ));
    }
    if lines.is_empty() {
        lines.push(format!(
            "not running: no server for {}",
            report.project.display()
        ));
    }
    lines
}

/// `ocm gc` for humans.
pub fn gc_lines(report: &GcReport) -> Vec<String> {
    let mut lines = Vec::new();
    for dir in &report.removed {
        lines.push(format!("removed {}", dir.display()));
    }
    if !report.orphans_stopped.is_empty() {
        lines.push(format!(
            "stopped unrecorded server(s): pid {}",
            join(&report.orphans_stopped)
        ));
    }
    for status in &report.project_gone {
        lines.push(format!(
            "left running: {} (pid {}) serves {}, which no longer exists; `ocm down {}` stops it",
            status.url.as_deref().unwrap_or("?"),
            status.pid.map_or_else(|| "?".into(), |p| p.to_string()),
            status.project.display(),
            crate::error::shell_word(&status.project.display().to_string()),
        ));
    }
    for dir in &report.busy {
        lines.push(format!(
            "skipped {}: another ocm is working on it",
            dir.display()
        ));
    }
    for record in &report.unreadable {
        lines.push(format!(
            "left {} alone: it cannot be read (`ocm ls` says why)",
            record.display()
        ));
    }
    if lines.is_empty() {
        lines.push("nothing to clean".into());
    }
    lines
}

/// `ocm gc --json`: the report's shape (`removed`, `projectGone`,
/// `orphansStopped`, `busy`, `unreadable`), with each project a status
/// object plus its `stateDir` (and, for `unreadable`, its `recordPath`).
/// `before` is the list taken before gc ran: removed, busy and unreadable
/// projects are reported as they were then (a state folder not in it, such
/// as one without a record, is reported as a stopped project whose path is
/// unknown).
pub fn gc_json(report: &GcReport, before: &[ServerStatus]) -> Value {
    let as_listed = |dir: &PathBuf| match before.iter().find(|s| s.state_dir == *dir) {
        Some(status) => with_state_dir(status),
        None => unlisted(dir),
    };
    json!({
        "removed": report.removed.iter().map(as_listed).collect::<Vec<_>>(),
        "projectGone": report.project_gone.iter().map(with_state_dir).collect::<Vec<_>>(),
        "orphansStopped": report.orphans_stopped,
        "busy": report.busy.iter().map(as_listed).collect::<Vec<_>>(),
        "unreadable": report.unreadable.iter().map(|record| {
            let dir = record.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut value = as_listed(&dir);
            value["recordPath"] = json!(record);
            value
        }).collect::<Vec<_>>(),
    })
}

fn with_state_dir(status: &ServerStatus) -> Value {
    let mut value = status_object(status);
    value.insert("stateDir".into(), json!(status.state_dir));
    Value::Object(value)
}

/// A state folder the list before gc did not see: nothing is known of its
/// project, and nothing of it runs (gc removed it).
fn unlisted(dir: &Path) -> Value {
    json!({
        "project": null,
        "status": ServerState::Stopped,
        "healthy": false,
        "url": null,
        "port": null,
        "pid": null,
        "startedAt": null,
        "logPath": dir.join("server.log"),
        "version": null,
        "uptimeSeconds": null,
        "residentMemoryBytes": null,
        "detail": null,
        "projectPort": null,
        "projectExists": null,
        "stateDir": dir,
    })
}

/// `ocm port --json`: the project's status (`port` is the server's port,
/// null when none runs) plus `projectPort`, the deterministic port, and
/// `projectHash`.
pub fn port_json(status: &ServerStatus, project_port: u16, hash: &str) -> Value {
    let mut value = status_object(status);
    value.insert("projectPort".into(), json!(project_port));
    value.insert("projectHash".into(), json!(hash));
    Value::Object(value)
}

/// `ocm logs --json`: the project's status plus `lines`; `logPath` is the
/// log the lines were read from.
pub fn logs_json(status: &ServerStatus, log: &Path, text: &str) -> Value {
    let mut value = status_object(status);
    value.insert("logPath".into(), json!(log));
    value.insert("lines".into(), json!(text.lines().collect::<Vec<_>>()));
    Value::Object(value)
}

/// An error as JSON, for `--json` callers: `{"error": ..., "exitCode": N}`.
pub fn error_json(message: &str, hint: Option<&str>, exit_code: i32) -> Value {
    json!({ "error": message, "hint": hint, "exitCode": exit_code })
}

fn to_object(value: &impl serde::Serialize) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `12s`, `5m`, `2h 3m`, `3d 4h`: the two largest units.
pub fn duration_short(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{seconds}s")
    }
}

/// `5m 12s`, `2h 3m 0s`: down to seconds.
pub fn duration_long(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h {minutes}m")
    } else if hours > 0 {
        format!("{hours}h {minutes}m {seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `381.2 MB` (decimal units, like `ps` users expect from a glance).
pub fn bytes_human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A status as the manager reports it: a stopped server has no URL,
    /// port, pid or start time any more.
    fn status(state: ServerState) -> ServerStatus {
        let last_run = state != ServerState::Stopped;
        ServerStatus {
            project: "/work/p".into(),
            project_port: Some(manager::project(Path::new("/work/p")).unwrap().port),
            status: state,
            healthy: state == ServerState::Running,
            url: last_run.then(|| "http://127.0.0.1:28412".into()),
            port: last_run.then_some(28412),
            pid: last_run.then_some(1234),
            started_at: last_run.then(|| "2026-01-01T00:00:00.000Z".into()),
            log_path: "/state/servers/h/server.log".into(),
            version: Some("1.18.33".into()),
            uptime_seconds: (state == ServerState::Running).then_some(312),
            resident_memory_bytes: (state == ServerState::Running).then_some(381_234_567),
            detail: (state == ServerState::Dead).then(|| "process 1234 is gone".into()),
            state_dir: PathBuf::from("/state/servers/h"),
            supervisor: None,
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration_short(Duration::from_secs(12)), "12s");
        assert_eq!(duration_short(Duration::from_secs(300)), "5m");
        assert_eq!(duration_short(Duration::from_secs(7380)), "2h 3m");
        assert_eq!(
            duration_short(Duration::from_secs(4 * 86400 + 3600)),
            "4d 1h"
        );
        assert_eq!(duration_long(Duration::from_secs(312)), "5m 12s");
        assert_eq!(bytes_human(999), "999 B");
        assert_eq!(bytes_human(381_234_567), "381.2 MB");
        assert_eq!(bytes_human(2_500_000_000), "2.5 GB");
    }

    #[test]
    fn json_carries_the_common_fields() {
        for state in [
            ServerState::Running,
            ServerState::Stopped,
            ServerState::Dead,
            ServerState::Unhealthy,
        ] {
            let value = status_json(&status(state));
            for key in COMMON_KEYS.iter().chain(&["projectPort"]) {
                assert!(value.get(key).is_some(), "{key} missing in {value}");
            }
            assert_eq!(value["status"], state.to_string());
        }
        let report = StopReport {
            project: "/work/p".into(),
            url: None,
            pid: Some(1234),
            stopped: Some(StopKind::ExitedOnTerm),
            orphans_stopped: vec![],
            leftovers_stopped: vec![],
            left_alone: None,
        };
        let value = stop_json(&status(ServerState::Stopped), &report);
        assert_eq!(value["wasRunning"], true);
        assert_eq!(value["stopped"], "terminated");
        assert_eq!(value["stoppedPid"], 1234);
        assert_eq!(value["status"], "stopped");
    }

    use crate::json_keys::COMMON_KEYS;

    fn assert_common_keys(value: &Value) {
        for key in COMMON_KEYS {
            assert!(value.get(key).is_some(), "{key} missing in {value}");
        }
    }

    #[test]
    fn port_and_logs_json_are_status_objects() {
        let running = status(ServerState::Running);
        let value = port_json(&running, 28999, "abc123");
        assert_common_keys(&value);
        assert_eq!(value["port"], 28412, "the server's port: {value}");
        assert_eq!(value["projectPort"], 28999, "{value}");
        assert_eq!(value["projectHash"], "abc123", "{value}");
        assert_eq!(value["status"], "running", "{value}");
        let stopped = port_json(&status(ServerState::Stopped), 28999, "abc123");
        assert_common_keys(&stopped);
        assert_eq!(stopped["status"], "stopped", "{stopped}");
        assert_eq!(
            stopped["port"],
            Value::Null,
            "no server, no port: {stopped}"
        );
        assert_eq!(stopped["pid"], Value::Null, "{stopped}");
        assert_eq!(stopped["projectPort"], 28999, "{stopped}");

        let value = logs_json(&running, Path::new("/state/servers/h/server.log"), "a\nb\n");
        assert_common_keys(&value);
        assert_eq!(value["lines"], json!(["a", "b"]), "{value}");
        assert_eq!(value["logPath"], "/state/servers/h/server.log", "{value}");
        assert_eq!(value["pid"], 1234, "{value}");
    }

    #[test]
    fn gc_json_lists_projects_as_status_objects() {
        let mut dead = status(ServerState::Dead);
        dead.state_dir = "/state/servers/dead".into();
        let mut gone = status(ServerState::Running);
        gone.project = "/deleted/p".into();
        gone.state_dir = "/state/servers/gone".into();
        let report = GcReport {
            removed: vec!["/state/servers/dead".into(), "/state/servers/new".into()],
            project_gone: vec![gone.clone()],
            orphans_stopped: vec![99],
            leftovers_stopped: vec![],
            busy: vec![],
            unreadable: vec!["/state/servers/gone/server.json".into()],
            failed: vec![],
        };
        let value = gc_json(&report, &[dead, gone]);
        let removed = value["removed"].as_array().expect("removed is an array");
        assert_eq!(removed.len(), 2, "{value}");
        for entry in removed
            .iter()
            .chain(value["projectGone"].as_array().unwrap())
        {
            assert_common_keys(entry);
            assert!(entry["stateDir"].is_string(), "{entry}");
        }
        assert_eq!(removed[0]["project"], "/work/p", "{value}");
        assert_eq!(removed[0]["status"], "dead", "{value}");
        assert_eq!(removed[0]["stateDir"], "/state/servers/dead", "{value}");
        // Not in the list taken before gc: its project is unknown.
        assert_eq!(removed[1]["project"], Value::Null, "{value}");
        assert_eq!(removed[1]["stateDir"], "/state/servers/new", "{value}");
        assert_eq!(value["projectGone"][0]["project"], "/deleted/p", "{value}");
        assert_eq!(value["projectGone"][0]["projectExists"], false, "{value}");
        assert_eq!(value["orphansStopped"], json!([99]), "{value}");
        assert_eq!(value["busy"], json!([]), "{value}");
        let unreadable = &value["unreadable"][0];
        assert_common_keys(unreadable);
        assert_eq!(unreadable["stateDir"], "/state/servers/gone", "{value}");
        assert_eq!(
            unreadable["recordPath"], "/state/servers/gone/server.json",
            "{value}"
        );
    }

    #[test]
    fn human_status_and_list() {
        let block = status_block(&status(ServerState::Running));
        assert!(block.contains("status   running (healthy)\n"), "{block}");
        assert!(block.contains("uptime   5m 12s"), "{block}");
        assert!(block.contains("memory   381.2 MB"), "{block}");
        let dead = status_block(&status(ServerState::Dead));
        assert!(dead.contains("dead: process 1234 is gone"), "{dead}");
        assert!(
            dead.contains("last run http://127.0.0.1:28412 (pid 1234)"),
            "{dead}"
        );
        let stopped = status_block(&status(ServerState::Stopped));
        assert!(stopped.contains("status   stopped\n"), "{stopped}");
        let project_port = manager::project(Path::new("/work/p")).unwrap().port;
        assert!(
            stopped.contains(&format!("port     {project_port} (the project's port)")),
            "{stopped}"
        );
        assert!(
            !stopped.contains("last run") && !stopped.contains("pid"),
            "{stopped}"
        );
        let table = list_table(&[status(ServerState::Running), status(ServerState::Stopped)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("STATUS"), "{table}");
        assert!(
            lines[1].contains("28412") && lines[1].ends_with("/work/p"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("stopped") && !lines[2].contains("1234"),
            "{table}"
        );
        assert!(list_table(&[]).contains("no projects"));
    }

    #[test]
    fn stop_lines_say_what_happened() {
        let mut report = StopReport {
            project: "/work/p".into(),
            url: None,
            pid: None,
            stopped: None,
            orphans_stopped: vec![],
            leftovers_stopped: vec![],
            left_alone: None,
        };
        assert_eq!(
            stop_lines(&report),
            vec!["not running: no server for /work/p"]
        );
        report.pid = Some(7);
        report.stopped = Some(StopKind::Killed);
        report.url = Some("http://x".into());
        assert!(stop_lines(&report)[0].starts_with("killed the server at http://x"));
        assert_eq!(gc_lines(&GcReport::default()), vec!["nothing to clean"]);
        let unreadable = GcReport {
            unreadable: vec!["/s/servers/h/server.json".into()],
            ..GcReport::default()
        };
        assert_eq!(
            gc_lines(&unreadable),
            vec!["left /s/servers/h/server.json alone: it cannot be read (`ocm ls` says why)"]
        );
    }
}
