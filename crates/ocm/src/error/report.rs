//! How an error is shown. For people: `ocm: error: MESSAGE` (one line,
//! escaped), detail lines (a failed start's log), `hint: ...` lines; all
//! on stderr. For scripts (`--json`): one object on stdout with `error`
//! (the same one line), `hint`, `exitCode` and structured fields instead
//! of text packed into the message (`path`; for a failed start `binary`,
//! `exitStatus`, `logTail` as an array...), and nothing on stderr. The keys
//! are listed in `json_keys.rs`.

use std::path::{Path, PathBuf};

use manager::{Error as M, StartFailure, StopKind};
use serde_json::{Map, Value, json};

use super::{CliError, shell_word};
use crate::escape::{escape, escape_path, log_line, log_line_raw};

/// An error as it is shown.
#[derive(Debug)]
pub struct ErrorReport {
    /// One line: what went wrong, with the path, pid or port concerned.
    pub message: String,
    /// More lines for people (already escaped): a failed start's log.
    pub details: Vec<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// The exit status.
    pub code: i32,
    /// Structured fields for `--json`.
    pub fields: Map<String, Value>,
}

impl ErrorReport {
    /// The text for stderr: every line escaped.
    pub fn human(&self) -> String {
        let mut text = format!("ocm: error: {}\n", escape(&self.message));
        for line in &self.details {
            text.push_str(line);
            text.push('\n');
        }
        if let Some(hint) = &self.hint {
            for line in hint.lines() {
                text.push_str(&format!("hint: {}\n", escape(line)));
            }
        }
        text
    }

    /// The object for stdout with `--json`.
    pub fn json(&self) -> Value {
        let mut object = Map::new();
        object.insert("error".into(), json!(self.message));
        object.insert("hint".into(), json!(self.hint));
        object.insert("exitCode".into(), json!(self.code));
        object.extend(self.fields.clone());
        Value::Object(object)
    }
}

/// A path as a JSON string (lossy: JSON has no other way to say it).
pub fn path_json(path: &Path) -> Value {
    Value::String(path.to_string_lossy().into_owned())
}

impl CliError {
    /// How this error is shown.
    pub fn report(&self) -> ErrorReport {
        let code = self.exit_code();
        let hint = self.hint();
        let start_failed = match self {
            CliError::StartFailed { error, binary } => Some((error, binary.as_deref())),
            CliError::Start(error) | CliError::Manager(error)
                if matches!(error.as_ref(), M::StartFailed { .. }) =>
            {
                Some((error, None))
            }
            _ => None,
        };
        if let Some((error, binary)) = start_failed
            && let Some(report) = start_failed_report(error, binary, code, hint.clone())
        {
            return report;
        }
        let mut fields = Map::new();
        if let Some(path) = self.path() {
            fields.insert("path".into(), path_json(path));
        }
        if let CliError::Sandbox { error, .. } = self
            && let sandbox::Error::MissingKeys { keys, .. } = error.as_ref()
        {
            fields.insert("missingKeys".into(), json!(keys));
        }
        ErrorReport {
            message: self.message(),
            details: Vec::new(),
            hint,
            code,
            fields,
        }
    }

    /// The one-line message: the error's text, or better where the CLI
    /// can say more (what is wrong with a project path).
    fn message(&self) -> String {
        match self {
            CliError::Manager(e) | CliError::Start(e) => match e.as_ref() {
                M::ProjectNotFound { path } => format!(
                    "project folder {} {}",
                    path.display(),
                    super::folder_problem(path).unwrap_or("does not exist or is not a folder")
                ),
                _ => self.to_string(),
            },
            _ => self.to_string(),
        }
    }

