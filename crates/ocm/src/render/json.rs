//! The one JSON shape: every object about a project has exactly the keys
//! of `json_keys::COMMON_KEYS`, made here from a [`ProjectView`] key by key
//! (not by serializing a manager type, whose fields may grow), plus the
//! command's additions (`json_keys::EXTRA_KEYS`).
//!
//! `port` is always the recorded server's port (null when none was started
//! or it was stopped; a dead server's last port otherwise, see `status`);
//! the deterministic port is `projectPort`. `auth` says where the password
//! is (`generated`: in `passwordFile`; `env`: the `OPENCODE_SERVER_PASSWORD`
//! it was started with; null: none), never the password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use manager::{
    GcReport, ProjectPaths, ServerInfo, ServerState, ServerStatus, StopKind, StopReport,
};
use serde_json::{Map, Value, json};

use crate::error::path_json;
use crate::view::ProjectView;

/// The common keys of a project.
pub fn project_object(view: &ProjectView) -> Map<String, Value> {
    let s = &view.status;
    let mut m = Map::new();
    m.insert("project".into(), path_json(&s.project));
    m.insert("projectExists".into(), json!(s.project.is_dir()));
    m.insert("projectPort".into(), json!(s.project_port));
    m.insert("stateDir".into(), path_json(&s.state_dir));
    m.insert("status".into(), json!(s.status.to_string()));
    m.insert("healthy".into(), json!(s.healthy));
    m.insert("detail".into(), json!(s.detail));
    m.insert("url".into(), json!(s.url));
    m.insert("port".into(), json!(s.port));
    m.insert("pid".into(), json!(s.pid));
    m.insert("startedAt".into(), json!(s.started_at));
    m.insert("uptimeSeconds".into(), json!(s.uptime_seconds));
    m.insert("version".into(), json!(s.version));
    m.insert("residentMemoryBytes".into(), json!(s.resident_memory_bytes));
    m.insert("logPath".into(), path_json(&s.log_path));
    m.insert("auth".into(), json!(view.auth.name()));
    m.insert(
        "passwordFile".into(),
        view.auth.file().map_or(Value::Null, |f| path_json(f)),
    );
    // Only while a supervisor watches the project (`ocm supervise`).
    if let Some(info) = &s.supervisor {
        m.insert(
            "supervisor".into(),
            serde_json::to_value(info).unwrap_or(Value::Null),
        );
    }
    m
}

/// `status`, `url` and each entry of `ls`: the common keys only.
pub fn project_json(view: &ProjectView) -> Value {
    Value::Object(project_object(view))
}

/// `up`/`restart`: plus `reused`, `hostname` and `elapsedMs` (how long the
/// call took).
pub fn server_json(view: &ProjectView, info: &ServerInfo, elapsed: Duration) -> Value {
    let mut value = project_object(view);
    value.insert("reused".into(), json!(info.reused));
    value.insert("hostname".into(), json!(info.hostname));
    value.insert("elapsedMs".into(), json!(elapsed.as_millis() as u64));
    Value::Object(value)
}

/// `restart`'s `replaced`: the server it stopped (`{pid, url}`), read
/// before the restart; null when none was running.
pub fn replaced_json(before: &ServerStatus) -> Value {
    let live = matches!(before.status, ServerState::Running | ServerState::Unhealthy);
    match (live, before.pid) {
        (true, Some(pid)) => json!({ "pid": pid, "url": before.url }),
        _ => Value::Null,
    }
}

/// `down`: the status after the stop, plus what the stop did:
/// `wasRunning`, `stopped` (`terminated`, `killed`, `already-gone` or
/// null), `stoppedPid`, `orphansStopped`, `leftAlone`.
pub fn stop_json(after: &ProjectView, report: &StopReport) -> Value {
    let mut value = project_object(after);
    value.insert("wasRunning".into(), json!(was_running(report)));
    value.insert(
        "stopped".into(),
        json!(report.stopped.map(|kind| match kind {
            StopKind::AlreadyGone => "already-gone",
            StopKind::ExitedOnTerm => "terminated",
            StopKind::Killed => "killed",
        })),
    );
    value.insert("stoppedPid".into(), json!(report.pid));
    value.insert("orphansStopped".into(), json!(report.orphans_stopped));
    value.insert("leftoversStopped".into(), json!(report.leftovers_stopped));
    value.insert("leftAlone".into(), json!(report.left_alone));
    Value::Object(value)
}

/// `destroy`: `down`'s object plus `removed`, the state folder it deleted
/// (null when there was none).
pub fn destroy_json(after: &ProjectView, report: &StopReport, removed: Option<&Path>) -> Value {
    let mut value = stop_json(after, report);
    if let Some(object) = value.as_object_mut() {
        object.insert("removed".into(), removed.map_or(Value::Null, path_json));
    }
    value
}

