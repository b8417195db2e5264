//! Automation for ocm: `cargo xtask <command>`.
//!
//! - `opencode`: install the pinned opencode with npm into the cache (unless
//!   it is already there) and print the binary's path.
//! - `mcp-clients`: install the pinned MCP clients (Python SDKs, the MCP
//!   Inspector) the end-to-end tests of `ocm mcp` drive.
//! - `sshd`: install what the tests' loopback SSH git server needs
//!   (openssh-server, openssh-client, git) with apt-get when missing, create
//!   `/run/sshd` as root, and print sshd's path.
//! - `ci`: everything CI checks: fmt, clippy, build, all tests (unit, doc and
//!   end-to-end against the real opencode), rustdoc, and no stray processes.
//! - `demo`: ocm's main job end to end on a scratch project.
//! - `bench`: the speed and memory figures (see `bench.rs`); `bench-post` is
//!   its bare prompt POST from a process of its own.
//! - `chaos`: the supervision cases and the exactly-once prompt case with
//!   full counts, and their figures (see `chaos.rs`).
//!
//! The tidy checks of the source tree (`tidy.rs`) are tests, run by
//! `cargo test --workspace` and so by `ci`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

mod bench;
mod bench_turns;
mod chaos;
mod demo;
mod mcp_clients;
mod sshd;
#[cfg(test)]
mod tidy;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  opencode   install opencode-ai@VERSION with npm into the cache (if missing) and print its path
  mcp-clients  install the pinned MCP clients for the tests (Python mcp SDKs, MCP Inspector)
  sshd       install openssh-server, openssh-client and git with apt-get if missing,
             create /run/sshd (as root), and print sshd's path
  ci         fmt check, clippy -D warnings, build, all tests (opencode included), rustdoc -D warnings
  demo       run ocm's main job end to end on a scratch project with the offline model
  bench      speed and memory figures: httpsse throughput, cold/warm `ocm up`, ocm memory,
             turns (event latency, prompt overhead); `bench turns` for that part only;
             supervision (kill to crashed/running, an idle supervisor's CPU, threads, memory)
  bench-post URL DIR SESSION TEXT
             (used by `bench turns`) one blocking prompt POST from a process of its own
  chaos      the supervision cases with full counts (50 SIGKILLs, ...), exactly-once prompts
             (100 from 4 sessions, 10 SIGKILLs) and their figures (`chaos figures`: the
             supervision figures only)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("opencode") => install_opencode().map(|bin| println!("{}", bin.display())),
        Some("mcp-clients") => mcp_clients::install(),
        Some("sshd") => sshd::install().map(|bin| println!("{}", bin.display())),
        Some("ci") => ci(),
        Some("demo") => demo::run(),
        Some("bench") if args.get(1).is_some_and(|a| a == "turns") => bench_turns::standalone(),
        Some("bench") => bench::run(),
        Some("bench-post") => bench_turns::post(&args[1..]),
        Some("chaos") => chaos::run(args.get(1).is_some_and(|a| a == "figures")),
        Some("-h" | "--help" | "help") => {
            println!("{}", USAGE.replace("VERSION", e2e::OPENCODE_VERSION));
            Ok(())
        }
        Some(other) => Err(format!(
            "unknown command {other:?}\n\n{}",
            USAGE.replace("VERSION", e2e::OPENCODE_VERSION)
        )),
        None => Err(USAGE.replace("VERSION", e2e::OPENCODE_VERSION)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one folder below it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent folder")
        .to_path_buf()
}

/// The cargo target folder (honours CARGO_TARGET_DIR).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Installs the pinned opencode into the cache unless it is there already,
/// and returns the binary's path. The install goes to a temp folder first
/// and is renamed into place, so an interrupted install is never used.
fn install_opencode() -> Result<PathBuf, String> {
    let version = e2e::OPENCODE_VERSION;
    let dir = e2e::opencode_cache_dir()
        .ok_or("cannot place the opencode cache: neither XDG_CACHE_HOME nor HOME is set")?;
    if let Some(bin) = e2e::opencode_in_prefix(&dir) {
        if binary_version(&bin).as_deref() == Some(version) {
            return Ok(bin);
        }
        eprintln!(
            "xtask: {} does not report version {version}; reinstalling",
            bin.display()
        );
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    let parent = dir.parent().expect("the cache folder has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let staging = parent.join(format!(".opencode-{version}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    eprintln!(
        "xtask: installing opencode-ai@{version} with npm into {}",
        dir.display()
    );
    let started = Instant::now();
    let mut npm = Command::new("npm");
    npm.args([
        "install",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        "--prefix",
    ])
    .arg(&staging)
    .arg(format!("opencode-ai@{version}"))
    // stdout is for the binary's path only.
    .stdout(std::io::stderr());
    let status = run_with_deadline(&mut npm, NPM_TIMEOUT).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staging);
        format!("npm install: {e} (install Node.js and npm, or set OPENCODE_BIN)")
    })?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(format!(
            "`npm install opencode-ai@{version}` failed ({status}); see npm's output above"
        ));
    }
    let bin = e2e::opencode_in_prefix(&staging).ok_or_else(|| {
        format!(
            "npm installed opencode-ai@{version} but no opencode binary for {}-{} is in {}",
            std::env::consts::OS,
            std::env::consts::ARCH,
            staging.join("node_modules").display()
        )
    })?;
    let found = binary_version(&bin);
    if found.as_deref() != Some(version) {
        return Err(format!(
            "{} reports version {found:?}, expected {version}",
            bin.display()
        ));
    }
    if let Err(e) = std::fs::rename(&staging, &dir) {
        // Another install may have won the race; use it if it is complete.
        let _ = std::fs::remove_dir_all(&staging);
        if e2e::opencode_in_prefix(&dir).is_none() {
            return Err(format!(
                "cannot move the install into {}: {e}",
                dir.display()
            ));
        }
    }
    eprintln!(
        "xtask: installed opencode {version} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    e2e::opencode_in_prefix(&dir).ok_or_else(|| format!("no opencode binary in {}", dir.display()))
}

