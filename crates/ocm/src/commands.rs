//! Runs a parsed command with a [`Manager`] and prints its result.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use manager::{Config, Manager, PasswordPolicy, PortPolicy, ServerInfo, ServerState, ServerStatus};

use crate::cli::{self, Action, Cli, Command, StartOptions, UsageError};
use crate::error::{CliError, EXIT_NOT_RUNNING, EXIT_OK, shell_word};
use crate::follow;
use crate::progress::{Reporter, stderr_is_tty};
use crate::render;

/// Parses `args` (without the program name), runs the command, reports
/// errors on stderr (and as JSON on stdout with `--json`), and returns the
/// exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let wants_json = args.iter().any(|a| a == "--json");
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(usage) => return report_error(&CliError::Usage(usage), wants_json),
    };
    match run(&cli) {
        Ok(code) => code,
        Err(error) => report_error(&error, cli.json),
    }
}

fn report_error(error: &CliError, json: bool) -> i32 {
    let code = error.exit_code();
    let hint = error.hint();
    if json {
        print_json(&render::error_json(
            &error.to_string(),
            hint.as_deref(),
            code,
        ));
    }
    let mut text = format!("ocm: error: {error}\n");
    if let Some(hint) = hint {
        for line in hint.lines() {
            text.push_str(&format!("hint: {line}\n"));
        }
    }
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
    code
}

