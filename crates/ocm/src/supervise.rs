//! `ocm supervise` (watch servers in the foreground, one line per
//! transition) and `ocm unit` (a systemd user unit that runs it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use manager::{Config, Manager, Notice, RestartPolicy, SuperviseConfig, Supervisor, WatchOutcome};

use crate::cli::Cli;
use crate::error::CliError;

/// `ocm supervise`'s options (the `Parsed` fields its option rows fill).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SuperviseOptions {
    pub all: bool,
    pub verbose: bool,
    pub restart: Option<RestartPolicy>,
    pub max_restarts: Option<u32>,
    pub within: Option<Duration>,
    pub stall: Option<Duration>,
    pub max_memory: Option<u64>,
    pub max_delay: Option<Duration>,
    pub stop_on_exit: bool,
}

/// `ocm supervise [DIR...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SuperviseArgs {
    pub dirs: Vec<PathBuf>,
    pub options: SuperviseOptions,
}

impl SuperviseOptions {
    /// The supervisor's configuration: the defaults, then `OCM_SUPERVISE_*`
    /// from the environment, then the flags.
    pub fn config(&self) -> Result<SuperviseConfig, String> {
        let mut config = SuperviseConfig::default();
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("OCM_SUPERVISE_RESTART") {
            config.restart = v.parse()?;
        }
        if let Some(v) = env("OCM_SUPERVISE_MAX_RESTARTS") {
            config.start_limit = v
                .parse()
                .map_err(|_| format!("OCM_SUPERVISE_MAX_RESTARTS: {v:?}"))?;
        }
        if let Some(v) = env("OCM_SUPERVISE_WITHIN") {
            config.start_window = parse_secs(&v)?;
        }
        if let Some(v) = env("OCM_SUPERVISE_STALL") {
            config.stall = parse_secs(&v)?;
        }
        if let Some(v) = env("OCM_SUPERVISE_MAX_MEMORY") {
            config.max_memory = Some(parse_size(&v)?);
        }
        if let Some(v) = env("OCM_SUPERVISE_MAX_DELAY") {
            config.delay_cap = parse_secs(&v)?.max(config.delay_floor);
        }
        if let Some(v) = env("OCM_SUPERVISE_BUSY_WAIT") {
            config.busy_wait = parse_secs(&v)?;
        }
        if let Some(restart) = self.restart {
            config.restart = restart;
        }
        if let Some(n) = self.max_restarts {
            config.start_limit = n;
        }
        if let Some(within) = self.within {
            config.start_window = within;
        }
        if let Some(stall) = self.stall {
            config.stall = stall;
        }
        if let Some(bytes) = self.max_memory {
            config.max_memory = Some(bytes);
        }
        if let Some(delay) = self.max_delay {
            config.delay_cap = delay.max(config.delay_floor);
        }
        config.stop_on_exit = self.stop_on_exit;
        Ok(config)
    }
}

/// Seconds, fractions allowed (`2`, `0.5`).
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("'{text}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A size: bytes, or with K, M, G (powers of 1024; `KiB`, `MB`... alike).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 800M, 2G)"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let factor: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("'{text}': unknown unit (K, M, G, T)")),
    };
    let bytes = number * factor as f64;
    if !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("'{text}' is out of range"));
    }
    Ok(bytes as u64)
}

fn config_for(cli: &Cli) -> Config {
    let mut config = Config::from_env();
    config.state_root = cli.state_dir.clone();
    config
}

fn manager_for(cli: &Cli) -> Result<Manager, CliError> {
    Ok(Manager::new(config_for(cli))?)
}

/// Sandboxes' projects get their server's configuration (password, ports
/// from `.env`) and their companion; other projects nothing. `None` when
/// there is no data folder to find sandboxes in.
fn sandbox_projects(cli: &Cli) -> Option<manager::ProjectSource> {
    let ocm = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ocm"));
    let mut config = sandbox::SandboxConfig::new(ocm);
    config.manager = config_for(cli);
    let sandboxes = sandbox::Sandboxes::new(config).ok()?;
    Some(std::sync::Arc::new(move |project: &std::path::Path| {
        sandboxes.project_setup(project).map_err(|e| e.to_string())
    }))
}

