//! `ocm sandbox up|status|down|restart|destroy|ls`: the command line over
//! the sandbox crate. Thin: the parsed command goes to [`sandbox::Sandboxes`]
//! and its result is rendered here (human text, or the crate's serialized
//! values as the one JSON document). No value printed here can hold a
//! secret: the crate's report types do not carry them.

use std::path::Path;

use sandbox::{
    Destroyed, Down, KeyOwner, Outcome, SandboxConfig, SandboxName, SandboxStatus, SandboxSummary,
    Sandboxes, UpOptions,
};
use serde::Serialize;

use crate::cli::{Cli, Name, SandboxAction, SandboxCommand, UsageError};
use crate::commands::{print, print_json};
use crate::error::{CliError, EXIT_NOT_RUNNING, EXIT_OK, EXIT_START_FAILED, EXIT_WAITING_FOR_KEY};
use crate::escape::{escape, escape_path};

/// Runs `ocm sandbox ...`; `Ok` carries the exit status.
pub fn run(cli: &Cli, command: &SandboxCommand) -> Result<i32, CliError> {
    let sandboxes = sandboxes(cli)?;
    let (name, action) = match command {
        SandboxCommand::Ls => {
            let all = sandboxes.list().map_err(|e| from_sandbox(e, None, false))?;
            return emit(cli, &all, || list_table(&all, sandboxes.data_root())).map(|()| EXIT_OK);
        }
        SandboxCommand::One { name, action } => (name, action),
    };
    match action {
        SandboxAction::Up { git, ssh_key } => {
            let options = UpOptions {
                git_url: git.clone(),
                ssh_key: ssh_key.clone(),
            };
            let up = sandboxes
                .up(name, &options)
                .map_err(|e| from_sandbox(e, ssh_key.as_deref(), true))?;
            show_status(cli, up.status(), EXIT_START_FAILED)
        }
        SandboxAction::Status => {
            let status = sandboxes
                .status(name)
                .map_err(|e| from_sandbox(e, None, false))?;
            show_status(cli, &status, EXIT_NOT_RUNNING)
        }
        SandboxAction::Restart => {
            let status = sandboxes
                .restart(name)
                .map_err(|e| from_sandbox(e, None, true))?;
            show_status(cli, &status, EXIT_START_FAILED)
        }
        SandboxAction::Down => {
            let down = sandboxes
                .down(name)
                .map_err(|e| from_sandbox(e, None, false))?;
            emit(cli, &down, || down_text(&down)).map(|()| EXIT_OK)
        }
        SandboxAction::Destroy { yes: false } => Err(would_destroy(&sandboxes, name)),
        SandboxAction::Destroy { yes: true } => {
            let destroyed = sandboxes
                .destroy(name)
                .map_err(|e| from_sandbox(e, None, false))?;
            emit(cli, &destroyed, || destroyed_text(&destroyed)).map(|()| EXIT_OK)
        }
    }
}

/// The sandboxes of this user: the data root from `XDG_DATA_HOME`, the
/// mode from `OCM_ENV`, the servers' state folder as for every command,
/// and this binary as the companion.
fn sandboxes(cli: &Cli) -> Result<Sandboxes, CliError> {
    let ocm_bin = std::env::current_exe().map_err(|source| CliError::Io {
        context: "cannot tell where the ocm binary is (for the companion)".into(),
        source,
    })?;
    let mut config = SandboxConfig::from_env(ocm_bin).map_err(|e| from_sandbox(e, None, false))?;
    config.manager = crate::commands::config(cli, None)?;
    // Ctrl-C (SIGTERM, a hang-up) stops a clone or a start in progress with
    // everything it started, and ocm exits 128 + the signal.
    config.interrupts = Some(manager::catch_interrupts()?);
    Sandboxes::new(config).map_err(|e| from_sandbox(e, None, false))
}