/// Runs the command; `Ok` carries the exit status of a command that did
/// its job (`status` of a stopped project: 3; `exec`: the command's).
pub fn run(cli: &Cli) -> Result<i32, CliError> {
    let command = match &cli.action {
        Action::Help(None) => return print(&cli::overview()).map(|()| EXIT_OK),
        Action::Help(Some(name)) => return print(&cli::command_help(*name)).map(|()| EXIT_OK),
        Action::Version => {
            return print(&format!(
                "ocm {} (tested with opencode {})\n",
                env!("CARGO_PKG_VERSION"),
                manager::OPENCODE_VERSION
            ))
            .map(|()| EXIT_OK);
        }
        Action::Run(command) => command,
    };
    let reporter = Reporter::for_stderr(cli.quiet);
    let start = match command {
        Command::Up { start, .. }
        | Command::Restart { start, .. }
        | Command::Exec { start, .. } => Some(start),
        _ => None,
    };
    // Made by the commands that need one (`port` is arithmetic on the path
    // and needs no state).
    let manager = || -> Result<Manager, CliError> {
        let manager = Manager::new(config(cli, start)?)?.with_progress(reporter.sink());
        // Ctrl-C (or SIGTERM, a hang-up) during a start cancels it: the
        // server being started is stopped and recorded as stopped.
        Ok(match start {
            Some(_) => manager.with_interrupts(manager::catch_interrupts()?),
            None => manager,
        })
    };
    let here = PathBuf::from(".");
    let dir_or_here = |dir: &Option<PathBuf>| dir.clone().unwrap_or_else(|| here.clone());
    match command {
        Command::Up { dir, start } => {
            let began = Instant::now();
            let info = manager()
                .and_then(|m| Ok(m.ensure(&dir_or_here(dir))?))
                .map_err(CliError::starting)?;
            reporter.finish();
            warn_unapplied(&reporter, &info, start);
            show_server(cli, &info, began)
        }
        Command::Restart { dir, .. } => {
            let began = Instant::now();
            let info = manager()
                .and_then(|m| Ok(m.restart(&dir_or_here(dir))?))
                .map_err(CliError::starting)?;
            reporter.finish();
            show_server(cli, &info, began)
        }
        Command::Down { dir } => down(cli, &manager()?, &reporter, &dir_or_here(dir)),
        Command::Destroy { dir } => destroy(cli, &manager()?, &reporter, &dir_or_here(dir)),
        Command::Status { dir } => {
            reporter.phase("checking the server");
            let status = checked_status(&manager()?, &reporter, &dir_or_here(dir))?;
            reporter.finish();
            if cli.json {
                print_json(&render::status_json(&status));
            } else {
                print(&render::status_block(&status))?;
            }
            Ok(if status.status == ServerState::Running {
                EXIT_OK
            } else {
                EXIT_NOT_RUNNING
            })
        }
        Command::Url { dir } => {
            reporter.phase("checking the server");
            let status = checked_status(&manager()?, &reporter, &dir_or_here(dir))?;
            reporter.finish();
            if status.status != ServerState::Running {
                return Err(CliError::NotRunning {
                    project: status.project,
                    state: status.status,
                    detail: status.detail,
                });
            }
            if cli.json {
                print_json(&render::status_json(&status));
            } else {
                print(&format!("{}\n", status.url.unwrap_or_default()))?;
            }
            Ok(EXIT_OK)
        }
        Command::Ls => {
            reporter.phase("checking the servers");
            let all = manager()?.list()?;
            reporter.finish();
            if cli.json {
                print_json(&serde_json::Value::Array(
                    all.iter().map(render::status_json).collect(),
                ));
            } else {
                print(&render::list_table(&all))?;
            }
            Ok(EXIT_OK)
        }
        Command::Port { dir } => port(cli, manager, &reporter, &dir_or_here(dir)),
        Command::Logs { dir, lines, follow } => logs(
            cli,
            &manager()?,
            &reporter,
            &dir_or_here(dir),
            *lines,
            *follow,
        ),
        Command::Exec {
            dir, program, args, ..
        } => {
            let began = Instant::now();
            let info = manager()
                .and_then(|m| Ok(m.ensure(&dir_or_here(dir))?))
                .map_err(CliError::starting)?;
            reporter.finish();
            if !info.reused && stderr_is_tty() {
                reporter.note(&render::server_line(&info, began.elapsed()));
            }
            drop(reporter);
            exec(&info, program, args)
        }
        Command::Prompt(args) => crate::prompt::run(cli, args),
        Command::Session(session) => crate::sessions::run(cli, session),
        Command::Events { dir, all } => crate::sessions::events(cli, dir.as_deref(), *all),
        Command::Gc => {
            let manager = manager()?;
            // What each project was before gc, for --json to report removed
            // projects in full (gc itself returns their state folders).
            let before = if cli.json {
                reporter.phase("checking the servers");
                manager.list()?
            } else {
                Vec::new()
            };
            let report = manager.gc()?;
            reporter.finish();
            if cli.json {
                print_json(&render::gc_json(&report, &before));
            } else {
                print(&lines(render::gc_lines(&report)))?;
            }
            Ok(EXIT_OK)
        }
    }
}

/// `ocm port`: arithmetic on the path, no state needed; `--json` adds the
/// project's status (which never starts anything).
fn port(
    cli: &Cli,
    manager: impl FnOnce() -> Result<Manager, CliError>,
    reporter: &Reporter,
    dir: &Path,
) -> Result<i32, CliError> {
    let project = manager::project(dir)?;
    if cli.json {
        reporter.phase("checking the server");
        let status = manager()?.status(&project.path)?;
        reporter.finish();
        print_json(&render::port_json(&status, project.port, &project.hash));
    } else {
        print(&format!("{}\n", project.port))?;
    }
    Ok(EXIT_OK)
}

/// The project's status for `status` and `url`. A folder that does not
/// exist is an error unless ocm has a record for it (its server may still
/// run after the folder was deleted): then the status is shown with a note.
fn checked_status(
    manager: &Manager,
    reporter: &Reporter,
    dir: &Path,
) -> Result<ServerStatus, CliError> {
    let project = manager::project(dir)?.path;
    let exists = project.is_dir();
    // An unreadable state folder counts as a record: status says why.
    if !exists && !manager.paths(&project)?.record.try_exists().unwrap_or(true) {
        return Err(CliError::NoProject { project });
    }
    let status = manager.status(&project)?;
    if !exists {
        reporter.finish();
        reporter.note(&format!(
            "the project folder {} no longer exists",
            project.display()
        ));
    }
    Ok(status)
}

