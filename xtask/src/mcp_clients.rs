//! `cargo xtask mcp-clients`: installs the pinned MCP clients the
//! end-to-end tests of `ocm mcp` drive (see `e2e::mcp_clients`): a Python
//! venv per SDK version (`pip install mcp==X`) and the MCP Inspector (npm).
//! Each goes to a staging folder first and is renamed into place once it
//! works, so an interrupted install is never used.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::mcp_clients::{self, COMPLETE_MARKER};

use crate::run_with_deadline;

/// How long one pip or npm install may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Installs every client that is missing.
pub fn install() -> Result<(), String> {
    for version in [mcp_clients::PYTHON_SDK, mcp_clients::PYTHON_SDK_1] {
        let venv = mcp_clients::python_venv(version)
            .ok_or("cannot place the cache: neither XDG_CACHE_HOME nor HOME is set")?;
        install_into(&venv, &format!("mcp=={version}"), |staging| {
            python_venv(staging, version)
        })?;
    }
    let prefix = mcp_clients::inspector_prefix()
        .ok_or("cannot place the cache: neither XDG_CACHE_HOME nor HOME is set")?;
    let package = format!("@modelcontextprotocol/inspector@{}", mcp_clients::INSPECTOR);
    install_into(&prefix, &package, |staging| inspector(staging, &package))?;
    Ok(())
}

/// Runs `install` into a staging folder next to `dir` and renames it into
/// place, unless `dir` is complete already.
fn install_into(
    dir: &Path,
    what: &str,
    install: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    if dir.join(COMPLETE_MARKER).is_file() {
        eprintln!("xtask: {what} is installed in {}", dir.display());
        return Ok(());
    }
    let parent = dir.parent().expect("the cache folder has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("client");
    let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    eprintln!("xtask: installing {what} into {}", dir.display());
    let result = install(&staging).and_then(|()| {
        std::fs::write(staging.join(COMPLETE_MARKER), what)
            .map_err(|e| format!("cannot write the marker in {}: {e}", staging.display()))
    });
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(dir);
    if let Err(e) = std::fs::rename(&staging, dir) {
        let _ = std::fs::remove_dir_all(&staging);
        if !dir.join(COMPLETE_MARKER).is_file() {
            return Err(format!(
                "cannot move the install into {}: {e}",
                dir.display()
            ));
        }
    }
    Ok(())
}

fn run(name: &str, command: &mut Command) -> Result<(), String> {
    // stdout stays clean: progress goes to stderr.
    command.stdout(std::io::stderr());
    let status = run_with_deadline(command, INSTALL_TIMEOUT).map_err(|e| format!("{name}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status}); see its output above"))
    }
}

/// A venv with `mcp==version`. The venv's python is run by path, so the
/// venv works after the rename (only its scripts' shebangs would not).
fn python_venv(staging: &Path, version: &str) -> Result<(), String> {
    let python = std::env::var("OCM_PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        "python3 -m venv",
        Command::new(&python).args(["-m", "venv"]).arg(staging),
    )
    .map_err(|e| format!("{e} (install Python 3.10 or newer, or set OCM_PYTHON)"))?;
    let venv_python = staging.join("bin").join("python");
    run(
        "pip install",
        Command::new(&venv_python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("mcp=={version}"),
        ]),
    )?;
    run(
        "import mcp",
        Command::new(&venv_python).args(["-c", "import mcp.client.stdio"]),
    )
}

fn inspector(staging: &Path, package: &str) -> Result<(), String> {
    std::fs::create_dir_all(staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    run(
        "npm install",
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(staging)
            .arg(package),
    )
    .map_err(|e| format!("{e} (install Node.js 20 and npm)"))
}