pub fn was_running(report: &StopReport) -> bool {
    matches!(
        report.stopped,
        Some(StopKind::ExitedOnTerm) | Some(StopKind::Killed)
    ) || !report.orphans_stopped.is_empty()
}

/// `port`: plus `projectHash`.
pub fn port_json(view: &ProjectView, hash: &str) -> Value {
    let mut value = project_object(view);
    value.insert("projectHash".into(), json!(hash));
    Value::Object(value)
}

/// `logs`: plus `lines`, the log's last lines as they are (JSON escapes
/// them); `logPath` is the log they were read from.
pub fn logs_json(view: &ProjectView, log: &Path, text: &str) -> Value {
    let mut value = project_object(view);
    value.insert("logPath".into(), path_json(log));
    value.insert("lines".into(), json!(text.lines().collect::<Vec<_>>()));
    Value::Object(value)
}

/// `gc`: `{removed, projectGone, orphansStopped, busy, unreadable}`, each
/// project a project object plus `recordPath` (the unreadable record, null
/// elsewhere). `before` is the list taken before gc ran: removed, busy and
/// unreadable projects are reported as they were then (a state folder not
/// in it, such as one without a record, is a stopped project whose path
/// is unknown: `project` null).
pub fn gc_json(report: &GcReport, before: &[ProjectView], gone: &[ProjectView]) -> Value {
    let entry = |dir: &PathBuf, record: Option<&Path>| {
        let mut value = match before.iter().find(|v| v.status.state_dir == *dir) {
            Some(view) => project_object(view),
            None => unlisted(dir),
        };
        value.insert("recordPath".into(), record.map_or(Value::Null, path_json));
        Value::Object(value)
    };
    json!({
        "removed": report.removed.iter().map(|d| entry(d, None)).collect::<Vec<_>>(),
        "projectGone": gone.iter().map(|view| {
            let mut value = project_object(view);
            value.insert("recordPath".into(), Value::Null);
            Value::Object(value)
        }).collect::<Vec<_>>(),
        "orphansStopped": report.orphans_stopped,
        "leftoversStopped": report.leftovers_stopped,
        "busy": report.busy.iter().map(|d| entry(d, None)).collect::<Vec<_>>(),
        "unreadable": report.unreadable.iter().map(|record| {
            let dir = record.parent().map(Path::to_path_buf).unwrap_or_default();
            entry(&dir, Some(record))
        }).collect::<Vec<_>>(),
        "failed": report.failed.iter().map(|f| json!({
            "path": path_json(&f.path),
            "error": crate::escape::escape(&f.error),
        })).collect::<Vec<_>>(),
    })
}