/// The manager's configuration: the environment plus the command line.
pub(crate) fn config(cli: &Cli, start: Option<&StartOptions>) -> Result<Config, CliError> {
    let mut config = Config::from_env();
    config.state_root = cli.state_dir.clone();
    let Some(start) = start else {
        return Ok(config);
    };
    if let Some(policy) = &start.port_policy {
        config.port_policy = policy.clone();
    }
    if let Some(hostname) = &start.hostname {
        config.hostname = hostname.clone();
    }
    if start.password_generate {
        if matches!(config.password, PasswordPolicy::Fixed(_)) {
            return Err(CliError::Usage(UsageError {
                message: "--password-generate and OPENCODE_SERVER_PASSWORD both give a \
                          password; use one of them"
                    .into(),
                command: None,
            }));
        }
        config.password = PasswordPolicy::Generate;
    }
    if start.no_password {
        if start.password_generate || matches!(config.password, PasswordPolicy::Fixed(_)) {
            return Err(CliError::Usage(UsageError {
                message: "--no-password contradicts --password-generate or \
                          OPENCODE_SERVER_PASSWORD; use one of them"
                    .into(),
                command: None,
            }));
        }
        config.password = PasswordPolicy::Off;
    }
    if let Some(timeout) = start.timeout {
        config.start_timeout = timeout;
    }
    Ok(config)
}

/// Says so when a reused server does not match the start options given:
/// they only apply when a server is started.
fn warn_unapplied(reporter: &Reporter, info: &ServerInfo, start: &StartOptions) {
    if !info.reused {
        return;
    }
    let mut differences = Vec::new();
    match &start.port_policy {
        Some(PortPolicy::Fixed(port)) if *port != info.port => {
            differences.push(format!("port {port}"));
        }
        Some(PortPolicy::Range(range)) if !range.contains(&info.port) => {
            differences.push(format!("a port in {}-{}", range.start(), range.end()));
        }
        _ => {}
    }
    // The parser already took `[::1]` apart into `::1`.
    // The server's hostname is the literal a name resolved to at its start.
    if let Some(host) = &start.hostname
        && manager::bind_literal(host).ok().as_deref() != Some(info.hostname.as_str())
    {
        differences.push(format!("hostname {host}"));
    }
    if start.password_generate && !info.has_auth() {
        differences.push("a password".into());
    }
    if !differences.is_empty() {
        reporter.note(&format!(
            "the running server was reused; {} applies at the next start (`ocm restart {}`)",
            differences.join(", "),
            shell_word(&info.project.display().to_string())
        ));
    }
}

fn show_server(cli: &Cli, info: &ServerInfo, began: Instant) -> Result<i32, CliError> {
    let elapsed = began.elapsed();
    if cli.json {
        print_json(&render::server_json(info, elapsed));
    } else {
        print(&format!("{}\n", render::server_line(info, elapsed)))?;
    }
    Ok(EXIT_OK)
}

fn down(cli: &Cli, manager: &Manager, reporter: &Reporter, dir: &Path) -> Result<i32, CliError> {
    let report = manager.stop(dir)?;
    reporter.finish();
    note_left_alone(reporter, report.left_alone);
    let after = manager.status(dir)?;
    if cli.json {
        print_json(&render::stop_json(&after, &report));
    } else {
        print(&lines(render::stop_lines(&report)))?;
    }
    Ok(EXIT_OK)
}

