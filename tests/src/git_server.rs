//! A real SSH git server on loopback for the end-to-end tests: `sshd` on
//! 127.0.0.1 with its own host key, configuration and authorized keys,
//! serving bare repositories through `git-shell` only.
//!
//! Nothing outside the server's temp folder is touched: the configuration
//! is passed with `-f`, `AuthorizedKeysFile` points into the folder and
//! starts empty, so every key is refused ("Permission denied") until
//! [`GitSshServer::authorize`] adds it. Each authorized key may run
//! `git-shell` and nothing else (`restrict,command="git-shell -c ..."`),
//! as the account running the tests (root in CI: `PermitRootLogin
//! forced-commands-only`).
//!
//! sshd runs under a small `sh` that waits for it, leads their process
//! group and carries the bed's marker ([`crate::TEST_ID_VAR`]): sshd
//! overwrites its own environment with its process title, so the marker
//! would not be visible on sshd itself. The bed's drop kills that group;
//! the server's drop also kills the connections sshd forked (they call
//! `setsid`), found as its descendants.
//!
//! `sshd` is looked up on `PATH`, then in `/usr/sbin`; `cargo xtask sshd`
//! installs it (and git, ssh, ssh-keygen) when missing and creates the
//! privilege separation folder `/run/sshd` that sshd needs as root.
//!
//! ```no_run
//! use e2e::git_server::{GitSshServer, generate_key};
//!
//! let bed = e2e::TestBed::new();
//! let server = GitSshServer::start(&bed);
//! let repo = server.bare_repo("project");
//! assert!(repo.ends_with("project.git"));
//! let public = generate_key(&bed.root().join("deploy_key"));
//! server.authorize(&public);
//! // Clone with GIT_SSH_COMMAND="ssh -i .../deploy_key -o IdentitiesOnly=yes ..."
//! let url = server.url("project"); // ssh://root@127.0.0.1:PORT/.../project.git
//! # let _ = url;
//! // Dropping `server` kills sshd and every connection it forked.
//! ```

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::{TestBed, drain, is_executable, send_signal};

/// How long sshd may take to print its listening line.
pub const SSHD_START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one helper command (git, ssh-keygen, id) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run when a tool the server needs is missing.
const INSTALL_HINT: &str = "run `cargo xtask sshd` (installs openssh-server, openssh-client and \
                            git with apt-get when missing, and creates /run/sshd)";

/// Finds `sshd`: on `PATH`, then `/usr/sbin/sshd` (often not on a user's
/// `PATH`). Always an absolute path: sshd refuses to re-exec otherwise.
pub fn find_sshd() -> Option<PathBuf> {
    find_on_path("sshd").or_else(|| {
        let fallback = PathBuf::from("/usr/sbin/sshd");
        is_executable(&fallback).then_some(fallback)
    })
}

/// Finds `name` on `PATH`, as an absolute path.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Finds `git-shell`: on `PATH`, else in git's exec path
/// (`git --exec-path`), where some distributions keep it.
pub fn find_git_shell() -> Option<PathBuf> {
    find_on_path("git-shell").or_else(|| {
        let out = run(Command::new("git").arg("--exec-path"), "git --exec-path").ok()?;
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let candidate = Path::new(&dir).join("git-shell");
        is_executable(&candidate).then_some(candidate)
    })
}

/// `name`, found on `PATH`, or a panic saying how to install it.
fn require(name: &str) -> PathBuf {
    find_on_path(name).unwrap_or_else(|| panic!("{name} not found on PATH: {INSTALL_HINT}"))
}

/// Runs `command` with stdin closed and its output captured, killed if it
/// takes longer than [`COMMAND_TIMEOUT`]. `Err` says what failed, with
/// the command's stderr.
fn run(command: &mut Command, what: &str) -> Result<Output, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => output.map_err(|e| format!("waiting for {what}: {e}")),
        Err(_) => {
            // Not reaped yet (its waiter has not returned): the pid is ours.
            crate::send_signal(pid as i32, libc::SIGKILL);
            Err(format!("{what} did not finish within {COMMAND_TIMEOUT:?}"))
        }
    };
    let _ = waiter.join();
    let output = output?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// [`run`], panicking on failure.