/// A state folder the list before gc did not see: nothing is known of its
/// project, and nothing of it runs.
fn unlisted(dir: &Path) -> Map<String, Value> {
    let hash = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let root = dir.parent().and_then(Path::parent).unwrap_or(dir);
    let paths = ProjectPaths::new(root, hash);
    let project = manager::Project {
        path: PathBuf::new(),
        hash: hash.to_string(),
        port: 0,
    };
    let mut value = project_object(&ProjectView::stopped(&project, &paths));
    value.insert("project".into(), Value::Null);
    value.insert("projectExists".into(), Value::Null);
    value.insert("projectPort".into(), Value::Null);
    value.insert("stateDir".into(), path_json(dir));
    value
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::json_keys::{COMMON_KEYS, EXTRA_KEYS};
    use crate::render::tests::{status, view};
    use crate::view::Auth;

    fn keys(value: &Value) -> BTreeSet<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    /// The common keys plus `command`'s row.
    fn expected(command: &str) -> BTreeSet<&'static str> {
        let (_, extra) = EXTRA_KEYS.iter().find(|(c, _)| *c == command).unwrap();
        COMMON_KEYS.iter().chain(extra.iter()).copied().collect()
    }

    #[test]
    fn every_object_has_exactly_the_common_keys_plus_its_commands() {
        for state in [
            ServerState::Running,
            ServerState::Stopped,
            ServerState::Dead,
            ServerState::Unhealthy,
        ] {
            let value = project_json(&view(state));
            assert_eq!(keys(&value), expected("status"), "{value}");
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
        let value = stop_json(&view(ServerState::Stopped), &report);
        assert_eq!(keys(&value), expected("down"), "{value}");
        assert_eq!(value["wasRunning"], true);
        assert_eq!(value["stopped"], "terminated");
        assert_eq!(value["stoppedPid"], 1234);
        assert_eq!(value["status"], "stopped");
        let value = destroy_json(&view(ServerState::Stopped), &report, None);
        assert_eq!(keys(&value), expected("destroy"), "{value}");
        assert_eq!(value["removed"], Value::Null);
    }

    #[test]
    fn auth_says_where_the_password_is() {
        let mut generated = view(ServerState::Running);
        generated.auth = Auth::Generated("/state/servers/h/password".into());
        let value = project_json(&generated);
        assert_eq!(value["auth"], "generated");
        assert_eq!(value["passwordFile"], "/state/servers/h/password");
        let mut env = view(ServerState::Running);
        env.auth = Auth::Env;
        let value = project_json(&env);
        assert_eq!(value["auth"], "env");
        assert_eq!(value["passwordFile"], Value::Null);
        let value = project_json(&view(ServerState::Running));
        assert_eq!(value["auth"], Value::Null);
    }

    #[test]
    fn restart_says_what_it_replaced() {
        assert_eq!(
            replaced_json(&status(ServerState::Running)),
            json!({"pid": 1234, "url": "http://127.0.0.1:28412"})
        );
        assert_eq!(replaced_json(&status(ServerState::Dead)), Value::Null);
        assert_eq!(replaced_json(&status(ServerState::Stopped)), Value::Null);
    }

    #[test]
    fn port_and_logs_json_are_project_objects() {
        let running = view(ServerState::Running);
        let value = port_json(&running, "abc123");
        assert_eq!(keys(&value), expected("port"), "{value}");
        assert_eq!(value["port"], 28412, "the server's port: {value}");
        assert_eq!(value["projectHash"], "abc123", "{value}");
        assert_eq!(value["status"], "running", "{value}");
        let stopped = port_json(&view(ServerState::Stopped), "abc123");
        assert_eq!(stopped["status"], "stopped", "{stopped}");
        assert_eq!(
            stopped["port"],
            Value::Null,
            "no server, no port: {stopped}"
        );
        assert_eq!(stopped["pid"], Value::Null, "{stopped}");
        assert!(stopped["projectPort"].is_u64(), "{stopped}");

        let value = logs_json(&running, Path::new("/state/servers/h/server.log"), "a\nb\n");
        assert_eq!(keys(&value), expected("logs"), "{value}");
        assert_eq!(value["lines"], json!(["a", "b"]), "{value}");
        assert_eq!(value["logPath"], "/state/servers/h/server.log", "{value}");
        assert_eq!(value["pid"], 1234, "{value}");
    }

    #[test]
    fn gc_json_lists_projects_as_project_objects() {
        let mut dead = view(ServerState::Dead);
        dead.status.state_dir = "/state/servers/dead".into();
        let mut gone = view(ServerState::Running);
        gone.status.project = "/deleted/p".into();
        gone.status.state_dir = "/state/servers/gone".into();
        let report = GcReport {
            removed: vec!["/state/servers/dead".into(), "/state/servers/new".into()],
            project_gone: vec![gone.status.clone()],
            orphans_stopped: vec![99],
            leftovers_stopped: vec![],
            busy: vec![],
            unreadable: vec!["/state/servers/gone/server.json".into()],
            failed: vec![],
        };
        let value = gc_json(&report, &[dead, gone.clone()], &[gone]);
        let (_, top) = EXTRA_KEYS.iter().find(|(c, _)| *c == "gc").unwrap();
        assert_eq!(keys(&value), top.iter().copied().collect(), "{value}");
        let removed = value["removed"].as_array().expect("removed is an array");
        assert_eq!(removed.len(), 2, "{value}");
        let mut entry_keys = expected("gc entries");
        entry_keys.extend(COMMON_KEYS);
        for entry in removed
            .iter()
            .chain(value["projectGone"].as_array().unwrap())
            .chain(value["unreadable"].as_array().unwrap())
        {
            assert_eq!(keys(entry), entry_keys, "{entry}");
            assert!(entry["stateDir"].is_string(), "{entry}");
        }
        assert_eq!(removed[0]["project"], "/work/p", "{value}");
        assert_eq!(removed[0]["status"], "dead", "{value}");
        assert_eq!(removed[0]["stateDir"], "/state/servers/dead", "{value}");
        // Not in the list taken before gc: its project is unknown.
        assert_eq!(removed[1]["project"], Value::Null, "{value}");
        assert_eq!(removed[1]["stateDir"], "/state/servers/new", "{value}");
        assert_eq!(
            removed[1]["logPath"], "/state/servers/new/server.log",
            "{value}"
        );
        assert_eq!(value["projectGone"][0]["project"], "/deleted/p", "{value}");
        assert_eq!(value["projectGone"][0]["projectExists"], false, "{value}");
        assert_eq!(value["orphansStopped"], json!([99]), "{value}");
        assert_eq!(value["busy"], json!([]), "{value}");
        let unreadable = &value["unreadable"][0];
        assert_eq!(unreadable["stateDir"], "/state/servers/gone", "{value}");
        assert_eq!(
            unreadable["recordPath"], "/state/servers/gone/server.json",
            "{value}"
        );
    }
}
