//! The supervisor's files in a project's state folder: `supervise.lock`
//! (held while it watches, naming its process), `supervisor.json` (its
//! metrics, written atomically) and `transitions.jsonl` (appended, rotated).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use procutil::ProcessIdentity;
use serde::{Deserialize, Serialize};

use super::types::{SupervisorState, Transition};
use crate::ProjectPaths;

/// Rotate `transitions.jsonl` beyond this size.
const TRANSITIONS_MAX_BYTES: u64 = 1 << 20;
/// Rotated copies of `transitions.jsonl` kept.
const TRANSITIONS_KEEP: u32 = 3;

pub(crate) fn lock_path(paths: &ProjectPaths) -> PathBuf {
    paths.dir.join("supervise.lock")
}

pub(crate) fn metrics_path(paths: &ProjectPaths) -> PathBuf {
    paths.dir.join("supervisor.json")
}

pub(crate) fn transitions_path(paths: &ProjectPaths) -> PathBuf {
    paths.dir.join("transitions.jsonl")
}

fn open_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    options
}

/// Takes the project's `supervise.lock` without waiting and writes this
/// process's identity into it. `Ok(None)` when another process holds it.
/// The kernel releases the lock when the file is closed or this process
/// dies.
pub(crate) fn try_take(paths: &ProjectPaths) -> std::io::Result<Option<File>> {
    statefile::ensure_dir(&paths.dir).map_err(std::io::Error::other)?;
    let mut file = open_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path(paths))?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "supervise.lock is not a regular file",
        ));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    let me = ProcessIdentity::of(std::process::id()).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{} {} {}", me.pid, me.start_time, me.boot_id)?;
    Ok(Some(file))
}

/// The process that holds the project's `supervise.lock`, read from the
/// file and checked alive (pid, start time and boot id): `None` when no
/// supervisor watches the project. Does not take the lock, so it never
/// gets in a starting supervisor's way.
pub fn supervise_lock_holder(paths: &ProjectPaths) -> Option<u32> {
    let mut file = open_options().read(true).open(lock_path(paths)).ok()?;
    let mut text = String::new();
    (&mut file).take(512).read_to_string(&mut text).ok()?;
    let mut fields = text.split_whitespace();
    let identity = ProcessIdentity {
        pid: fields.next()?.parse().ok()?,
        start_time: fields.next()?.parse().ok()?,
        boot_id: fields.next()?.to_string(),
    };
    identity.is_alive().then_some(identity.pid)
}

/// What a supervisor says about a project it watches (`supervisor.json`),
/// as `ocm status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupervisorInfo {
    /// The supervisor's pid.
    pub pid: u32,
    /// The project's supervised state.
    pub state: SupervisorState,
    /// Restarts by this supervisor.
    pub restarts: u32,
    /// The last transition.
    pub last_transition: Option<Transition>,
    /// The server's pid, when one runs.
    pub server_pid: Option<u32>,
    /// Seconds the server has run.
    pub uptime_seconds: Option<u64>,
    /// The server's resident memory.
    pub resident_memory_bytes: Option<u64>,
    /// Events received from the server's stream.
    pub events_received: u64,
    /// Reconnections of the stream.
    pub reconnects: u64,
    /// Clients the event relay has taken since the server started.
    #[serde(default)]
    pub relay_clients: u64,
    /// Milliseconds since the last event, while a server runs.
    pub last_event_age_ms: Option<u64>,
    /// How the last server ended.
    pub last_exit: Option<String>,
    /// The companion's pid, while one runs beside the server (only with a
    /// companion source: `ocm supervise` for sandboxes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub companion_pid: Option<u32>,
    /// The companion's restarts by this supervisor.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub companion_restarts: u32,
    /// The last lines of the server log, when the project failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// When this was written.
    pub updated_at: String,
}

/// The supervisor watching the project and what it says, `None` when none
/// does (no live holder of `supervise.lock`).
pub(crate) fn read_info(paths: &ProjectPaths) -> Option<SupervisorInfo> {
    let holder = supervise_lock_holder(paths)?;
    let info: SupervisorInfo = statefile::read_json(&metrics_path(paths)).ok()??;
    (info.pid == holder).then_some(info)
}