/// A sandbox error as the CLI reports it. What the user typed (the name,
/// `--git`, `--ssh-key`, `OCM_ENV`, a value contradicting `.env`) is bad
/// input, exit 2; a manager error is the manager's, and on the way to a
/// running server (`starting`) a failed start (exit 4).
fn from_sandbox(error: sandbox::Error, given_key: Option<&Path>, starting: bool) -> CliError {
    use sandbox::Error as S;
    let bad_input = match &error {
        S::BadName { .. } | S::BadUrl { .. } | S::BadMode { .. } | S::Conflict { .. } => true,
        S::Key { path, .. } => given_key == Some(path.as_path()),
        _ => false,
    };
    match error {
        S::Manager(e) if starting => CliError::from(e).starting(),
        S::Manager(e) => CliError::from(e),
        error => CliError::Sandbox {
            error: Box::new(error),
            bad_input,
        },
    }
}

/// `destroy` without `--yes`: a usage error that says what would go.
fn would_destroy(sandboxes: &Sandboxes, name: &SandboxName) -> CliError {
    let folder = sandboxes.folder(name);
    if std::fs::symlink_metadata(&folder).is_err() {
        return from_sandbox(
            sandbox::Error::NotFound {
                name: name.to_string(),
                folder,
            },
            None,
            false,
        );
    }
    let key = sandbox::keys::generated_key_path(sandboxes.data_root(), name);
    let mut message = format!(
        "destroy deletes the sandbox folder {} (the clone and .env)",
        folder.display()
    );
    if key.exists() {
        message.push_str(&format!(
            " and the generated deploy key {} (and its .pub)",
            key.display()
        ));
    }
    message.push_str(
        ", and stops its server and companion; a key of your own is kept. Add --yes to do it",
    );
    CliError::Usage(UsageError {
        message,
        command: Some(Name::SandboxDestroy),
    })
}

/// Prints one serializable value as the JSON document, or `human()`.
fn emit<T: Serialize>(
    cli: &Cli,
    value: &T,
    human: impl FnOnce() -> String,
) -> Result<(), CliError> {
    if cli.json {
        print_json(&serde_json::to_value(value).unwrap_or(serde_json::Value::Null));
        Ok(())
    } else {
        print(&human())
    }
}

/// `up`, `status`, `restart`: the sandbox, warnings on stderr, and for a
/// key not yet accepted the public key alone on stdout and what to do on
/// stderr. Exit 0 for success, [`EXIT_WAITING_FOR_KEY`], else `failed`.
fn show_status(cli: &Cli, status: &SandboxStatus, failed: i32) -> Result<i32, CliError> {
    let code = match status.status {
        Outcome::Success => EXIT_OK,
        Outcome::WaitingForKey => EXIT_WAITING_FOR_KEY,
        Outcome::Error => failed,
    };
    if cli.json {
        emit(cli, status, String::new)?;
        return Ok(code);
    }
    let mut stderr = String::new();
    for warning in &status.warnings {
        stderr.push_str(&format!("ocm: warning: {}\n", escape(warning)));
    }
    let stdout = match (&status.status, &status.public_key) {
        (Outcome::WaitingForKey, Some(public_key)) => {
            stderr.push_str(&waiting_text(status));
            format!("{}\n", escape(public_key.trim_end()))
        }
        _ => status_block(status),
    };
    if !stderr.is_empty() {
        eprint!("{stderr}");
    }
    print(&stdout)?;
    Ok(code)
}

/// What to do with the public key printed on stdout.
fn waiting_text(status: &SandboxStatus) -> String {
    let repo = status.git_url.as_deref().unwrap_or("the repository");
    let mut text = format!(
        "ocm: sandbox {} is waiting for its deploy key (printed on stdout)\n\
         add this deploy key with read access to {}, then run the same command again: ocm \
         sandbox up {}\n",
        status.name,
        escape(repo),
        status.name
    );
    if let Some(path) = &status.key_path {
        let owner = match status.key_owner {
            Some(KeyOwner::User) => "your key",
            _ => "the key ocm generated",
        };
        text.push_str(&format!(
            "{owner}: {} (public: {}.pub)\n",
            escape_path(path),
            escape_path(path)
        ));
    }
    text
}