fn usage(message: String) -> CliError {
    CliError::Usage(crate::cli::UsageError {
        message,
        command: Some(crate::cli::Name::Supervise),
    })
}

/// Runs `ocm supervise` until SIGINT or SIGTERM. Exit 0; 1 when it was
/// given folders and watches none of them (another supervisor has them).
pub fn run(cli: &Cli, args: &SuperviseArgs) -> Result<i32, CliError> {
    let config = args.options.config().map_err(usage)?;
    let signals = manager::catch_interrupts()?;
    // A start in progress when SIGINT or SIGTERM arrives is cut short (its
    // server stopped), so that the supervisor stops watching at once.
    let manager = manager_for(cli)?.with_interrupts(std::sync::Arc::clone(&signals));
    let supervisor = Supervisor::start_with(manager, config, sandbox_projects(cli))?;
    let notices = supervisor.subscribe(args.options.verbose);
    let json = cli.json;
    let printer = std::thread::Builder::new()
        .name("ocm-supervise-print".into())
        .spawn(move || {
            for notice in notices {
                let line = if json {
                    notice_json(&notice).to_string()
                } else {
                    escape_controls(&notice.to_string())
                };
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| {
            CliError::Manager(Box::new(manager::Error::Supervise {
                reason: format!("cannot start the printer thread: {e}"),
            }))
        })?;
    let dirs = if args.dirs.is_empty() && !args.options.all {
        vec![PathBuf::from(".")]
    } else {
        args.dirs.clone()
    };
    let mut watching = 0;
    let mut failed = None;
    for dir in &dirs {
        match supervisor.watch(dir) {
            Ok(WatchOutcome::Watching { .. }) => watching += 1,
            Ok(WatchOutcome::HeldBy { project, pid }) => {
                let by = pid.map_or("another supervisor".to_string(), |p| format!("pid {p}"));
                if !cli.quiet {
                    eprintln!(
                        "ocm: {} is supervised by {by} already; leaving it alone",
                        escape_controls(&project.display().to_string())
                    );
                }
            }
            Err(e) => {
                eprintln!("ocm: {}", escape_controls(&e.to_string()));
                failed = Some(e);
            }
        }
    }
    if args.options.all {
        let taken = supervisor.watch_all()?;
        watching += taken
            .iter()
            .filter(|o| matches!(o, WatchOutcome::Watching { .. }))
            .count();
    }
    if watching == 0 && !args.options.all {
        drop(supervisor);
        let _ = printer.join();
        return match failed {
            Some(e) => Err(e.into()),
            None => Ok(1),
        };
    }
    let notify = SdNotify::from_env();
    notify.send("READY=1");
    let watchdog = notify.watchdog_interval();
    loop {
        let deadline = match watchdog {
            Some(every) => Instant::now() + every,
            None => Instant::now() + Duration::from_secs(3600),
        };
        if signals.wait(deadline).is_some() {
            break;
        }
        if watchdog.is_some() {
            notify.send("WATCHDOG=1");
        }
    }
    notify.send("STOPPING=1");
    drop(supervisor);
    let _ = printer.join();
    Ok(0)
}

/// `ocm status`'s rows about the supervisor watching the project, if any.
pub fn status_rows(status: &manager::ServerStatus) -> Vec<(&'static str, String)> {
    let Some(info) = &status.supervisor else {
        return Vec::new();
    };
    let mut rows = vec![(
        "watched",
        format!(
            "by ocm supervise (pid {}): {}, {} restart{}",
            info.pid,
            info.state,
            info.restarts,
            if info.restarts == 1 { "" } else { "s" }
        ),
    )];
    if let Some(t) = &info.last_transition {
        let first = t.message.lines().next().unwrap_or_default();
        rows.push((
            "last",
            escape_controls(&format!(
                "{} -> {} at {}: {first}",
                t.previous, t.state, t.at
            )),
        ));
    }
    let mut metrics = format!(
        "{} events, {} reconnects, {} relay clients",
        info.events_received, info.reconnects, info.relay_clients
    );
    if let Some(age) = info.last_event_age_ms {
        metrics.push_str(&format!(", last event {:.1} s ago", age as f64 / 1000.0));
    }
    rows.push(("stream", metrics));
    if info.companion_pid.is_some() || info.companion_restarts > 0 {
        let pid = info
            .companion_pid
            .map_or("not running".to_string(), |pid| format!("pid {pid}"));
        let n = info.companion_restarts;
        rows.push((
            "companion",
            format!("{pid}, {n} restart{}", if n == 1 { "" } else { "s" }),
        ));
    }
    if let Some(exit) = &info.last_exit {
        let first = exit.lines().next().unwrap_or_default();
        rows.push(("last end", escape_controls(first)));
    }
    for line in &info.log_tail {
        rows.push(("log tail", escape_controls(line)));
    }
    rows
}

fn notice_json(notice: &Notice) -> serde_json::Value {
    match notice {
        Notice::Transition(t) => serde_json::to_value(t).unwrap_or_default(),
        Notice::Event { project, kind } => {
            serde_json::json!({"project": project, "event": kind})
        }
        Notice::Note { project, message } => {
            serde_json::json!({"project": project, "note": message})
        }
    }
}

/// Control characters as `\u{..}`: what ocm prints of what it did not write.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// systemd's readiness protocol: datagrams to `$NOTIFY_SOCKET`.
struct SdNotify {
    socket: Option<(std::os::unix::net::UnixDatagram, PathBuf)>,
}

impl SdNotify {
    fn from_env() -> SdNotify {
        let socket = std::env::var_os("NOTIFY_SOCKET")
            .map(PathBuf::from)
            // Abstract sockets (`@name`) need an API std does not offer on
            // stable; systemd uses a path for user services.
            .filter(|p| p.is_absolute())
            .and_then(|path| {
                let socket = std::os::unix::net::UnixDatagram::unbound().ok()?;
                Some((socket, path))
            });
        SdNotify { socket }
    }

    fn send(&self, message: &str) {
        if let Some((socket, path)) = &self.socket {
            let _ = socket.send_to(message.as_bytes(), path);
        }
    }

    /// Half of `$WATCHDOG_USEC`, when it is set for this process.
    fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID")
            && pid.parse::<u32>().ok() != Some(std::process::id())
        {
            return None;
        }
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

/// `ocm unit [DIR...] [--all]`: prints a systemd user unit running
/// `ocm supervise` with this binary and the state folder, absolute.
pub fn unit(cli: &Cli, args: &SuperviseArgs) -> Result<i32, CliError> {
    let manager = manager_for(cli)?;
    let text = unit_text(
        &std::env::current_exe().map_err(|e| {
            CliError::Manager(Box::new(manager::Error::Supervise {
                reason: format!("cannot find this ocm: {e}"),
            }))
        })?,
        manager.state_root(),
        &args
            .dirs
            .iter()
            .map(|d| manager::project(d).map(|p| p.path))
            .collect::<Result<Vec<_>, _>>()?,
        &args.options,
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    Ok(0)
}

/// The unit's text.
pub fn unit_text(ocm: &Path, state: &Path, dirs: &[PathBuf], options: &SuperviseOptions) -> String {
    let mut command = vec![
        ocm.display().to_string(),
        "--state-dir".into(),
        state.display().to_string(),
        "supervise".into(),
    ];
    if options.all || dirs.is_empty() {
        command.push("--all".into());
    }
    if let Some(restart) = options.restart {
        command.push("--restart".into());
        command.push(
            match restart {
                RestartPolicy::OnFailure => "on-failure",
                RestartPolicy::Always => "always",
                RestartPolicy::Never => "never",
            }
            .into(),
        );
    }
    if let Some(n) = options.max_restarts {
        command.push("--max-restarts".into());
        command.push(n.to_string());
    }
    if let Some(w) = options.within {
        command.push("--within".into());
        command.push(w.as_secs_f64().to_string());
    }
    if let Some(s) = options.stall {
        command.push("--stall".into());
        command.push(s.as_secs_f64().to_string());
    }
    if let Some(d) = options.max_delay {
        command.push("--max-delay".into());
        command.push(d.as_secs_f64().to_string());
    }
    if let Some(m) = options.max_memory {
        command.push("--max-memory".into());
        command.push(m.to_string());
    }
    if options.stop_on_exit {
        command.push("--stop-on-exit".into());
    }
    command.extend(dirs.iter().map(|d| d.display().to_string()));
    let exec = command
        .iter()
        .map(|w| systemd_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let what = if dirs.is_empty() {
        "every project".to_string()
    } else {
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "# A systemd user unit: save as ~/.config/systemd/user/ocm-supervise.service,\n\
         # then `systemctl --user daemon-reload && systemctl --user enable --now ocm-supervise`.\n\
         [Unit]\n\
         Description=ocm: keep the OpenCode servers of {what} healthy\n\
         \n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=main\n\
         ExecStart={exec}\n\
         Environment={env}\n\
         WatchdogSec=30\n\
         Restart=on-failure\n\
         RestartSec=1\n\
         # The servers lead their own sessions and outlive the supervisor:\n\
         # stopping the unit stops watching, not the servers (ocm down does).\n\
         KillMode=process\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        what = systemd_escape_text(&what),
        env = systemd_quote(&format!("OCM_STATE_DIR={}", state.display())),
    )
}

/// One word of a systemd command line: double-quoted, with `\`, `"`
/// escaped and `%` and `$` doubled (systemd's specifiers and variables).
fn systemd_quote(word: &str) -> String {
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn systemd_escape_text(text: &str) -> String {
    text.replace('%', "%%").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_seconds() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("800M").unwrap(), 800 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("10X").is_err());
        assert_eq!(parse_secs("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_secs("-1").is_err());
    }

    #[test]
    fn the_unit_runs_this_ocm_with_quoted_absolute_paths() {
        let text = unit_text(
            Path::new("/opt/o c m/ocm"),
            Path::new("/home/u/.local/state/ocm"),
            &[PathBuf::from("/work/100%")],
            &SuperviseOptions::default(),
        );
        assert!(text.contains("Type=notify\n"), "{text}");
        assert!(text.contains(
            "ExecStart=\"/opt/o c m/ocm\" \"--state-dir\" \"/home/u/.local/state/ocm\" \"supervise\" \"/work/100%%\"\n"
        ), "{text}");
    }

    #[test]
    fn systemd_analyze_verify_accepts_the_unit() {
        let Ok(status) = std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
        else {
            return; // not installed: nothing to check against
        };
        if !status.status.success() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ocm = dir.path().join("ocm");
        std::fs::write(&ocm, "#!/bin/sh\n").unwrap();
        let mut perms = std::fs::metadata(&ocm).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&ocm, perms).unwrap();
        let unit = dir.path().join("ocm-supervise.service");
        std::fs::write(
            &unit,
            unit_text(
                &ocm,
                dir.path(),
                &[dir.path().to_path_buf()],
                &SuperviseOptions::default(),
            ),
        )
        .unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--user"])
            .arg(&unit)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Outside a user session, verify may complain about the manager
        // itself; what matters is that nothing about this unit is wrong.
        let about_unit: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ocm-supervise.service"))
            .collect();
        assert!(about_unit.is_empty(), "{stderr}");
    }
}
