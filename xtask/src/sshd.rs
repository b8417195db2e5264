//! `cargo xtask sshd`: makes sure what the end-to-end tests' SSH git server
//! (`e2e::git_server`) needs is on the machine: `sshd` (openssh-server),
//! `ssh` and `ssh-keygen` (openssh-client), `git` and `git-shell` (git).
//! Whatever is missing is installed from the system's packages with
//! `apt-get` (non-interactive; as root, as in CI, or through `sudo -n`).
//! Then, as root, sshd's privilege separation folder `/run/sshd` is created
//! if missing. Prints sshd's path.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::git_server::{find_git_shell, find_on_path, find_sshd};

use crate::run_with_deadline;

/// How long `apt-get update` or `apt-get install` may take.
const APT_TIMEOUT: Duration = Duration::from_secs(900);

/// sshd's privilege separation folder, which it needs when run as root.
const PRIVSEP_DIR: &str = "/run/sshd";

/// A tool the tests need, how to find it and the Debian package holding it.
struct Tool {
    name: &'static str,
    find: fn() -> Option<PathBuf>,
    package: &'static str,
}

fn tools() -> [Tool; 5] {
    [
        Tool {
            name: "sshd",
            find: find_sshd,
            package: "openssh-server",
        },
        Tool {
            name: "ssh",
            find: || find_on_path("ssh"),
            package: "openssh-client",
        },
        Tool {
            name: "ssh-keygen",
            find: || find_on_path("ssh-keygen"),
            package: "openssh-client",
        },
        Tool {
            name: "git",
            find: || find_on_path("git"),
            package: "git",
        },
        Tool {
            name: "git-shell",
            find: find_git_shell,
            package: "git",
        },
    ]
}

/// Installs what is missing, creates `/run/sshd` as root, and returns
/// sshd's path.
pub fn install() -> Result<PathBuf, String> {
    let mut packages: Vec<&str> = Vec::new();
    for tool in tools() {
        match (tool.find)() {
            Some(path) => eprintln!("xtask: {} is {}", tool.name, path.display()),
            None => {
                eprintln!("xtask: {} is missing (package {})", tool.name, tool.package);
                if !packages.contains(&tool.package) {
                    packages.push(tool.package);
                }
            }
        }
    }
    if !packages.is_empty() {
        apt_install(&packages)?;
        let still: Vec<&str> = tools()
            .iter()
            .filter(|tool| (tool.find)().is_none())
            .map(|tool| tool.name)
            .collect();
        if !still.is_empty() {
            return Err(format!(
                "after `apt-get install {}` these are still missing: {} (is /usr/sbin on PATH?)",
                packages.join(" "),
                still.join(", ")
            ));
        }
    }
    if is_root() {
        privsep_dir(Path::new(PRIVSEP_DIR))?;
    }
    find_sshd().ok_or_else(|| "sshd not found on PATH nor in /usr/sbin".to_string())
}

/// True when this process runs as root (owner of `/proc/self`).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Creates sshd's privilege separation folder (root's, mode 0755) if it
/// is missing; it lives on /run, so a reboot removes it.
fn privsep_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if dir.is_dir() {
        return Ok(());
    }
    eprintln!("xtask: creating {} for sshd", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))
}

/// `apt-get update` then `apt-get install -y --no-install-recommends
/// PACKAGES`, non-interactive, as root or through `sudo -n`.
fn apt_install(packages: &[&str]) -> Result<(), String> {
    if find_on_path("apt-get").is_none() {
        return Err(format!(
            "cannot install {}: apt-get is not available; install them with the system's \
             package manager",
            packages.join(" ")
        ));
    }
    let sudo = !is_root();
    if sudo && find_on_path("sudo").is_none() {
        return Err(format!(
            "cannot install {}: not root and no sudo; run as root: apt-get install -y {}",
            packages.join(" "),
            packages.join(" ")
        ));
    }
    eprintln!(
        "xtask: installing {} with apt-get{}",
        packages.join(" "),
        if sudo { " (sudo -n)" } else { "" }
    );
    let apt = |args: &[&str]| {
        let mut command = if sudo {
            let mut c = Command::new("sudo");
            c.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            c
        } else {
            let mut c = Command::new("apt-get");
            c.env("DEBIAN_FRONTEND", "noninteractive");
            c
        };
        command.args(args).stdout(std::io::stderr());
        command
    };
    let status = run_with_deadline(&mut apt(&["update", "-q"]), APT_TIMEOUT)?;
    if !status.success() {
        return Err(format!(
            "`apt-get update` failed ({status}); see its output above"
        ));
    }
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(packages);
    let status = run_with_deadline(&mut install, APT_TIMEOUT)?;
    if !status.success() {
        return Err(format!(
            "`apt-get install -y {}` failed ({status}); see its output above",
            packages.join(" ")
        ));
    }
    Ok(())
}
