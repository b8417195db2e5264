//! How results look: human lines and blocks here, the one JSON shape in
//! [`json`]. Everything ocm did not write itself (paths, URLs and versions
//! from records, server messages, command lines) goes through [`escape`],
//! so it cannot break a row or drive the terminal.

use std::path::Path;
use std::time::Duration;

use manager::{GcReport, ServerInfo, ServerState, ServerStatus, StopKind, StopReport};

use crate::error::shell_word;
use crate::escape::{escape, escape_path};
use crate::view::{Auth, ProjectView};

pub mod json;

/// `ocm up`/`restart` for humans: `ready at URL (pid N) in 1.31 s`, or
/// `running at URL (pid N), up 5m` for a reused server, with where the
/// password is and, for `restart`, the pid it replaced.
pub fn server_line(
    view: &ProjectView,
    info: &ServerInfo,
    elapsed: Duration,
    replaced: Option<u32>,
) -> String {
    let url = escape(&info.url);
    let mut line = if info.reused {
        let up = info
            .uptime()
            .map(|d| format!(", up {}", duration_short(d)))
            .unwrap_or_default();
        format!("running at {url} (pid {}){up}", info.pid)
    } else {
        format!(
            "ready at {url} (pid {}) in {:.2} s",
            info.pid,
            elapsed.as_secs_f64()
        )
    };
    if let Some(old) = replaced {
        line.push_str(&format!(", replacing pid {old}"));
    }
    match &view.auth {
        Auth::None => {}
        Auth::Generated(file) => {
            line.push_str(&format!("; password required, in {}", escape_path(file)));
        }
        Auth::Env => line.push_str("; password required (OPENCODE_SERVER_PASSWORD)"),
    }
    line
}

/// `ocm status` for humans: a block of `name value` lines.
pub fn status_block(view: &ProjectView) -> String {
    let status = &view.status;
    let mut rows: Vec<(&str, String)> = Vec::new();
    rows.push(("project", escape_path(&status.project)));
    let state = match (status.status, &status.detail) {
        (ServerState::Running, _) => "running (healthy)".to_string(),
        (state, Some(detail)) => format!("{state}: {}", escape(detail)),
        (state, None) => state.to_string(),
    };
    rows.push(("status", state));
    let live = matches!(status.status, ServerState::Running | ServerState::Unhealthy);
    if live {
        if let Some(url) = &status.url {
            rows.push(("url", escape(url)));
        }
        if let Some(pid) = status.pid {
            rows.push(("pid", pid.to_string()));
        }
        if let Some(seconds) = status.uptime_seconds {
            let since = status
                .started_at
                .as_deref()
                .map(|s| format!(" (since {})", escape(s)))
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
            rows.push(("version", escape(version)));
        }
    } else {
        if let Some(port) = status.project_port {
            rows.push(("port", format!("{port} (the project's port)")));
        }
        if let (Some(url), Some(pid)) = (&status.url, status.pid) {
            rows.push(("last run", format!("{} (pid {pid})", escape(url))));
        }
    }
    match &view.auth {
        Auth::None => {}
        Auth::Generated(file) => rows.push(("password", escape_path(file))),
        Auth::Env => rows.push(("password", "OPENCODE_SERVER_PASSWORD".into())),
    }
    rows.extend(crate::supervise::status_rows(status));
    rows.push(("log", escape_path(&status.log_path)));
    rows.iter()
        .map(|(name, value)| format!("{name:<8} {value}\n"))
        .collect()
}