fn binary_version(bin: &Path) -> Option<String> {
    let out = std::env::temp_dir().join(format!("ocm-xtask-version-{}", std::process::id()));
    let file = std::fs::File::create(&out).ok()?;
    let status = run_with_deadline(
        Command::new(bin).arg("--version").stdout(file),
        VERSION_TIMEOUT,
    );
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    status
        .ok()
        .filter(|s| s.success())
        .map(|_| text.trim().to_string())
}

/// How long `npm install` may take.
const NPM_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `opencode --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `command` and waits at most `timeout` for it, killing it after
/// that. Checks every 100 ms: good enough for automation that runs for
/// seconds.
fn run_with_deadline(command: &mut Command, timeout: Duration) -> Result<ExitStatus, String> {
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{:?} did not finish within {} s and was killed",
                    command.get_program(),
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for {:?}: {e}", command.get_program())),
        }
    }
}

/// Runs one step of a pipeline, printing its name and duration.
fn step(name: &str, command: &mut Command) -> Result<(), String> {
    eprintln!("\n==> {name}");
    let started = Instant::now();
    let status = command
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("{name}: cannot run {command:?}: {e}"))?;
    eprintln!(
        "==> {name}: {} in {:.1} s",
        if status.success() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn ci() -> Result<(), String> {
    let started = Instant::now();
    step("fmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "build",
        cargo().args(["build", "--workspace", "--all-targets", "--locked"]),
    )?;
    eprintln!("\n==> opencode");
    let bin = install_opencode()?;
    eprintln!("==> opencode: {}", bin.display());
    eprintln!("\n==> mcp-clients");
    mcp_clients::install()?;
    eprintln!("\n==> sshd");
    let sshd = sshd::install()?;
    eprintln!("==> sshd: {}", sshd.display());
    step(
        "test",
        cargo()
            .args(["test", "--workspace", "--locked"])
            .env("OPENCODE_BIN", &bin)
            // CI runs everything: a skip set by hand does not carry over.
            .env_remove("OCM_SKIP_E2E"),
    )?;
    step(
        "doc",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    eprintln!("\n==> stray processes");
    let strays = test_processes_left();
    if !strays.is_empty() {
        return Err(format!(
            "processes started by the tests are still running:\n{}",
            strays.join("\n")
        ));
    }
    eprintln!("==> stray processes: none");
    eprintln!(
        "\nci: all steps passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Live processes that carry a test bed's marker in their environment: a
/// test that leaked them has a cleanup bug.
fn test_processes_left() -> Vec<String> {
    e2e::processes_with_env(&format!("{}=", e2e::TEST_ID_VAR))
        .into_iter()
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "  pid {pid}: {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            )
        })
        .collect()
}