/// A sandbox for people: `name value` lines (one waiting for its key is
/// shown by its public key instead, see [`show_status`]).
fn status_block(status: &SandboxStatus) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("sandbox", status.name.to_string()),
        ("status", outcome_word(status.status).to_string()),
        ("folder", escape_path(&status.folder)),
    ];
    if let Some(url) = &status.git_url {
        rows.push(("git", escape(url)));
    }
    if let Some(path) = &status.key_path {
        let owner = match status.key_owner {
            Some(KeyOwner::User) => " (yours)",
            Some(KeyOwner::Ocm) => " (generated)",
            None => "",
        };
        rows.push(("key", format!("{}{owner}", escape_path(path))));
    }
    if let Some(server) = &status.server {
        let state = escape(&server.state);
        rows.push((
            "server",
            match (&server.url, server.pid) {
                (Some(url), Some(pid)) => format!("{} (pid {pid}, {state})", escape(url)),
                _ => state,
            },
        ));
    }
    if let Some(companion) = &status.companion {
        let health = match (companion.alive, companion.answered_ms) {
            (false, _) => "not running".to_string(),
            (true, Some(ms)) => format!("answered in {ms} ms"),
            (true, None) => "did not answer".to_string(),
        };
        rows.push((
            "companion",
            format!(
                "{} (pid {}, {health})",
                escape(&companion.url),
                companion.pid
            ),
        ));
    }
    if let Some(at) = &status.last_health_check {
        rows.push(("checked", escape(at)));
    }
    if let Some(error) = &status.error {
        rows.push(("error", escape(error)));
    }
    rows.iter()
        .map(|(name, value)| format!("{name:<9} {value}\n"))
        .collect()
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::WaitingForKey => "waiting_for_key",
        Outcome::Error => "error",
    }
}

/// `ocm sandbox ls` for people: a table, or a line saying there is none.
fn list_table(all: &[SandboxSummary], data_root: &Path) -> String {
    if all.is_empty() {
        return format!(
            "no sandboxes in {} (create one with `ocm sandbox up NAME --git URL`)\n",
            escape_path(&data_root.join("sandboxes"))
        );
    }
    let mut rows = vec![[
        "NAME".to_string(),
        "STATUS".into(),
        "CLONED".into(),
        "FOLDER".into(),
    ]];
    for summary in all {
        rows.push([
            summary.name.to_string(),
            outcome_word(summary.status).into(),
            if summary.cloned { "yes" } else { "no" }.into(),
            escape_path(&summary.folder),
        ]);
    }
    let widths: Vec<usize> = (0..3)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                line.push_str(&format!("{:<width$}  ", row[i]));
            }
            line.push_str(&row[3]);
            line.push('\n');
            line
        })
        .collect()
}

fn down_text(down: &Down) -> String {
    let server = match down.server_pid {
        Some(pid) => format!("stopped its server (pid {pid})"),
        None => "no server was running".to_string(),
    };
    let companion = if down.companion_stopped {
        "stopped its companion"
    } else {
        "no companion was running"
    };
    format!("sandbox {}: {server}; {companion}\n", down.name)
}

