//! Runs a parsed command and prints its result.
//!
//! `up`, `restart` and `exec` make a [`Manager`] (which creates the state
//! folder); the commands that only look or clean up go through a
//! [`Store`], which needs no state folder to exist. Every project is
//! reported through a [`ProjectView`], so every command shows it the same
//! way; failures in the state folder are said with the folder and what
//! was being done ([`state::in_context`]).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use manager::{Config, Manager, PasswordPolicy, PortPolicy, ServerInfo, ServerState, ServerStatus};

use crate::cli::{self, Action, Cli, Command, StartOptions, UsageError};
use crate::error::{CliError, EXIT_NOT_RUNNING, EXIT_OK, folder_problem, shell_word};
use crate::escape::{LogWriter, escape_path};
use crate::follow;
use crate::progress::{Reporter, stderr_is_tty};
use crate::render::{self, json as render_json};
use crate::state::{self, Store};
use crate::view::ProjectView;

/// Parses `args` (without the program name), runs the command, reports
/// errors (on stderr, or with `--json` as one object on stdout and nothing
/// on stderr), and returns the exit status.
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
    let report = error.report();
    if json {
        print_json(&report.json());
    } else {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(report.human().as_bytes());
        let _ = stderr.flush();
    }
    report.code
}

/// Runs the command; `Ok` carries the exit status of a command that did
/// its job (`status` of a stopped project: 3; `exec`: the command's).
pub fn run(cli: &Cli) -> Result<i32, CliError> {
    let command = match &cli.action {
        Action::Help(None) => return print(&cli::overview()).map(|()| EXIT_OK),
        Action::Help(Some(name)) => return print(&cli::command_help(*name)).map(|()| EXIT_OK),
        Action::GroupHelp(word) => return print(&cli::group_help(word)).map(|()| EXIT_OK),
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
    run_command(cli, command, &reporter)
        .map_err(|error| state::in_context(error, cli, || doing(command)))
}

/// What a command does, for errors: `starting the server for /p`.
fn doing(command: &Command) -> String {
    let project = |dir: &Option<PathBuf>| {
        let dir = dir_or_here(dir);
        let path = manager::project(&dir).map_or(dir, |p| p.path);
        path.display().to_string()
    };
    match command {
        Command::Up { dir, .. } | Command::Exec { dir, .. } => {
            format!("starting the server for {}", project(dir))
        }
        Command::Restart { dir, .. } => format!("restarting the server for {}", project(dir)),
        Command::Down { dir } => format!("stopping the server for {}", project(dir)),
        Command::Destroy { dir } => format!("removing the state of {}", project(dir)),
        Command::Status { dir }
        | Command::Url { dir }
        | Command::Port { dir }
        | Command::Logs { dir, .. } => format!("reading the state of {}", project(dir)),
        Command::Ls => "listing the projects".into(),
        Command::Gc => "cleaning up".into(),
        Command::Prompt(args) => format!("prompting in {}", project(&args.dir)),
        Command::Session(_) => "working with the sessions".into(),
        Command::Events { dir, .. } => format!("following the events of {}", project(dir)),
        Command::Relay { dir } => format!("relaying the events of {}", project(dir)),
        Command::Mcp(_) => "serving MCP".into(),
        Command::Sandbox(cli::SandboxCommand::Ls) => "listing the sandboxes".into(),
        Command::Sandbox(cli::SandboxCommand::One { name, .. }) => {
            format!("working with the sandbox {name}")
        }
        Command::Supervise(_) => "supervising".into(),
        Command::Unit(_) => "writing the unit".into(),
    }
}

fn dir_or_here(dir: &Option<PathBuf>) -> PathBuf {
    dir.clone().unwrap_or_else(|| PathBuf::from("."))
}

fn run_command(cli: &Cli, command: &Command, reporter: &Reporter) -> Result<i32, CliError> {
    let start = match command {
        Command::Up { start, .. }
        | Command::Restart { start, .. }
        | Command::Exec { start, .. } => Some(start),
        _ => None,
    };
    let manager = || -> Result<Manager, CliError> {
        let manager = Manager::new(config(cli, start)?)?.with_progress(reporter.sink());
        // Ctrl-C (or SIGTERM, a hang-up) during a start cancels it: the
        // server being started is stopped and recorded as stopped.
        Ok(match start {
            Some(_) => manager.with_interrupts(manager::catch_interrupts()?),
            None => manager,
        })
    };
    // `up`, `restart`, `exec`: any failure means no server (exit 4).
    let starting = || manager().map_err(CliError::starting);
    match command {
        Command::Mcp(options) => crate::mcp::run(cli, options),
        Command::Sandbox(command) => crate::sandbox::run(cli, command),
        Command::Up { dir, start } => {
            let began = Instant::now();
            let manager = starting()?;
            let dir = dir_or_here(dir);
            let info = manager
                .ensure(&dir)
                .map_err(|e| start_error(e, &manager, &dir))?;
            reporter.finish();
            warn_unapplied(reporter, &info, start);
            show_server(cli, &manager, &info, began, None)
        }
        Command::Restart { dir, .. } => {
            let began = Instant::now();
            let manager = starting()?;
            let dir = dir_or_here(dir);
            // What runs now: restart says what it replaced.
            let before = manager.status(&dir).ok();
            let info = manager
                .restart(&dir)
                .map_err(|e| start_error(e, &manager, &dir))?;
            reporter.finish();
            show_server(cli, &manager, &info, began, Some(before))
        }
        Command::Exec {
            dir, program, args, ..
        } => {
            let began = Instant::now();
            let manager = starting()?;
            let dir = dir_or_here(dir);
            let info = manager
                .ensure(&dir)
                .map_err(|e| start_error(e, &manager, &dir))?;
            reporter.finish();
            if !info.reused && stderr_is_tty() {
                let view = ProjectView::of_server(&info, &manager)?;
                reporter.note(&render::server_line(&view, &info, began.elapsed(), None));
            }
            exec(&info, program, args)
        }
        Command::Down { dir } => down(cli, &Store::open(cli, manager)?, reporter, dir),
        Command::Destroy { dir } => destroy(cli, &Store::open(cli, manager)?, reporter, dir),
        Command::Status { dir } => {
            let store = Store::open(cli, manager)?;
            reporter.phase("checking the server");
            let view = store.view_of(checked_status(&store, reporter, &dir_or_here(dir))?);
            reporter.finish();
            if cli.json {
                print_json(&render_json::project_json(&view));
            } else {
                print(&render::status_block(&view))?;
            }
            Ok(if view.status.status == ServerState::Running {
                EXIT_OK
            } else {
                EXIT_NOT_RUNNING
            })
        }
        Command::Url { dir } => {
            let store = Store::open(cli, manager)?;
            reporter.phase("checking the server");
            let status = checked_status(&store, reporter, &dir_or_here(dir))?;
            reporter.finish();
            if status.status != ServerState::Running {
                return Err(CliError::NotRunning {
                    project: status.project,
                    state: status.status,
                    detail: status.detail,
                });
            }
            if cli.json {
                print_json(&render_json::project_json(&store.view_of(status)));
            } else {
                print(&format!(
                    "{}\n",
                    crate::escape::escape(&status.url.unwrap_or_default())
                ))?;
            }
            Ok(EXIT_OK)
        }
        Command::Ls => {
            let store = Store::open(cli, manager)?;
            reporter.phase("checking the servers");
            let all = store.list()?;
            reporter.finish();
            if cli.json {
                print_json(&serde_json::Value::Array(
                    all.into_iter()
                        .map(|s| render_json::project_json(&store.view_of(s)))
                        .collect(),
                ));
            } else {
                print(&render::list_table(&all))?;
            }
            Ok(EXIT_OK)
        }
        Command::Port { dir } => {
            // Arithmetic on the path: no state needed, unless --json asks
            // for the project's status too.
            let project = manager::project(&dir_or_here(dir))?;
            if cli.json {
                let store = Store::open(cli, manager)?;
                reporter.phase("checking the server");
                let view = store.view(&project.path)?;
                reporter.finish();
                print_json(&render_json::port_json(&view, &project.hash));
            } else {
                print(&format!("{}\n", project.port))?;
            }
            Ok(EXIT_OK)
        }
        Command::Logs { dir, lines, follow } => logs(
            cli,
            &Store::open(cli, manager)?,
            reporter,
            &dir_or_here(dir),
            *lines,
            *follow,
        ),
        Command::Prompt(args) => crate::prompt::run(cli, args),
        Command::Session(session) => crate::sessions::run(cli, session),
        Command::Events { dir, all } => crate::sessions::events(cli, dir.as_deref(), *all),
        Command::Relay { dir } => crate::sessions::relay(cli, dir.as_deref()),
        Command::Supervise(args) => crate::supervise::run(cli, args),
        Command::Unit(args) => crate::supervise::unit(cli, args),
        Command::Gc => {
            let store = Store::open(cli, manager)?;
            // What each project was before gc: gc reports removed projects
            // by name, as they were (gc itself returns state folders).
            reporter.phase("checking the servers");
            let before = store.list()?;
            let before_views: Vec<ProjectView> =
                before.iter().map(|s| store.view_of(s.clone())).collect();
            let report = store.gc()?;
            reporter.finish();
            if cli.json {
                let gone: Vec<ProjectView> = report
                    .project_gone
                    .iter()
                    .map(|s| store.view_of(s.clone()))
                    .collect();
                print_json(&render_json::gc_json(&report, &before_views, &gone));
            } else {
                print(&lines(render::gc_lines(&report, &before)))?;
            }
            Ok(EXIT_OK)
        }
    }
}

/// A failed `ensure` or `restart`: a failed start names the binary that
/// ran (the record has it; else the one the manager would find).
pub(crate) fn start_error(error: manager::Error, manager: &Manager, dir: &Path) -> CliError {
    if !matches!(error, manager::Error::StartFailed { .. }) {
        return CliError::from(error).starting();
    }
    let recorded = manager
        .paths(dir)
        .ok()
        .and_then(|paths| manager::read_record(&paths.record).ok().flatten())
        .map(|record| record.opencode_bin)
        .filter(|bin| !bin.as_os_str().is_empty());
    let binary =
        recorded.or_else(|| manager::find_opencode(manager.config().opencode_bin.as_deref()).ok());
    CliError::StartFailed {
        error: Box::new(error),
        binary,
    }
}

/// The project's status for `status` and `url`. A path that is not a
/// folder is an error unless ocm has a record for it (its server may still
/// run after the folder was deleted): then the status is shown with a note.
fn checked_status(
    store: &Store,
    reporter: &Reporter,
    dir: &Path,
) -> Result<ServerStatus, CliError> {
    let project = manager::project(dir)?.path;
    let problem = folder_problem(&project);
    // An unreadable state folder counts as a record: status says why.
    if problem.is_some() && !store.paths(&project)?.record.try_exists().unwrap_or(true) {
        return Err(CliError::NoProject { project });
    }
    let status = store.status(&project)?;
    if let Some(problem) = problem {
        // It had a record, so it was a folder once.
        let problem = if problem == "does not exist" {
            "no longer exists"
        } else {
            problem
        };
        reporter.finish();
        reporter.note(&format!(
            "the project folder {} {problem}",
            escape_path(&project)
        ));
    }
    Ok(status)
}

fn show_server(
    cli: &Cli,
    manager: &Manager,
    info: &ServerInfo,
    began: Instant,
    before: Option<Option<ServerStatus>>,
) -> Result<i32, CliError> {
    let elapsed = began.elapsed();
    let view = ProjectView::of_server(info, manager)?;
    // `restart`: the live server it replaced.
    let replaced = before.map(|before| {
        before.filter(|b| {
            matches!(b.status, ServerState::Running | ServerState::Unhealthy) && b.pid.is_some()
        })
    });
    if cli.json {
        let mut value = render_json::server_json(&view, info, elapsed);
        if let (Some(replaced), Some(object)) = (&replaced, value.as_object_mut()) {
            object.insert(
                "replaced".into(),
                replaced
                    .as_ref()
                    .map_or(serde_json::Value::Null, render_json::replaced_json),
            );
        }
        print_json(&value);
    } else {
        let old = replaced.flatten().and_then(|b| b.pid);
        print(&format!(
            "{}\n",
            render::server_line(&view, info, elapsed, old)
        ))?;
    }
    Ok(EXIT_OK)
}

fn down(
    cli: &Cli,
    store: &Store,
    reporter: &Reporter,
    dir: &Option<PathBuf>,
) -> Result<i32, CliError> {
    let dir = dir_or_here(dir);
    let report = store.stop(&dir)?;
    reporter.finish();
    note_left_alone(reporter, report.left_alone);
    let after = store.view(&dir)?;
    if cli.json {
        print_json(&render_json::stop_json(&after, &report));
    } else {
        let problem = folder_problem(&report.project);
        print(&lines(render::stop_lines(&report, problem)))?;
    }
    Ok(EXIT_OK)
}

fn destroy(
    cli: &Cli,
    store: &Store,
    reporter: &Reporter,
    dir: &Option<PathBuf>,
) -> Result<i32, CliError> {
    let dir = dir_or_here(dir);
    let state_dir = store.paths(&dir)?.dir;
    let existed = state_dir.exists();
    let report = store.destroy(&dir)?;
    reporter.finish();
    note_left_alone(reporter, report.left_alone);
    let after = store.view(&dir)?;
    if cli.json {
        let removed = existed.then_some(state_dir.as_path());
        print_json(&render_json::destroy_json(&after, &report, removed));
    } else {
        let problem = folder_problem(&report.project);
        let mut out = render::stop_lines(&report, problem);
        if existed {
            // "not running" is implied by the removal; say what was done.
            out.retain(|l| !l.starts_with("not running"));
            out.push(format!("removed {}", escape_path(&state_dir)));
        } else {
            out = vec![match problem {
                Some(problem) => format!(
                    "nothing to remove: {} {problem} and ocm has nothing recorded for it",
                    escape_path(&report.project)
                ),
                None => format!("nothing to remove for {}", escape_path(&report.project)),
            }];
        }
        print(&lines(out))?;
    }
    Ok(EXIT_OK)
}

fn logs(
    cli: &Cli,
    store: &Store,
    reporter: &Reporter,
    dir: &Path,
    n: usize,
    follow: bool,
) -> Result<i32, CliError> {
    let project = manager::project(dir)?.path;
    let log = store.paths(&project)?.log;
    let io_error = |source: std::io::Error| CliError::Io {
        context: format!("cannot read {}", log.display()),
        source,
    };
    // Never blocking on a FIFO nor following a symlink in the state folder.
    let (file, text, end) = match manager::open_log(&log)? {
        Some(mut file) => {
            let (bytes, end) = manager::log_tail(&mut file, 0, n).map_err(io_error)?;
            (Some(file), bytes, end)
        }
        None => {
            if !follow {
                return Err(CliError::NoLog { project, log });
            }
            (None, Vec::new(), 0)
        }
    };
    if cli.json {
        let view = store.view(&project)?;
        print_json(&render_json::logs_json(
            &view,
            &log,
            &String::from_utf8_lossy(&text),
        ));
        return Ok(EXIT_OK);
    }
    // The log is the server's text: colours dropped, control characters
    // escaped, as everything ocm prints that it did not write.
    let mut stdout = LogWriter::new(std::io::stdout().lock());
    let written = stdout.write_all(&text).and_then(|()| stdout.flush());
    if !follow {
        return ignore_broken_pipe(written).map(|()| EXIT_OK);
    }
    if written.is_err() {
        return Ok(EXIT_OK);
    }
    if stderr_is_tty() {
        reporter.note(&format!("following {} (Ctrl-C to stop)", escape_path(&log)));
    }
    let outcome = follow::follow(&log, file, end, &mut stdout, |path| {
        reporter.note(&format!("waiting for {} to appear", escape_path(path)));
    });
    match outcome {
        // Only a failed write ends the loop; a closed pipe is a normal end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
        Err(e) => Err(io_error(e)),
        Ok(()) => Ok(EXIT_OK),
    }
}

fn note_left_alone(reporter: &Reporter, left_alone: Option<u32>) {
    if let Some(pid) = left_alone {
        reporter.note(&format!(
            "the recorded pid {pid} is not this project's server (another program has it now); \
             it was left alone"
        ));
    }
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
pub(crate) fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    ignore_broken_pipe(
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush()),
    )
}

pub(crate) fn print_json(value: &serde_json::Value) {
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
