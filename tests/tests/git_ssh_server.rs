//! The SSH git server fixture itself (`e2e::git_server`): a real sshd on
//! loopback refuses a key until it is authorized, then serves git (ls-remote
//! and clone) and nothing else, and leaves no process behind.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use e2e::git_server::{GitSshServer, generate_key};
use e2e::{TEST_ID_VAR, TestBed, processes_with_env};

/// How long one ssh or git call may take.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

/// The command a sandbox uses to reach a git server with a deploy key.
fn git_ssh_command(key: &Path, known_hosts: &Path) -> String {
    format!(
        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new \
         -o UserKnownHostsFile={}",
        key.display(),
        known_hosts.display()
    )
}

/// Runs `command` in the bed's environment with stdin closed, bounded by
/// [`CALL_DEADLINE`].
fn call(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("start the command");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CALL_DEADLINE) {
        Ok(output) => {
            let _ = waiter.join();
            output.expect("wait for the command")
        }
        Err(_) => {
            e2e::send_signal(pid as i32, libc::SIGKILL);
            let _ = waiter.join();
            panic!("{command:?} did not finish within {CALL_DEADLINE:?}");
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_key_is_refused_until_authorized_then_git_works_and_nothing_else() {
    let bed = TestBed::new();
    let server = GitSshServer::start(&bed);
    let repo = server.bare_repo("project");
    assert!(
        repo.join("HEAD").is_file(),
        "{} is a bare repository",
        repo.display()
    );
    let url = server.url("project");
    assert_eq!(
        url,
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            server.user,
            server.port,
            repo.display()
        )
    );

    let key = bed.root().join("deploy_key");
    let public = generate_key(&key);
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    let known_hosts = bed.root().join("known_hosts");
    let ssh_command = git_ssh_command(&key, &known_hosts);
    let git = |args: &[&str]| {
        let mut command = bed.command("git");
        command
            .args(args)
            .env("GIT_SSH_COMMAND", &ssh_command)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .current_dir(bed.root());
        call(command)
    };

    // Not authorized yet: refused.
    let refused = git(&["ls-remote", &url]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Permission denied"),
        "{}",
        text(&refused)
    );

    server.authorize(&public);

    // Authorized: ls-remote lists the commit the bare repository holds.
    let head = Command::new("git")
        .arg("--git-dir")
        .arg(&repo)
        .args(["rev-parse", "refs/heads/main"])
        .output()
        .expect("git rev-parse");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(head.len(), 40, "a commit id: {head:?}");
    let listed = git(&["ls-remote", &url]);
    assert!(listed.status.success(), "{}", text(&listed));
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listing.contains(&format!("{head}\trefs/heads/main")),
        "{}",
        text(&listed)
    );

    // And a clone has the README.
    let clone = bed.root().join("clone");
    let cloned = git(&[
        "clone",
        "--quiet",
        &url,
        clone.to_str().expect("utf-8 path"),
    ]);
    assert!(cloned.status.success(), "{}", text(&cloned));
    assert_eq!(
        std::fs::read_to_string(clone.join("README.md")).expect("README.md in the clone"),
        "# project\n"
    );

    // A plain command with the accepted key is refused by git-shell.
    let proof = bed.root().join("ran-a-shell-command");
    let mut ssh = bed.command("ssh");
    ssh.args(ssh_args(&key, &known_hosts, &server))
        .arg(format!("touch {}", proof.display()));
    let shell = call(ssh);
    assert!(!shell.status.success(), "{}", text(&shell));
    assert!(
        String::from_utf8_lossy(&shell.stderr).contains("unrecognized command"),
        "git-shell refuses it: {}",
        text(&shell)
    );
    assert!(
        !proof.exists(),
        "the command ran: {} exists",
        proof.display()
    );
    assert!(
        server.log().contains("Accepted publickey"),
        "sshd logged the logins:\n{}",
        server.log()
    );

    // A connection still open when the server is dropped: git-upload-pack
    // has sent its refs and waits for the client's wants.
    let mut open = bed.command("ssh");
    open.args(ssh_args(&key, &known_hosts, &server))
        .arg(format!("git-upload-pack '{}'", repo.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut client = open.spawn().expect("start ssh");
    let mut stdout = client.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut advertised = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            advertised.extend_from_slice(&buf[..n]);
            if advertised.windows(4).any(|w| w == b"0000") {
                let _ = tx.send(String::from_utf8_lossy(&advertised).into_owned());
            }
        }
    });
    let advertised = rx
        .recv_timeout(CALL_DEADLINE)
        .expect("git-upload-pack advertises its refs over ssh");
    assert!(advertised.contains(&head), "{advertised}");

    // The shell leads the group and carries the bed's marker; sshd and the
    // connection's processes are its descendants.
    let processes = server.processes();
    assert_eq!(processes[0], server.pid);
    let bed_marker = format!("{TEST_ID_VAR}={}", bed.test_id());
    assert!(processes_with_env(&bed_marker).contains(&server.pid));
    let commands: Vec<String> = processes
        .iter()
        .map(|pid| {
            String::from_utf8_lossy(
                &std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default(),
            )
            .replace('\0', " ")
        })
        .collect();
    assert!(
        commands.iter().any(|c| c.contains("upload-pack")),
        "the open connection is among the server's processes: {commands:?}"
    );

    drop(server);
    let gone: Vec<(u32, String)> = processes
        .iter()
        .zip(&commands)
        .filter(|(pid, _)| !e2e::is_zombie(**pid))
        .map(|(pid, c)| (*pid, c.clone()))
        .collect();
    assert_eq!(
        gone,
        Vec::new(),
        "processes of the server left after its drop"
    );
    assert_eq!(
        processes_with_env(&bed_marker),
        Vec::<u32>::new(),
        "no process of the bed is left after the server's drop"
    );
    // The client sees its connection end.
    let (done_tx, done_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = done_tx.send(client.wait());
    });
    let status = done_rx
        .recv_timeout(CALL_DEADLINE)
        .expect("ssh ends when the server is dropped")
        .expect("wait for ssh");
    assert!(
        !status.success(),
        "the cut connection is a failure: {status}"
    );
    let _ = waiter.join();
    let _ = reader.join();
}

/// The ssh options a sandbox uses, and the server's port and account.
fn ssh_args(key: &Path, known_hosts: &Path, server: &GitSshServer) -> Vec<String> {
    vec![
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=accept-new".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-p".into(),
        server.port.to_string(),
        format!("{}@127.0.0.1", server.user),
    ]
}

#[test]
fn the_beds_drop_kills_the_server_too() {
    let bed = TestBed::new();
    let server = GitSshServer::start(&bed);
    let processes = server.processes();
    assert!(processes.len() >= 2, "the shell and sshd: {processes:?}");
    let folder = server
        .repos_dir()
        .parent()
        .expect("the server's folder")
        .to_path_buf();
    // As if the test panicked in a way that skipped the server's drop.
    std::mem::forget(server);
    drop(bed);
    // SIGKILL is sent, not waited for, to what the marked shell's group
    // holds (sshd carries no marker): it dies within moments.
    let running = || -> Vec<u32> {
        processes
            .iter()
            .copied()
            .filter(|&pid| !e2e::is_zombie(pid))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !running().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(running(), Vec::<u32>::new(), "the bed's drop killed sshd");
    std::fs::remove_dir_all(&folder).expect("remove the server's folder");
}