/// `ocm ls` for humans: a table, or a line saying there is nothing. A dead
/// server shows its recorded port and pid (STATUS says it is dead).
pub fn list_table(all: &[ServerStatus]) -> String {
    if all.is_empty() {
        return "no projects (start one with `ocm up`)\n".to_string();
    }
    let mut rows = vec![[
        "STATUS".to_string(),
        "PORT".into(),
        "PID".into(),
        "UPTIME".into(),
        "SUPERVISOR".into(),
        "PROJECT".into(),
    ]];
    for status in all {
        let dash = || "-".to_string();
        rows.push([
            status.status.to_string(),
            status.port.map_or_else(dash, |p| p.to_string()),
            status.pid.map_or_else(dash, |p| p.to_string()),
            status
                .uptime_seconds
                .map_or_else(dash, |s| duration_short(Duration::from_secs(s))),
            status.supervisor.as_ref().map_or_else(dash, |s| {
                let restarts = match s.restarts {
                    1 => "1 restart".to_string(),
                    n => format!("{n} restarts"),
                };
                format!("{} (pid {}, {restarts})", s.state, s.pid)
            }),
            escape_path(&status.project),
        ]);
    }
    let last = rows[0].len() - 1;
    let widths: Vec<usize> = (0..last)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (i, width) in widths.iter().enumerate() {
            out.push_str(&format!("{:<width$}  ", row[i]));
        }
        out.push_str(&row[last]);
        out.push('\n');
    }
    out
}

/// `ocm down` for humans: what was stopped, or that nothing was running
/// (and, when the path is no project folder, what is wrong with it).
pub fn stop_lines(report: &StopReport, problem: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    let at = report
        .url
        .as_ref()
        .map(|u| format!(" at {}", escape(u)))
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
    if !report.leftovers_stopped.is_empty() {
        lines.push(format!(
            "stopped what the server started and left running (the agent's commands): pid {}",
            join(&report.leftovers_stopped)
        ));
    }
    if lines.is_empty() {
        lines.push(match problem {
            Some(problem) => format!(
                "not running: {} {problem} and ocm has no server recorded for it",
                escape_path(&report.project)
            ),
            None => format!(
                "not running: no server for {}",
                escape_path(&report.project)
            ),
        });
    }
    lines
}

