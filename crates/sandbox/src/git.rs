//! git, run with an argument vector and a deadline: testing access
//! (`ls-remote`), cloning into `repo/` and fetching into an existing clone.
//! SSH goes through the sandbox's key and its own `known_hosts`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Error;
use crate::keys::{Limits, check, run, stderr_tail};
use crate::url::GitUrl;

/// How git reaches a repository: the URL, the key for SSH and the
/// sandbox's `known_hosts`.
#[derive(Debug, Clone)]
pub struct Remote<'a> {
    /// The repository.
    pub url: &'a GitUrl,
    /// The private key (SSH URLs).
    pub key: Option<&'a Path>,
    /// The sandbox's own known hosts file.
    pub known_hosts: &'a Path,
    /// The limit of every git run, and the signals that end it early.
    pub limits: &'a Limits,
}

/// Whether the repository can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `git ls-remote` succeeded.
    Reachable,
    /// The server refused the key ("Permission denied"): it has not been
    /// added yet.
    PermissionDenied,
}

/// What [`clone_or_fetch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// A fresh clone.
    Cloned,
    /// `repo/` existed: fetched into it, work tree untouched.
    Fetched,
}

/// `GIT_SSH_COMMAND` for `key` and `known_hosts` (paths single-quoted for
/// the shell git runs it with).
pub fn ssh_command(key: &Path, known_hosts: &Path) -> String {
    format!(
        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={}",
        shell_quote(&key.to_string_lossy()),
        shell_quote(&known_hosts.to_string_lossy())
    )
}

/// `s` in single quotes, a `'` in it written `'\''`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Remote<'_> {
    /// `git` with the environment every run gets.
    fn git(&self) -> Command {
        let mut command = Command::new("git");
        command
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", "ssh:https:http:file")
            .env("GIT_ASKPASS", "true")
            .env("SSH_ASKPASS", "true")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        match self.key {
            Some(key) => command.env("GIT_SSH_COMMAND", ssh_command(key, self.known_hosts)),
            None => command.env_remove("GIT_SSH_COMMAND"),
        };
        command
    }

    fn run(&self, command: &mut Command, action: &str) -> Result<std::process::Output, Error> {
        run(command, action, self.limits)
    }
}

/// Tests access with `git ls-remote`. A refused key is
/// [`Access::PermissionDenied`]; any other failure an error with git's
/// stderr.
pub fn ls_remote(remote: &Remote<'_>) -> Result<Access, Error> {
    let action = format!("git ls-remote {}", remote.url);
    let output = remote.run(
        remote
            .git()
            .args(["ls-remote", "--heads", "--"])
            .arg(remote.url.as_str()),
        &action,
    )?;
    access_of(&output, &action)
}

/// What `git ls-remote`'s `output` says about access.
fn access_of(output: &std::process::Output, action: &str) -> Result<Access, Error> {
    if output.status.success() {
        return Ok(Access::Reachable);
    }
    if String::from_utf8_lossy(&output.stderr).contains("Permission denied") {
        return Ok(Access::PermissionDenied);
    }
    check(output, action).map(|()| Access::Reachable)
}

/// Clones into `repo` (through a temporary name beside it, renamed when
/// complete, so an interrupted clone is never taken for a clone), or
/// fetches into it when it exists.
pub fn clone_or_fetch(remote: &Remote<'_>, repo: &Path) -> Result<Fetched, Error> {
    if repo.join(".git").exists() {
        let action = format!("git fetch in {}", repo.display());
        let output = remote.run(
            remote
                .git()
                .arg("-C")
                .arg(repo)
                .args(["fetch", "--quiet", "--prune", "origin"]),
            &action,
        )?;
        check(&output, &action)?;
        return Ok(Fetched::Fetched);
    }
    let partial = partial_path(repo);
    remove_dir_if_there(&partial)?;
    if repo.exists() {
        return Err(Error::Io {
            action: "cannot clone into",
            path: repo.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists but is not a git clone; move it away",
            ),
        });
    }
    let action = format!("git clone {}", remote.url);
    let output = remote.run(
        remote
            .git()
            .args(["clone", "--quiet", "--"])
            .arg(remote.url.as_str())
            .arg(&partial),
        &action,
    );
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(Error::Command {
            action,
            status: output.status.to_string(),
            stderr: stderr_tail(&output.stderr),
        });
    }
    std::fs::rename(&partial, repo).map_err(|e| Error::io("cannot rename", &partial, e))?;
    Ok(Fetched::Cloned)
}