fn must(command: &mut Command, what: &str) -> Output {
    run(command, what).unwrap_or_else(|message| panic!("{message}"))
}

/// Generates an ed25519 key pair without a passphrase at `path` (and
/// `path.pub`) and returns the public key's text (one line).
pub fn generate_key(path: &Path) -> String {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    must(
        Command::new(require("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ocm-e2e", "-f"])
            .arg(path),
        "ssh-keygen",
    );
    let public = PathBuf::from(format!("{}.pub", path.display()));
    std::fs::read_to_string(&public)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", public.display()))
        .trim()
        .to_string()
}

/// The account the tests run as (`id -un`): the one sshd lets in.
fn current_user() -> String {
    let out = must(Command::new("id").arg("-un"), "id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// True when this process runs as root (owner of `/proc/self`).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A running `sshd` on 127.0.0.1 serving bare git repositories. See the
/// module docs. Dropping it kills sshd and the connections it forked.
#[derive(Debug)]
pub struct GitSshServer {
    /// The port sshd listens on (127.0.0.1).
    pub port: u16,
    /// The account clients log in as (the one running the tests).
    pub user: String,
    /// The pid of the shell that runs sshd and waits for it: it carries
    /// the bed's marker and leads the process group sshd runs in.
    pub pid: u32,
    authorized_keys: PathBuf,
    repos: PathBuf,
    git_shell: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    // Dropped last: the folder goes after sshd is dead.
    dir: tempfile::TempDir,
}

impl GitSshServer {
    /// Starts sshd for `bed` (it carries the bed's marker, so the bed's
    /// drop kills it too) on a free port of 127.0.0.1 and waits until it
    /// listens. Panics with sshd's output when it does not start, or with
    /// how to install what is missing.
    pub fn start(bed: &TestBed) -> GitSshServer {
        let sshd = find_sshd()
            .unwrap_or_else(|| panic!("sshd not found on PATH nor in /usr/sbin: {INSTALL_HINT}"));
        let git_shell = find_git_shell().unwrap_or_else(|| {
            panic!("git-shell not found (PATH, git --exec-path): {INSTALL_HINT}")
        });
        if is_root() && !Path::new("/run/sshd").is_dir() {
            panic!("/run/sshd (sshd's privilege separation folder) is missing: {INSTALL_HINT}");
        }
        let mut dir = tempfile::Builder::new()
            .prefix("ocm-sshd-")
            .tempdir()
            .expect("create a temp folder for sshd");
        let host_key = dir.path().join("host_ed25519");
        generate_key(&host_key);
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, "").expect("create authorized_keys");
        let repos = dir.path().join("repos");
        std::fs::create_dir_all(&repos).expect("create the repositories folder");
        let user = current_user();
        let mut last_log = String::new();
        // A port found free can be taken before sshd binds it: retry then.
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                config_text(port, &host_key, &authorized_keys, &user),
            )
            .expect("write sshd_config");
            // sshd overwrites its environment with its process title, so
            // the marker would not show in /proc/PID/environ: a shell that
            // waits for it carries the marker and leads their group.
            let mut command = bed.command("sh");
            command
                .args(["-c", "\"$@\"; exit $?", "sshd-wrapper"])
                .arg(&sshd)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .current_dir(dir.path())
                .process_group(0);
            let mut server = GitSshServer {
                port,
                user: user.clone(),
                pid: 0,
                authorized_keys: authorized_keys.clone(),
                repos: repos.clone(),
                git_shell: git_shell.clone(),
                child: None,
                log: Arc::new(Mutex::new(String::new())),
                threads: Vec::new(),
                dir,
            };
            match server.spawn(command) {
                Ok(()) => return server,
                Err(log) => {
                    last_log = log;
                    dir = server.take_dir();
                    if !last_log.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!(
            "sshd ({}) did not start; its output:\n{last_log}",
            sshd.display()
        );
    }

    /// Spawns sshd and waits for "Server listening on 127.0.0.1 port N".
    /// `Err` is its output when it exits or does not listen in time (it is
    /// killed then).
    fn spawn(&mut self, mut command: Command) -> Result<(), String> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sshd: {e}"));
        self.pid = child.id();
        let (lines_tx, lines_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        self.threads = vec![
            drain(stdout, Arc::clone(&self.log), None),
            drain(stderr, Arc::clone(&self.log), Some(lines_tx)),
        ];
        self.child = Some(child);
        let ready = format!("Server listening on 127.0.0.1 port {}", self.port);
        let deadline = Instant::now() + SSHD_START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) if line.contains(&ready) => return Ok(()),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.stop();
                    return Err(self.log());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.stop();
                    return Err(format!(
                        "no listening line within {SSHD_START_TIMEOUT:?}\n{}",
                        self.log()
                    ));
                }
            }
        }
    }

    /// Moves the temp folder out of a server that failed to start, leaving
    /// an empty one in its place.
    fn take_dir(mut self) -> tempfile::TempDir {
        let empty = tempfile::tempdir().expect("create a temp folder");
        std::mem::replace(&mut self.dir, empty)
    }

    /// Everything sshd printed so far (its log, `-e`).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The folder holding the bare repositories.
    pub fn repos_dir(&self) -> &Path {
        &self.repos
    }

    /// Creates the bare repository `name.git` with one commit on `main`
    /// adding `README.md`, and returns its path. Panics with git's error.
    pub fn bare_repo(&self, name: &str) -> PathBuf {
        make_bare_repo(&self.repos, name)
    }

    /// The clone URL of `name.git`:
    /// `ssh://USER@127.0.0.1:PORT/ABS/PATH/name.git`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            self.repos.join(format!("{name}.git")).display()
        )
    }

    /// Adds `public_key` (one `ssh-ed25519 AAAA... comment` line) to the
    /// authorized keys, allowed to run git-shell only. sshd reads the file
    /// at each login, so it takes effect for the next connection.
    pub fn authorize(&self, public_key: &str) {
        let key = public_key.trim();
        assert!(
            !key.is_empty() && !key.contains('\n'),
            "a public key is one line, got {public_key:?}"
        );
        let line = format!(
            "restrict,command=\"{} -c \\\"$SSH_ORIGINAL_COMMAND\\\"\" {key}\n",
            self.git_shell.display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.authorized_keys.display()));
        file.write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.authorized_keys.display()));
    }

    /// The server's processes: the wrapping shell, sshd and every
    /// connection it forked (those call `setsid`, so they leave sshd's
    /// group), parents before their children.
    pub fn processes(&self) -> Vec<u32> {
        if self.child.is_none() {
            return Vec::new();
        }
        let parents: Vec<(u32, u32)> = procutil::all_pids()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|pid| Some((pid, procutil::parent_pid(pid).ok()?)))
            .collect();
        let mut found = vec![self.pid];
        let mut next = 0;
        while next < found.len() {
            let parent = found[next];
            found.extend(
                parents
                    .iter()
                    .filter(|(_, p)| *p == parent)
                    .map(|(c, _)| *c),
            );
            next += 1;
        }
        found
    }

    /// Kills sshd and every connection it forked, children before parents,
    /// each pinned by a pidfd and checked to still have its parent, and
    /// waits (bounded) for its parent to reap it, so that nothing is left
    /// as an orphan; then the shell's group (SIGKILL, reaped); then joins
    /// the log readers.
    fn stop(&mut self) {
        let processes = self.processes();
        for &pid in processes.iter().skip(1).rev() {
            let Ok(Some(pidfd)) = procutil::Pidfd::open(pid) else {
                continue;
            };
            // Its parent is alive (parents die after children here), so a
            // pid whose parent is still one of ours is still the process
            // found above.
            let ours = procutil::parent_pid(pid).is_ok_and(|parent| processes.contains(&parent));
            if ours && pidfd.send_signal(libc::SIGKILL).is_ok() {
                wait_reaped(pid);
            }
        }
        if let Some(mut child) = self.child.take() {
            // Our own child, not reaped yet: its pid is still its group's id.
            send_signal(-(self.pid as i32), libc::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// How long a killed process's parent may take to reap it.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits up to [`REAP_TIMEOUT`] until `pid` is gone from /proc (its parent
/// reaped it). A pid reused meanwhile only makes this wait the full time.
fn wait_reaped(pid: u32) {
    let deadline = Instant::now() + REAP_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

impl Drop for GitSshServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port of 127.0.0.1 that is free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `git` with no system or user configuration, an author, and `cwd`.
/// Creates the bare repository `DIR/name.git` with one commit on `main`
/// adding `README.md` (`# name`), and returns its path. Panics with git's
/// error.
pub fn make_bare_repo(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the repositories' folder");
    let bare = dir.join(format!("{name}.git"));
    let work = dir.join(format!(".work-{name}"));
    std::fs::create_dir_all(&work).expect("create a work tree");
    must(
        git(dir)
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(&bare),
        "git init --bare",
    );
    must(
        git(dir)
            .args(["init", "--quiet", "--initial-branch=main"])
            .arg(&work),
        "git init",
    );
    std::fs::write(work.join("README.md"), format!("# {name}\n")).expect("write README.md");
    must(git(&work).args(["add", "README.md"]), "git add");
    must(
        git(&work).args(["commit", "--quiet", "-m", "initial commit"]),
        "git commit",
    );
    must(
        git(&work).args(["push", "--quiet"]).arg(&bare).arg("main"),
        "git push",
    );
    let _ = std::fs::remove_dir_all(&work);
    bare
}

/// A bare repository `origin.git` under the bed (one commit, `README.md`
/// saying `# origin`), as a `file://` URL.
pub fn file_repo(bed: &crate::TestBed) -> String {
    let bare = make_bare_repo(&bed.root().join("git"), "origin");
    format!("file://{}", bare.display())
}

fn git(cwd: &Path) -> Command {
    let mut command = Command::new(require("git"));
    command
        .current_dir(cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "ocm e2e")
        .env("GIT_AUTHOR_EMAIL", "e2e@ocm.invalid")
        .env("GIT_COMMITTER_NAME", "ocm e2e")
        .env("GIT_COMMITTER_EMAIL", "e2e@ocm.invalid");
    command
}

/// The server's whole configuration: nothing is read from /etc/ssh.
fn config_text(port: u16, host_key: &Path, authorized_keys: &Path, user: &str) -> String {
    format!(
        "ListenAddress 127.0.0.1:{port}\n\
         HostKey {host}\n\
         PidFile none\n\
         AuthorizedKeysFile {keys}\n\
         AuthorizedKeysCommand none\n\
         AuthorizedPrincipalsFile none\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         HostbasedAuthentication no\n\
         GSSAPIAuthentication no\n\
         UsePAM no\n\
         PermitRootLogin forced-commands-only\n\
         AllowUsers {user}\n\
         StrictModes no\n\
         PermitUserEnvironment no\n\
         AllowTcpForwarding no\n\
         AllowAgentForwarding no\n\
         X11Forwarding no\n\
         PermitTunnel no\n\
         PrintMotd no\n\
         UseDNS no\n\
         LogLevel VERBOSE\n",
        host = host_key.display(),
        keys = authorized_keys.display(),
    )
}
