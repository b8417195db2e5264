//! `ocm session ls|new|show|rm` (the project's session registry merged with
//! what the server knows) and `ocm events` (the server's event stream, one
//! decoded event per line).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use manager::Manager;
use opencode_api::{SessionId, StreamItem};
use serde_json::{Value, json};
use turns::{Engine, Registry, SessionEntry, SessionKey, SessionView, Sessions, TurnOptions};

use crate::cli::{Cli, Name, SessionCommand, UsageError};
use crate::error::{CliError, EXIT_OK};

/// The project's manager (started server) and sessions.
fn open(cli: &Cli, dir: Option<&Path>) -> Result<(Arc<Manager>, PathBuf, Sessions), CliError> {
    let project = dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let config = crate::commands::config(cli, None)?;
    let manager = Arc::new(Manager::new(config)?);
    manager
        .ensure(&project)
        .map_err(|e| CliError::Start(Box::new(e)))?;
    let engine = Engine::managed(Arc::clone(&manager), &project, TurnOptions::default())
        .map_err(turns_error)?;
    let registry = Registry::open(&manager, &project).map_err(turns_error)?;
    Ok((manager, project, Sessions::new(engine, registry)))
}

/// A turns error as the CLI reports it (a start failure: exit 4).
fn turns_error(error: turns::Error) -> CliError {
    match error {
        turns::Error::Manager(e) => CliError::Start(Box::new(e)),
        turns::Error::Registry(e) => CliError::Manager(e),
        other => CliError::Io {
            context: "talking to the server".into(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

fn print_line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
}

fn entry_json(view: &SessionView) -> Value {
    let entry = view.entry.as_ref();
    let session = view.session.as_ref();
    json!({
        "sessionId": entry.map(|e| e.session_id.as_str()).or(session.map(|s| s.id.as_str())),
        "title": entry.map(|e| e.title.as_str()).or(session.map(|s| s.title.as_str())),
        "status": entry.map(|e| e.status),
        "onServer": session.is_some(),
        "turns": entry.map(|e| e.turns),
        "usage": entry.map(|e| e.usage),
        "model": entry.and_then(|e| e.model.as_deref()),
        "lastActive": entry.map(|e| e.last_active),
    })
}

fn human_row(view: &SessionView) -> String {
    let v = entry_json(view);
    let text = |key: &str| v[key].as_str().unwrap_or("-").to_string();
    let status = v["status"].as_str().unwrap_or("unrecorded");
    format!(
        "{:<32} {:<12} {:>5} {:>9} {:>9}  {}{}",
        text("sessionId"),
        status,
        v["turns"].as_u64().unwrap_or(0),
        v["usage"]["input"].as_u64().unwrap_or(0),
        v["usage"]["output"].as_u64().unwrap_or(0),
        crate::error::shell_word(&text("title")),
        if view.session.is_some() {
            ""
        } else {
            " (gone from the server)"
        }
    )
}

/// The project's totals over the recorded sessions (turns, tokens in and
/// out, cost), as the table's last row; `None` without any.
fn total_row(views: &[SessionView]) -> Option<String> {
    let entries: Vec<_> = views.iter().filter_map(|v| v.entry.as_ref()).collect();
    if entries.is_empty() {
        return None;
    }
    let mut usage = turns::Usage::default();
    for entry in &entries {
        usage.add(&entry.usage);
    }
    let turns: u64 = entries.iter().map(|e| e.turns).sum();
    Some(format!(
        "{:<32} {:<12} {:>5} {:>9} {:>9}  cost {:.4}",
        "total", "", turns, usage.input, usage.output, usage.cost
    ))
}

/// Finds a recorded session by id or title.
fn find(sessions: &Sessions, wanted: &str) -> Result<Option<SessionView>, CliError> {
    Ok(pick(sessions.list().map_err(turns_error)?, wanted))
}

/// The session `wanted` names among `views` (the registry's entries in
/// the order they were made, then the server's other sessions): by id;
/// else by title, the newest entry of it that is not closed, then the
/// newest closed one, then the server's newest session of that title.
fn pick(views: Vec<SessionView>, wanted: &str) -> Option<SessionView> {
    let id_of = |v: &SessionView| {
        v.entry
            .as_ref()
            .map(|e| e.session_id.as_str() == wanted)
            .or(v.session.as_ref().map(|s| s.id.as_str() == wanted))
            .unwrap_or(false)
    };
    if let Some(i) = views.iter().position(id_of) {
        return views.into_iter().nth(i);
    }
    let entry_titled = |open: bool| {
        move |v: &SessionView| {
            v.entry.as_ref().is_some_and(|e| {
                (e.key == wanted || e.title == wanted)
                    && (e.status != turns::SessionState::Closed) == open
            })
        }
    };
    let server_titled = |v: &SessionView| {
        v.entry.is_none() && v.session.as_ref().is_some_and(|s| s.title == wanted)
    };
    let at = views
        .iter()
        .rposition(entry_titled(true))
        .or_else(|| views.iter().rposition(entry_titled(false)))
        .or_else(|| {
            views
                .iter()
                .enumerate()
                .filter(|(_, v)| server_titled(v))
                .max_by_key(|(_, v)| v.session.as_ref().map(|s| s.time.updated))
                .map(|(i, _)| i)
        })?;
    views.into_iter().nth(at)
}

/// The session key the options name (the default session without any).
fn key_of(args: &crate::prompt::PromptArgs) -> Result<SessionKey, CliError> {
    let usage = |message: String| {
        CliError::Usage(UsageError {
            message,
            command: Some(Name::SessionNew),
        })
    };
    Ok(match (&args.title, &args.team, &args.agent, &args.role) {
        (Some(title), ..) => SessionKey::Title(title.clone()),
        (None, Some(team), Some(agent), Some(role)) => {
            SessionKey::team(team, agent, role).map_err(|e| usage(e.to_string()))?
        }
        _ => SessionKey::Default,
    })
}

/// Runs `ocm session ...`.
pub fn run(cli: &Cli, command: &SessionCommand) -> Result<i32, CliError> {
    match command {
        SessionCommand::Ls { dir } => {
            let (_, _, sessions) = open(cli, dir.as_deref())?;
            let views = sessions.list().map_err(turns_error)?;
            if cli.json {
                let all: Vec<Value> = views.iter().map(entry_json).collect();
                print_line(&serde_json::to_string_pretty(&all).unwrap_or_default());
            } else {
                print_line(&format!(
                    "{:<32} {:<12} {:>5} {:>9} {:>9}  TITLE",
                    "SESSION", "STATUS", "TURNS", "IN", "OUT"
                ));
                for view in &views {
                    print_line(&human_row(view));
                }
                if let Some(total) = total_row(&views) {
                    print_line(&total);
                }
            }
            Ok(EXIT_OK)
        }
        SessionCommand::New(args) => {
            let (_, _, sessions) = open(cli, args.dir.as_deref())?;
            let model = match &args.model {
                Some(m) => Some(opencode_api::ModelRef::parse(m).map_err(|e| {
                    CliError::Usage(UsageError {
                        message: format!("--model: {e}"),
                        command: Some(Name::SessionNew),
                    })
                })?),
                None => None,
            };
            let entry: SessionEntry = sessions
                .create(&key_of(args)?, model.as_ref())
                .map_err(turns_error)?;
            if cli.json {
                print_line(&serde_json::to_string_pretty(&entry).unwrap_or_default());
            } else {
                print_line(entry.session_id.as_str());
            }
            Ok(EXIT_OK)
        }
        SessionCommand::Show { dir, session } | SessionCommand::Rm { dir, session } => {
            let (_, _, sessions) = open(cli, dir.as_deref())?;
            let wanted = session.to_string_lossy();
            let Some(view) = find(&sessions, &wanted)? else {
                return Err(CliError::NoSession {
                    wanted: wanted.into_owned(),
                });
            };
            if let SessionCommand::Rm { .. } = command {
                let id = view
                    .entry
                    .as_ref()
                    .map(|e| e.session_id.clone())
                    .or(view.session.as_ref().map(|s| s.id.clone()))
                    .unwrap_or_else(|| SessionId::from(wanted.as_ref()));
                sessions.delete(&id).map_err(turns_error)?;
                if !cli.json {
                    print_line(&format!("deleted {id}"));
                } else {
                    print_line(&json!({"deleted": id}).to_string());
                }
                return Ok(EXIT_OK);
            }
            let v = entry_json(&view);
            if cli.json {
                print_line(&serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                for key in ["sessionId", "title", "status", "onServer", "turns", "model"] {
                    print_line(&format!("{key:<10} {}", v[key]));
                }
                for key in [
                    "input",
                    "output",
                    "reasoning",
                    "cacheRead",
                    "cacheWrite",
                    "cost",
                ] {
                    print_line(&format!("{key:<10} {}", v["usage"][key]));
                }
            }
            Ok(EXIT_OK)
        }
    }
}

/// Runs `ocm events`: until Ctrl-C.
/// `ocm relay`: the project's event relay in the foreground, until its
/// server's stream ends; one line on stdout says why it ended.
pub fn relay(cli: &Cli, dir: Option<&Path>) -> Result<i32, CliError> {
    let project = dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let manager = Manager::new(crate::commands::config(cli, None)?)?;
    let end = manager.run_relay(&project)?;
    print_line(&format!("relay ended: {end}"));
    Ok(match end {
        manager::RelayEnd::NotRunning => crate::error::EXIT_NOT_RUNNING,
        _ => crate::error::EXIT_OK,
    })
}

pub fn events(cli: &Cli, dir: Option<&Path>, all: bool) -> Result<i32, CliError> {
    let signals = manager::catch_interrupts()?;
    let project = dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let manager = Manager::new(crate::commands::config(cli, None)?)?;
    // The one stream this command reads: not the engine's.
    let client = manager
        .ensure(&project)
        .map_err(|e| CliError::Start(Box::new(e)))?
        .client()
        .map_err(|e| turns_error(e.into()))?;
    let directory = manager::project(&project)?.path.display().to_string();
    let mut stream = client
        .global_event_stream()
        .map_err(|e| turns_error(e.into()))?;
    loop {
        if let Some(signal) = signals.try_next() {
            return Ok(128 + signal);
        }
        let item = stream
            .next(Instant::now() + Duration::from_millis(200))
            .map_err(|e| turns_error(e.into()))?;
        let Some(item) = item else { continue };
        let (dir, kind, session) = match &item {
            StreamItem::Event(e) => (
                e.directory.clone().unwrap_or_default(),
                e.payload.kind_name().to_string(),
                e.payload.session_id().map(|s| s.to_string()),
            ),
            StreamItem::Connected => (String::new(), "(connected)".into(), None),
            StreamItem::Disconnected { reason, .. } => {
                (String::new(), format!("(disconnected: {reason})"), None)
            }
        };
        if !all && !dir.is_empty() && dir != directory {
            continue;
        }
        if cli.json {
            print_line(&json!({"directory": dir, "type": kind, "sessionId": session}).to_string());
        } else {
            print_line(&format!(
                "{kind} {} {}",
                session.as_deref().unwrap_or("-"),
                crate::error::shell_word(&dir)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turns::SessionState;

    fn recorded(id: &str, title: &str, status: SessionState) -> SessionView {
        SessionView {
            entry: Some(SessionEntry {
                key: title.into(),
                session_id: SessionId::from(id),
                title: title.into(),
                status,
                model: None,
                usage: turns::Usage::default(),
                turns: 0,
                created: 1,
                last_active: 0,
            }),
            session: None,
        }
    }

    fn on_server(id: &str, title: &str, updated: u64) -> SessionView {
        SessionView {
            entry: None,
            session: Some(
                serde_json::from_str(&format!(
                    r#"{{"id":"{id}","title":"{title}","directory":"/","time":{{"created":1,"updated":{updated}}}}}"#
                ))
                .unwrap(),
            ),
        }
    }

    fn picked(views: Vec<SessionView>, wanted: &str) -> Option<String> {
        pick(views, wanted).map(|v| match (v.entry, v.session) {
            (Some(e), _) => e.session_id.to_string(),
            (None, Some(s)) => s.id.to_string(),
            (None, None) => unreachable!(),
        })
    }

    #[test]
    fn a_title_names_its_newest_open_session_then_its_newest_closed_one() {
        let views = || {
            vec![
                recorded("ses_a", "t", SessionState::Crashed),
                recorded("ses_b", "t", SessionState::Active),
                recorded("ses_c", "t", SessionState::Closed),
                recorded("ses_d", "u", SessionState::Closed),
                recorded("ses_e", "u", SessionState::Closed),
                on_server("ses_f", "v", 1),
                on_server("ses_g", "v", 9),
                on_server("ses_h", "v", 5),
            ]
        };
        assert_eq!(picked(views(), "t").as_deref(), Some("ses_b"));
        assert_eq!(picked(views(), "u").as_deref(), Some("ses_e"));
        assert_eq!(picked(views(), "v").as_deref(), Some("ses_g"));
        assert_eq!(picked(views(), "ses_a").as_deref(), Some("ses_a"));
        assert_eq!(picked(views(), "ses_h").as_deref(), Some("ses_h"));
        assert_eq!(picked(views(), "w"), None);
    }
}