pub(crate) fn write_info(paths: &ProjectPaths, info: &SupervisorInfo) {
    // Metrics are best effort: a full disk must not stop supervision.
    let _ = statefile::write_atomic(&metrics_path(paths), info);
}

/// Appends a transition as one JSON line, rotating the file first when it
/// is large.
pub(crate) fn append_transition(paths: &ProjectPaths, transition: &Transition) {
    let path = transitions_path(paths);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() > TRANSITIONS_MAX_BYTES) {
        let _ = statefile::rotate_file(&path, TRANSITIONS_KEEP);
    }
    let Ok(mut line) = serde_json::to_vec(transition) else {
        return;
    };
    line.push(b'\n');
    if let Ok(mut file) = open_options().append(true).create(true).open(&path) {
        let _ = file.write_all(&line);
    }
}

/// Removes this supervisor's metrics when it stops watching a project, so
/// that nobody reads them as current.
pub(crate) fn remove_info(paths: &ProjectPaths) {
    let _ = std::fs::remove_file(metrics_path(paths));
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::types::Reason;

    #[test]
    fn one_holder_of_supervise_lock_and_it_is_named() {
        let root = tempfile::tempdir().unwrap();
        let paths = ProjectPaths::new(root.path(), "0123456789abcdef0123456789abcdef");
        assert_eq!(supervise_lock_holder(&paths), None);
        let held = try_take(&paths).unwrap().expect("free");
        // flock is per open file: a second taker, even in this process, is
        // refused, and told who holds it.
        assert!(try_take(&paths).unwrap().is_none());
        assert_eq!(supervise_lock_holder(&paths), Some(std::process::id()));
        drop(held);
        assert!(try_take(&paths).unwrap().is_some());
    }

    #[test]
    fn transitions_are_json_lines_with_the_promised_keys() {
        let root = tempfile::tempdir().unwrap();
        let paths = ProjectPaths::new(root.path(), "0123456789abcdef0123456789abcdef");
        statefile::ensure_dir(&paths.dir).unwrap();
        let reason = Reason::Exited {
            code: None,
            signal: Some(9),
            detail: None,
        };
        let transition = Transition {
            project: "/p".into(),
            state: SupervisorState::Crashed,
            previous: SupervisorState::Running,
            at: statefile::rfc3339_now(),
            message: reason.to_string(),
            reason,
            pid: Some(42),
            restarts: 3,
        };
        append_transition(&paths, &transition);
        append_transition(&paths, &transition);
        let text = std::fs::read_to_string(transitions_path(&paths)).unwrap();
        assert_eq!(text.lines().count(), 2);
        let value: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for key in [
            "project", "state", "previous", "at", "reason", "pid", "restarts",
        ] {
            assert!(value.get(key).is_some(), "{key} missing: {value}");
        }
        assert_eq!(value["state"], "crashed");
        assert_eq!(value["reason"]["kind"], "exited");
        assert_eq!(value["reason"]["signal"], 9);
        assert_eq!(value["message"], "killed by signal 9");
    }

    #[test]
    fn metrics_are_read_only_while_their_supervisor_holds_the_lock() {
        let root = tempfile::tempdir().unwrap();
        let paths = ProjectPaths::new(root.path(), "0123456789abcdef0123456789abcdef");
        let held = try_take(&paths).unwrap().unwrap();
        let info = SupervisorInfo {
            pid: std::process::id(),
            state: SupervisorState::Running,
            restarts: 1,
            last_transition: None,
            server_pid: Some(7),
            uptime_seconds: Some(3),
            resident_memory_bytes: None,
            events_received: 5,
            reconnects: 0,
            relay_clients: 0,
            last_event_age_ms: Some(10),
            last_exit: None,
            companion_pid: Some(8),
            companion_restarts: 2,
            log_tail: Vec::new(),
            updated_at: statefile::rfc3339_now(),
        };
        write_info(&paths, &info);
        assert_eq!(read_info(&paths), Some(info));
        // A supervisor that stops removes its metrics.
        remove_info(&paths);
        assert_eq!(read_info(&paths), None);
        drop(held);
    }
}