fn destroy(cli: &Cli, manager: &Manager, reporter: &Reporter, dir: &Path) -> Result<i32, CliError> {
    let state_dir = manager.paths(dir)?.dir;
    let existed = state_dir.exists();
    let report = manager.destroy(dir)?;
    reporter.finish();
    note_left_alone(reporter, report.left_alone);
    let after = manager.status(dir)?;
    if cli.json {
        let mut value = render::stop_json(&after, &report);
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "removed".into(),
                serde_json::json!(existed.then_some(&state_dir)),
            );
        }
        print_json(&value);
    } else {
        let mut out = render::stop_lines(&report);
        if existed {
            // "not running" is implied by the removal; say what was done.
            out.retain(|l| !l.starts_with("not running"));
            out.push(format!("removed {}", state_dir.display()));
        } else {
            out = vec![format!(
                "nothing to remove for {}",
                report.project.display()
            )];
        }
        print(&lines(out))?;
    }
    Ok(EXIT_OK)
}

fn note_left_alone(reporter: &Reporter, left_alone: Option<u32>) {
    if let Some(pid) = left_alone {
        reporter.note(&format!(
            "the recorded pid {pid} is not this project's server (another program has it now); \
             it was left alone"
        ));
    }
}

fn logs(
    cli: &Cli,
    manager: &Manager,
    reporter: &Reporter,
    dir: &Path,
    n: usize,
    follow: bool,
) -> Result<i32, CliError> {
    let project = manager::project(dir)?.path;
    let log = manager.paths(&project)?.log;
    let io_error = |source: std::io::Error| CliError::Io {
        context: format!("cannot read {}", log.display()),
        source,
    };
    let (file, text, end) = match std::fs::File::open(&log) {
        Ok(mut file) => {
            let (bytes, end) = manager::log_tail(&mut file, 0, n).map_err(io_error)?;
            (Some(file), bytes, end)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !follow {
                return Err(CliError::NoLog { project, log });
            }
            (None, Vec::new(), 0)
        }
        Err(e) => return Err(io_error(e)),
    };
    if cli.json {
        let status = manager.status(&project)?;
        print_json(&render::logs_json(
            &status,
            &log,
            &String::from_utf8_lossy(&text),
        ));
        return Ok(EXIT_OK);
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_all(&text).and_then(|()| stdout.flush());
    if !follow {
        return ignore_broken_pipe(written).map(|()| EXIT_OK);
    }
    if written.is_err() {
        return Ok(EXIT_OK);
    }
    if stderr_is_tty() {
        reporter.note(&format!("following {} (Ctrl-C to stop)", log.display()));
    }
    let outcome = follow::follow(&log, file, end, &mut stdout, |path| {
        reporter.note(&format!("waiting for {} to appear", path.display()));
    });
    match outcome {
        // Only a failed write ends the loop; a closed pipe is a normal end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
        Err(e) => Err(io_error(e)),
        Ok(()) => Ok(EXIT_OK),
    }
}

/// Runs the command with the server's environment and returns its exit
/// status (128 + N when signal N ended it).
fn exec(info: &ServerInfo, program: &OsString, args: &[OsString]) -> Result<i32, CliError> {
    use std::os::unix::process::ExitStatusExt;
    let mut child = std::process::Command::new(program)
        .args(args)
        .envs(info.child_env())
        .spawn()
        .map_err(|source| CliError::Exec {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
    // Ctrl-C and Ctrl-\ reach the command (same process group); ocm waits
    // for it to end and passes its status on, as a shell does.
    manager::signals::ignore_interrupts().map_err(|e| CliError::Io {
        context: "cannot ignore SIGINT and SIGQUIT while the command runs".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let status = child.wait().map_err(|source| CliError::Io {
        context: format!("cannot wait for {}", program.to_string_lossy()),
        source,
    })?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

fn lines(lines: Vec<String>) -> String {
    lines.into_iter().map(|l| l + "\n").collect()
}

/// Writes to stdout. A closed pipe (`ocm ls | head -1`) is not an error.
fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    ignore_broken_pipe(
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush()),
    )
}

fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    let _ = print(&(text + "\n"));
}

fn ignore_broken_pipe(result: std::io::Result<()>) -> Result<(), CliError> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(CliError::Io {
            context: "cannot write to stdout".into(),
            source,
        }),
        Ok(()) => Ok(()),
    }
}