/// `ocm gc` for humans, naming projects (as `before`, the list taken
/// before gc ran, knew them), not their state folders' hashes.
pub fn gc_lines(report: &GcReport, before: &[ServerStatus]) -> Vec<String> {
    let project_of = |dir: &Path| {
        before
            .iter()
            .find(|s| s.state_dir == dir)
            .map(|s| escape_path(&s.project))
    };
    let mut lines = Vec::new();
    for dir in &report.removed {
        lines.push(match project_of(dir) {
            Some(project) => format!("removed the state of {project}"),
            None => format!("removed {} (no record)", escape_path(dir)),
        });
    }
    if !report.orphans_stopped.is_empty() {
        lines.push(format!(
            "stopped unrecorded server(s): pid {}",
            join(&report.orphans_stopped)
        ));
    }
    if !report.leftovers_stopped.is_empty() {
        lines.push(format!(
            "stopped processes that servers of removed projects left running: pid {}",
            join(&report.leftovers_stopped)
        ));
    }
    for failure in &report.failed {
        lines.push(format!(
            "could not clean {}: {}",
            escape_path(&failure.path),
            escape(&failure.error)
        ));
    }
    for status in &report.project_gone {
        lines.push(format!(
            "left running: {} (pid {}) serves {}, which no longer exists; `ocm down {}` stops it",
            status.url.as_deref().map_or_else(|| "?".into(), escape),
            status.pid.map_or_else(|| "?".into(), |p| p.to_string()),
            escape_path(&status.project),
            shell_word(&status.project.display().to_string()),
        ));
    }
    for dir in &report.busy {
        lines.push(format!(
            "skipped {}: another ocm is working on it",
            project_of(dir).unwrap_or_else(|| escape_path(dir))
        ));
    }
    for record in &report.unreadable {
        let project = record.parent().and_then(project_of);
        lines.push(match project {
            Some(project) => format!(
                "left the record of {project} alone: {} cannot be read (`ocm ls` says why)",
                escape_path(record)
            ),
            None => format!(
                "left {} alone: it cannot be read (`ocm ls` says why)",
                escape_path(record)
            ),
        });
    }
    if lines.is_empty() {
        lines.push("nothing to clean".into());
    }
    lines
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
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A status as the manager reports it: a stopped server has no URL,
    /// port, pid or start time any more.
    pub(crate) fn status(state: ServerState) -> ServerStatus {
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

    pub(crate) fn view(state: ServerState) -> ProjectView {
        ProjectView {
            status: status(state),
            auth: Auth::None,
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
    fn human_status_and_list() {
        let block = status_block(&view(ServerState::Running));
        assert!(block.contains("status   running (healthy)\n"), "{block}");
        assert!(block.contains("uptime   5m 12s"), "{block}");
        assert!(block.contains("memory   381.2 MB"), "{block}");
        let dead = status_block(&view(ServerState::Dead));
        assert!(dead.contains("dead: process 1234 is gone"), "{dead}");
        assert!(
            dead.contains("last run http://127.0.0.1:28412 (pid 1234)"),
            "{dead}"
        );
        let stopped = status_block(&view(ServerState::Stopped));
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
    fn a_dead_server_is_listed_with_its_recorded_port_and_pid() {
        let table = list_table(&[status(ServerState::Dead)]);
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[..3], ["dead", "28412", "1234"], "{table}");
    }

    #[test]
    fn a_supervised_project_is_marked_in_the_list() {
        let mut watched = status(ServerState::Running);
        watched.supervisor = Some(manager::SupervisorInfo {
            pid: 777,
            state: manager::SupervisorState::Backoff,
            restarts: 2,
            last_transition: None,
            server_pid: None,
            uptime_seconds: None,
            resident_memory_bytes: None,
            events_received: 0,
            reconnects: 0,
            relay_clients: 0,
            last_event_age_ms: None,
            last_exit: None,
            companion_pid: Some(9),
            companion_restarts: 1,
            log_tail: Vec::new(),
            updated_at: String::new(),
        });
        let rows = crate::supervise::status_rows(&watched);
        assert!(
            rows.contains(&("companion", "pid 9, 1 restart".to_string())),
            "{rows:?}"
        );
        let table = list_table(&[watched, status(ServerState::Stopped)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("SUPERVISOR"), "{table}");
        assert!(
            lines[1].contains("backoff (pid 777, 2 restarts)"),
            "{table}"
        );
        assert!(
            lines[1].ends_with("/work/p") && lines[2].ends_with("/work/p"),
            "{table}"
        );
        let unwatched: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(unwatched[..5], ["stopped", "-", "-", "-", "-"], "{table}");
    }

    #[test]
    fn foreign_text_cannot_break_a_row() {
        let mut odd = status(ServerState::Dead);
        odd.project = "/work/new\nline\u{1b}[2J".into();
        odd.detail = Some("said \u{7}\r".into());
        let table = list_table(&[odd.clone()]);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(table.contains(r"/work/new\nline\x1b[2J"), "{table}");
        let block = status_block(&ProjectView {
            status: odd,
            auth: Auth::Generated("/state/servers/h/password".into()),
        });
        assert!(block.contains(r"said \x07\r"), "{block}");
        assert!(
            block.contains("password /state/servers/h/password"),
            "{block}"
        );
        assert!(
            !block.contains('\u{1b}') && !block.contains('\u{7}'),
            "{block}"
        );
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
            stop_lines(&report, None),
            vec!["not running: no server for /work/p"]
        );
        assert_eq!(
            stop_lines(&report, Some("does not exist")),
            vec!["not running: /work/p does not exist and ocm has no server recorded for it"]
        );
        report.pid = Some(7);
        report.stopped = Some(StopKind::Killed);
        report.url = Some("http://x".into());
        assert!(stop_lines(&report, None)[0].starts_with("killed the server at http://x"));
        assert_eq!(
            gc_lines(&GcReport::default(), &[]),
            vec!["nothing to clean"]
        );
        let unreadable = GcReport {
            unreadable: vec!["/s/servers/h/server.json".into()],
            ..GcReport::default()
        };
        assert_eq!(
            gc_lines(&unreadable, &[]),
            vec!["left /s/servers/h/server.json alone: it cannot be read (`ocm ls` says why)"]
        );
        let removed = GcReport {
            removed: vec!["/state/servers/h".into(), "/state/servers/x".into()],
            ..GcReport::default()
        };
        assert_eq!(
            gc_lines(&removed, &[status(ServerState::Stopped)]),
            vec![
                "removed the state of /work/p",
                "removed /state/servers/x (no record)"
            ]
        );
    }
}