    /// The file or folder this error is about, when there is one.
    fn path(&self) -> Option<&Path> {
        match self {
            CliError::NoProject { project } => Some(project),
            CliError::NoLog { log, .. } => Some(log),
            CliError::InStateDir { path, .. } => Some(path),
            CliError::Sandbox { error, .. } => sandbox_path(error),
            CliError::Manager(e) | CliError::Start(e) => match e.as_ref() {
                M::ProjectNotFound { path }
                | M::RecordFromNewerOcm { path, .. }
                | M::LockTimeout { path, .. }
                | M::NonUtf8Path { path }
                | M::Io { path, .. } => Some(path),
                M::State(e) => e.path(),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The file or folder a sandbox error is about, when there is one.
fn sandbox_path(error: &sandbox::Error) -> Option<&Path> {
    use sandbox::Error as S;
    match error {
        S::Dotenv { path, .. }
        | S::UnsafeEnvFile { path, .. }
        | S::MissingKeys { path, .. }
        | S::NoGitUrl { path }
        | S::BadSetting { path, .. }
        | S::Conflict { path, .. }
        | S::Key { path, .. }
        | S::BadFolder { path, .. }
        | S::Io { path, .. } => Some(path),
        S::NotFound { folder, .. } => Some(folder),
        _ => None,
    }
}

/// The file or folder of a failed file operation (not a corrupt record,
/// not a timeout): what the state-folder context is about.
pub fn io_failure(error: &M) -> Option<&Path> {
    match error {
        M::Io { path, .. } => Some(path),
        M::State(e) => {
            let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
            if io { e.path() } else { None }
        }
        _ => None,
    }
}

/// A failed start: which binary ran, how it ended, the log's last lines.
fn start_failed_report(
    error: &M,
    binary: Option<&Path>,
    code: i32,
    hint: Option<String>,
) -> Option<ErrorReport> {
    let M::StartFailed {
        project,
        attempts,
        failure,
        exit,
        stopped,
        log_path,
        log_tail,
    } = error
    else {
        return None;
    };
    let bin = binary.map_or_else(|| "opencode".to_string(), |b| b.display().to_string());
    let ending = match stopped {
        Some(StopKind::AlreadyGone) => " (it was already gone when ocm stopped it)",
        Some(StopKind::ExitedOnTerm) => " (ocm stopped it with SIGTERM)",
        Some(StopKind::Killed) => " (ocm killed it with SIGKILL)",
        None => "",
    };
    let (what, kind) = match failure.as_ref() {
        StartFailure::Exited { status } => {
            let status = exit.or(*status).map_or_else(
                || "its exit status is unknown".to_string(),
                |s| s.to_string(),
            );
            (
                format!("{bin} exited before listening ({status})"),
                "exited",
            )
        }
        StartFailure::NoListeningLine { waited } => (
            format!(
                "{bin} printed no listening line within {:.0} s{ending}",
                waited.as_secs_f64()
            ),
            "no-listening-line",
        ),
        StartFailure::Unhealthy { url, reason } => (
            format!("{bin} listened on {url} but did not answer health checks ({reason}){ending}"),
            "unhealthy",
        ),
        StartFailure::Unrecognised { .. } => (format!("{failure}{ending}"), "unrecognised"),
        other => (format!("{other}{ending}"), "other"),
    };
    let attempts_text = if *attempts == 1 {
        "1 attempt".to_string()
    } else {
        format!("{attempts} attempts")
    };
    let mut details = Vec::new();
    if log_tail.is_empty() {
        details.push(format!(
            "log: {} (nothing new in it)",
            escape_path(log_path)
        ));
    } else {
        details.push(format!("log: {}", escape_path(log_path)));
        details.push("last lines of the log:".to_string());
        details.extend(log_tail.iter().map(|line| format!("  {}", log_line(line))));
    }
    let mut fields = Map::new();
    fields.insert("project".into(), path_json(project));
    fields.insert("binary".into(), json!(binary.map(path_json)));
    fields.insert("attempts".into(), json!(attempts));
    fields.insert("failure".into(), json!(kind));
    fields.insert("exitStatus".into(), json!(exit.and_then(|e| e.code)));
    fields.insert("signal".into(), json!(exit.and_then(|e| e.signal)));
    fields.insert("logPath".into(), path_json(log_path));
    fields.insert(
        "logTail".into(),
        json!(log_tail.iter().map(|l| log_line_raw(l)).collect::<Vec<_>>()),
    );
    Some(ErrorReport {
        message: format!(
            "opencode failed to start for {} after {attempts_text}: {what}",
            project.display()
        ),
        details,
        hint,
        code,
        fields,
    })
}

/// What to do about a failed start: for an exit before listening, check
/// the binary (a longer timeout would not help); for a slow start, the
/// log and `--timeout`.
pub(super) fn start_failed_hint(error: &M, binary: &Option<PathBuf>) -> Option<String> {
    let M::StartFailed {
        project, failure, ..
    } = error
    else {
        return None;
    };
    let logs = format!("`ocm logs {}`", shell_word(&project.display().to_string()));
    Some(match failure.as_ref() {
        StartFailure::Exited { .. } => {
            let bin = binary
                .as_ref()
                .map_or_else(|| "opencode".to_string(), |b| b.display().to_string());
            format!(
                "opencode ended at once: check the binary with `{} --version` (OPENCODE_BIN \
                 chooses another); the whole log: {logs}",
                shell_word(&bin)
            )
        }
        StartFailure::NoListeningLine { waited } => format!(
            "the whole log: {logs}; a slow machine may need more than {:.0} s: --timeout SECS",
            waited.as_secs_f64()
        ),
        StartFailure::Unhealthy { .. } => {
            format!("the whole log: {logs}; a slow machine may need a longer --timeout SECS")
        }
        StartFailure::Unrecognised { .. } => "run the opencode binary itself (OPENCODE_BIN), or \
                                             make the wrapper pass its arguments and environment on"
            .to_string(),
        _ => format!("the whole log: {logs}"),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn start_failed(failure: StartFailure, exit: Option<manager::ExitStatus>) -> M {
        M::StartFailed {
            project: "/p".into(),
            attempts: 2,
            failure: Box::new(failure),
            exit,
            stopped: None,
            log_path: "/state/servers/h/server.log".into(),
            log_tail: vec!["\u{1b}[31mfatal\u{1b}[0m: no\u{7}".into()],
        }
    }

    #[test]
    fn an_exit_names_the_binary_and_its_status_and_no_timeout() {
        let error = CliError::StartFailed {
            error: Box::new(start_failed(
                StartFailure::Exited { status: None },
                Some(manager::ExitStatus {
                    code: Some(3),
                    signal: None,
                }),
            )),
            binary: Some("/bin/false".into()),
        };
        let report = error.report();
        assert_eq!(report.code, crate::error::EXIT_START_FAILED);
        assert!(
            report
                .message
                .contains("/bin/false exited before listening (exit status 3)")
        );
        assert!(!report.message.contains('\n'));
        let human = report.human();
        assert!(human.contains("  fatal: no\\x07"), "{human}");
        assert!(!human.contains("--timeout"), "{human}");
        let json = report.json();
        assert_eq!(json["exitStatus"], 3);
        assert_eq!(json["binary"], "/bin/false");
        assert_eq!(json["logTail"], json!(["fatal: no\u{7}"]));
        let slow = CliError::from(start_failed(
            StartFailure::NoListeningLine {
                waited: Duration::from_secs(30),
            },
            None,
        ))
        .starting();
        assert!(slow.report().hint.unwrap().contains("--timeout"));
        assert_eq!(slow.report().json()["binary"], Value::Null);
    }

    #[test]
    fn errors_about_a_file_carry_its_path() {
        let error = CliError::from(M::ProjectNotFound {
            path: "/no/such".into(),
        });
        let json = error.report().json();
        assert_eq!(json["path"], "/no/such");
        assert_eq!(json["exitCode"], 2);
        let usage = CliError::Usage(crate::cli::parse(["frob\n"]).unwrap_err()).report();
        assert!(!usage.fields.contains_key("path"));
        assert!(usage.human().contains(r"frob\n"), "{}", usage.human());
    }
}