fn destroyed_text(destroyed: &Destroyed) -> String {
    let mut text = format!(
        "sandbox {} destroyed: removed {}",
        destroyed.name,
        escape_path(&destroyed.folder)
    );
    if let Some(key) = &destroyed.removed_key {
        text.push_str(&format!(" and the generated key {}", escape_path(key)));
    }
    text.push('\n');
    if let Some(key) = &destroyed.kept_user_key {
        text.push_str(&format!("kept your key {}\n", escape_path(key)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_keys::SANDBOX_KEYS;
    use sandbox::{CompanionView, ServerView};

    fn keys(value: &impl Serialize) -> Vec<String> {
        let value = serde_json::to_value(value).unwrap();
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn listed(row: &str) -> Vec<String> {
        let (_, keys) = SANDBOX_KEYS.iter().find(|(name, _)| *name == row).unwrap();
        let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn json_keys_are_the_ones_the_readme_lists() {
        let name: SandboxName = "app".parse().unwrap();
        let server = ServerView {
            url: Some("http://127.0.0.1:4100".into()),
            port: Some(4100),
            pid: Some(1),
            healthy: true,
            state: "running".into(),
        };
        let companion = CompanionView {
            url: "http://127.0.0.1:5100".into(),
            port: 5100,
            pid: 2,
            alive: true,
            answered: true,
            answered_ms: Some(1),
            log: "/s/companion.log".into(),
        };
        assert_eq!(keys(&server), listed("sandbox server"));
        assert_eq!(keys(&companion), listed("sandbox companion"));
        let status = SandboxStatus {
            name: name.clone(),
            status: Outcome::Success,
            folder: "/d/app".into(),
            repo: "/d/app/repo".into(),
            git_url: None,
            key_path: None,
            key_owner: None,
            public_key: None,
            server: Some(server),
            companion: Some(companion),
            last_health_check: None,
            warnings: vec!["w\u{1b}[31m".into()],
            error: None,
        };
        assert_eq!(keys(&status), listed("sandbox status"));
        let entry = SandboxSummary {
            name: name.clone(),
            folder: "/d/app".into(),
            status: Outcome::Error,
            cloned: false,
        };
        assert_eq!(keys(&entry), listed("sandbox ls entries"));
        let down = Down {
            name: name.clone(),
            server_pid: None,
            companion_stopped: false,
        };
        assert_eq!(keys(&down), listed("sandbox down"));
        let destroyed = Destroyed {
            name,
            folder: "/d/app".into(),
            removed_key: None,
            kept_user_key: None,
        };
        assert_eq!(keys(&destroyed), listed("sandbox destroy"));
        // Human text escapes what ocm did not write.
        let block = status_block(&SandboxStatus {
            folder: "/d/a\nb".into(),
            ..status
        });
        assert!(
            block.contains("/d/a\\nb") && !block.contains("a\nb"),
            "{block}"
        );
    }

    #[test]
    fn what_the_user_typed_is_bad_input_and_the_rest_an_error() {
        let key = Path::new("/k/id");
        let bad_key = from_sandbox(
            sandbox::Error::Key {
                path: key.into(),
                problem: "readable by others".into(),
            },
            Some(key),
            true,
        );
        assert_eq!(bad_key.exit_code(), crate::error::EXIT_USAGE);
        assert!(bad_key.hint().unwrap().contains("chmod 600"));
        let env_key = from_sandbox(
            sandbox::Error::Key {
                path: key.into(),
                problem: "readable by others".into(),
            },
            None,
            true,
        );
        assert_eq!(env_key.exit_code(), crate::error::EXIT_ERROR);
        let missing = from_sandbox(
            sandbox::Error::MissingKeys {
                path: "/d/app/.env".into(),
                file_missing: true,
                keys: vec!["GIT_URL", "SSH_KEY_PATH"],
                key_hint: None,
            },
            None,
            true,
        );
        assert_eq!(missing.exit_code(), crate::error::EXIT_ERROR);
        let json = missing.report().json();
        assert_eq!(json["path"], "/d/app/.env");
        assert_eq!(json["missingKeys"][1], "SSH_KEY_PATH");
        let start = from_sandbox(
            sandbox::Error::Manager(manager::Error::OpencodeNotFound {
                detail: "nowhere".into(),
            }),
            None,
            true,
        );
        assert_eq!(start.exit_code(), EXIT_START_FAILED);
    }
}
