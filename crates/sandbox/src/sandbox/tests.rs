//! Tests of the orchestration that need no OpenCode: refusals before the
//! disk is touched, production without `.env`, status, list and destroy of
//! sandboxes that never started a server.

use super::*;
use std::os::unix::fs::PermissionsExt;

struct Bed {
    _dir: tempfile::TempDir,
    root: PathBuf,
    sandboxes: Sandboxes,
}

fn bed(mode: EnvMode) -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut config = SandboxConfig::new("/nonexistent/ocm");
    config.data_root = Some(root.clone());
    config.manager.state_root = Some(dir.path().join("state"));
    config.mode = mode;
    config.git_timeout = Duration::from_secs(60);
    Bed {
        sandboxes: Sandboxes::new(config).unwrap(),
        root,
        _dir: dir,
    }
}

fn name(n: &str) -> SandboxName {
    SandboxName::parse(n).unwrap()
}

#[test]
fn bad_inputs_touch_nothing() {
    let b = bed(EnvMode::Development);
    let options = UpOptions {
        git_url: Some("git@host:r;touch /tmp/x".into()),
        ssh_key: None,
    };
    let err = b.sandboxes.up(&name("a"), &options).unwrap_err();
    assert!(matches!(err, Error::BadUrl { .. }), "{err:?}");
    let key = b._dir.path().join("id");
    std::fs::write(&key, "not really a key").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let options = UpOptions {
        git_url: Some("git@host:r.git".into()),
        ssh_key: Some(key),
    };
    let err = b
        .sandboxes
        .up(&name("a"), &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");
    assert!(!b.root.exists(), "nothing was created");
}

#[test]
fn production_without_env_names_the_keys() {
    let b = bed(EnvMode::Production);
    let options = UpOptions {
        git_url: Some("https://127.0.0.1:9/r.git".into()),
        ssh_key: None,
    };
    let err = b.sandboxes.up(&name("p"), &options).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("GIT_URL")
            && text.contains("OPENCODE_SERVER_PASSWORD")
            && text.contains("MCP_TOOL_BEARER_TOKEN")
            && text.contains("sandboxes/p/.env"),
        "{text}"
    );
    let folder = b.sandboxes.folder(&name("p"));
    assert!(!folder.join(".env").exists());
    assert_eq!(
        std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let status = b.sandboxes.status(&name("p")).unwrap();
    assert_eq!(status.status, Outcome::Error);
    assert!(status.error.unwrap().contains("MCP_TOOL_BEARER_TOKEN"));
    let list = b.sandboxes.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].status, Outcome::Error);
    assert!(!list[0].cloned);
}

#[test]
fn development_unreachable_https_is_an_error_and_destroy_cleans_up() {
    let b = bed(EnvMode::Development);
    let options = UpOptions {
        git_url: Some("http://127.0.0.1:9/r.git".into()),
        ssh_key: None,
    };
    let err = b
        .sandboxes
        .up(&name("d"), &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("git clone"), "{err}");
    let folder = b.sandboxes.folder(&name("d"));
    let env_text = std::fs::read_to_string(folder.join(".env")).unwrap();
    assert!(env_text.contains("OPENCODE_SERVER_PASSWORD="));
    let ignore = std::fs::read_to_string(folder.join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == ".env"));
    let status = b.sandboxes.status(&name("d")).unwrap();
    assert_eq!(status.status, Outcome::Error);
    assert_eq!(status.git_url.as_deref(), Some("http://127.0.0.1:9/r.git"));
    // No secret in the JSON.
    let json = serde_json::to_string(&status).unwrap();
    for line in env_text.lines().filter(|l| {
        l.starts_with("OPENCODE_SERVER_PASSWORD=") || l.starts_with("MCP_TOOL_BEARER_TOKEN=")
    }) {
        let secret = line.split_once('=').unwrap().1;
        assert!(!json.contains(secret) && !err.contains(secret));
    }
    let destroyed = b.sandboxes.destroy(&name("d")).unwrap();
    assert_eq!(destroyed.folder, folder);
    assert!(!folder.exists());
    let err = b.sandboxes.status(&name("d")).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(b.sandboxes.list().unwrap().is_empty());
}

#[test]
fn generated_key_is_ours_and_destroyed_the_users_is_kept() {
    let b = bed(EnvMode::Development);
    // An SSH URL nobody answers: the key is made, then ls-remote fails.
    let options = UpOptions {
        git_url: Some("ssh://git@127.0.0.1:9/r.git".into()),
        ssh_key: None,
    };
    let err = b
        .sandboxes
        .up(&name("k"), &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("git ls-remote"), "{err}");
    let key = keys::generated_key_path(&b.root, &name("k"));
    assert!(key.exists());
    let destroyed = b.sandboxes.destroy(&name("k")).unwrap();
    assert_eq!(destroyed.removed_key, Some(key.clone()));
    assert!(!key.exists());

    // The user's key: used, never removed.
    let made = keys::ensure_generated(
        &b.root,
        &name("other"),
        &keys::Limits::new(Duration::from_secs(30)),
    )
    .unwrap();
    let user = b._dir.path().join("user-key");
    std::fs::copy(&made.path, &user).unwrap();
    std::fs::set_permissions(&user, std::fs::Permissions::from_mode(0o600)).unwrap();
    let options = UpOptions {
        git_url: Some("ssh://git@127.0.0.1:9/r.git".into()),
        ssh_key: Some(user.clone()),
    };
    b.sandboxes.up(&name("u"), &options).unwrap_err();
    let status = b.sandboxes.status(&name("u")).unwrap();
    assert_eq!(status.key_path.as_deref(), Some(user.as_path()));
    assert_eq!(status.key_owner, Some(KeyOwner::User));
    let destroyed = b.sandboxes.destroy(&name("u")).unwrap();
    assert_eq!(destroyed.removed_key, None);
    assert_eq!(destroyed.kept_user_key, Some(user.clone()));
    assert!(user.exists());
}

#[test]
fn concurrent_ups_take_turns() {
    // Without the sandbox's lock, the second `up` could find the `.env`
    // half made or fail to create it (O_EXCL); with it, both read one file
    // and fail the same way (nothing answers at the URL).
    let b = bed(EnvMode::Development);
    let options = UpOptions {
        git_url: Some("http://127.0.0.1:9/r.git".into()),
        ssh_key: None,
    };
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    b.sandboxes
                        .up(&name("c"), &options)
                        .unwrap_err()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for err in errors {
        assert!(err.contains("git clone"), "{err}");
    }
}

#[test]
fn manager_config_has_the_env_password() {
    let b = bed(EnvMode::Development);
    let n = name("cfg");
    let err = b.sandboxes.manager_config(&n).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let options = UpOptions {
        git_url: Some("http://127.0.0.1:9/r.git".into()),
        ssh_key: None,
    };
    assert!(b.sandboxes.up(&n, &options).is_err(), "port 9 has no git");
    let env_text = std::fs::read_to_string(b.sandboxes.folder(&n).join(".env")).unwrap();
    let password = env_text
        .lines()
        .find_map(|l| l.strip_prefix("OPENCODE_SERVER_PASSWORD="))
        .unwrap();
    let config = b.sandboxes.manager_config(&n).unwrap();
    assert!(
        matches!(&config.password, PasswordPolicy::Fixed(p) if p == password),
        "{:?}",
        config.password
    );
    assert!(matches!(config.port_policy, PortPolicy::Range(_)));
    assert!(!format!("{config:?}").contains(password));
}