/// `repo`'s temporary clone name: `.repo.partial` beside it.
fn partial_path(repo: &Path) -> PathBuf {
    let name = repo
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    repo.with_file_name(format!(".{name}.partial"))
}

fn remove_dir_if_there(path: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: std::time::Duration = std::time::Duration::from_secs(60);

    fn sh(dir: &Path, script: &str) {
        let status = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    }

    /// A bare repository with one commit, and its file:// URL.
    fn bare_repo(dir: &Path) -> GitUrl {
        sh(
            dir,
            "git init -q -b main work && cd work && echo one > a.txt && git add a.txt && git commit -qm one && cd .. && git clone -q --bare work origin.git",
        );
        GitUrl::parse(&format!("file://{}/origin.git", dir.display())).unwrap()
    }

    #[test]
    fn ssh_command_quotes_paths() {
        let cmd = ssh_command(Path::new("/k/it's key"), Path::new("/s/known_hosts"));
        assert_eq!(
            cmd,
            "ssh -i '/k/it'\\''s key' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile='/s/known_hosts'"
        );
    }

    #[test]
    fn ls_remote_clone_then_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let url = bare_repo(dir.path());
        let known_hosts = dir.path().join("known_hosts");
        let remote = Remote {
            url: &url,
            key: None,
            known_hosts: &known_hosts,
            limits: &Limits::new(T),
        };
        assert_eq!(ls_remote(&remote).unwrap(), Access::Reachable);
        let repo = dir.path().join("sandbox/repo");
        std::fs::create_dir(dir.path().join("sandbox")).unwrap();
        // A leftover of an interrupted clone is not taken for a clone.
        std::fs::create_dir(dir.path().join("sandbox/.repo.partial")).unwrap();
        assert_eq!(clone_or_fetch(&remote, &repo).unwrap(), Fetched::Cloned);
        assert_eq!(
            std::fs::read_to_string(repo.join("a.txt")).unwrap(),
            "one\n"
        );
        assert!(!dir.path().join("sandbox/.repo.partial").exists());

        // A new commit upstream is fetched; the work tree stays as it was.
        sh(
            dir.path(),
            "cd work && echo two > a.txt && git commit -qam two && git push -q ../origin.git main",
        );
        std::fs::write(repo.join("local.txt"), "mine").unwrap();
        assert_eq!(clone_or_fetch(&remote, &repo).unwrap(), Fetched::Fetched);
        assert_eq!(
            std::fs::read_to_string(repo.join("a.txt")).unwrap(),
            "one\n"
        );
        assert_eq!(
            std::fs::read_to_string(repo.join("local.txt")).unwrap(),
            "mine"
        );
        let log = Command::new("git")
            .args(["-C"])
            .arg(&repo)
            .args(["log", "--oneline", "origin/main"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&log.stdout).lines().count(), 2);
    }

    #[test]
    fn a_missing_repository_is_an_error_with_gits_words() {
        let dir = tempfile::tempdir().unwrap();
        let url = GitUrl::parse(&format!("file://{}/nothing.git", dir.path().display())).unwrap();
        let known_hosts = dir.path().join("known_hosts");
        let remote = Remote {
            url: &url,
            key: None,
            known_hosts: &known_hosts,
            limits: &Limits::new(T),
        };
        let err = ls_remote(&remote).unwrap_err().to_string();
        assert!(
            err.contains("git ls-remote") && err.contains("nothing.git"),
            "{err}"
        );
        let repo = dir.path().join("repo");
        let err = clone_or_fetch(&remote, &repo).unwrap_err().to_string();
        assert!(err.contains("git clone"), "{err}");
        assert!(!repo.exists() && !dir.path().join(".repo.partial").exists());
    }

    #[test]
    fn permission_denied_is_told_apart() {
        use std::os::unix::process::ExitStatusExt;
        let output = |stderr: &str| std::process::Output {
            status: std::process::ExitStatus::from_raw(128 << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        let denied = output(
            "git@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote repository.\n",
        );
        assert_eq!(access_of(&denied, "x").unwrap(), Access::PermissionDenied);
        let refused = output("ssh: connect to host 127.0.0.1 port 9: Connection refused\n");
        let err = access_of(&refused, "git ls-remote u")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Connection refused") && err.contains("git ls-remote u"),
            "{err}"
        );
        let ok = std::process::Output {
            status: std::process::ExitStatus::from_raw(0),
            ..output("")
        };
        assert_eq!(access_of(&ok, "x").unwrap(), Access::Reachable);
    }
}
