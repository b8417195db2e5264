//! Tests of `.env` loading: modes, missing keys, generation, refusals.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const FULL: &str = "GIT_URL=git@host:r.git\nSSH_KEY_PATH=/k/id\nOPENCODE_SERVER_PASSWORD=pw-hunter2\nexport MCP_TOOL_BEARER_TOKEN='tok-hunter2'\nOPENCODE_PORT=4105\nCOMPANION_COMMAND=my-tool --port '{port}' \"a b\"\nEXTRA=1\n";

#[test]
fn mode_from_ocm_env() {
    assert_eq!(EnvMode::parse(None).unwrap(), EnvMode::Production);
    assert_eq!(
        EnvMode::parse(Some("production")).unwrap(),
        EnvMode::Production
    );
    assert_eq!(
        EnvMode::parse(Some("development")).unwrap(),
        EnvMode::Development
    );
    let err = EnvMode::parse(Some("dev")).unwrap_err().to_string();
    assert!(
        err.contains("\"dev\"") && err.contains("development"),
        "{err}"
    );
}

#[test]
fn secret_is_redacted_and_compares() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
    assert!(s.matches("hunter2"));
    assert!(!s.matches("hunter3"));
    assert!(!s.matches("hunter"));
    assert!(!s.matches(""));
    assert_eq!(s, Secret::new("hunter2"));
}

#[test]
fn reads_a_full_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    write(&path, FULL, 0o600);
    let (env, warning) = load(
        &path,
        EnvMode::Production,
        Given::default(),
        Path::new("/d"),
    )
    .unwrap();
    assert_eq!(warning, None);
    assert_eq!(env.git_url.as_str(), "git@host:r.git");
    assert_eq!(env.ssh_key_path.as_deref(), Some(Path::new("/k/id")));
    assert_eq!(env.server_password.expose(), "pw-hunter2");
    assert_eq!(env.bearer_token.expose(), "tok-hunter2");
    assert_eq!(env.opencode_port, Some(4105));
    assert_eq!(env.mcp_tool_port, None);
    assert_eq!(
        env.companion_command,
        Some(vec![
            "my-tool".into(),
            "--port".into(),
            "{port}".into(),
            "a b".into()
        ])
    );
    assert_eq!(env.unknown_keys, vec!["EXTRA".to_string()]);
    assert!(!format!("{env:?}").contains("hunter2"));
}

#[test]
fn production_without_a_file_lists_every_key_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let err = load(
        &path,
        EnvMode::Production,
        Given::default(),
        Path::new("/d"),
    )
    .unwrap_err();
    match &err {
        Error::MissingKeys {
            keys, file_missing, ..
        } => {
            assert!(file_missing);
            assert_eq!(
                keys,
                &[GIT_URL, SSH_KEY_PATH, SERVER_PASSWORD, BEARER_TOKEN]
            );
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("OCM_ENV=development"), "{text}");
    assert!(text.contains("SSH_KEY_PATH=/d has ocm generate"), "{text}");
    assert!(!path.exists());
    // An https URL needs no key.
    let url = GitUrl::parse("https://h/r").unwrap();
    let given = Given {
        git_url: Some(&url),
        ssh_key: None,
    };
    match load(&path, EnvMode::Production, given, Path::new("/d")).unwrap_err() {
        Error::MissingKeys { keys, .. } => {
            assert_eq!(keys, &[GIT_URL, SERVER_PASSWORD, BEARER_TOKEN])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_incomplete_file_lists_exactly_the_missing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    write(
        &path,
        "GIT_URL=ssh://h/r\nOPENCODE_SERVER_PASSWORD=\n",
        0o600,
    );
    for mode in [EnvMode::Production, EnvMode::Development] {
        match load(&path, mode, Given::default(), Path::new("/d")).unwrap_err() {
            Error::MissingKeys {
                keys,
                file_missing,
                key_hint,
                ..
            } => {
                assert!(!file_missing);
                assert_eq!(keys, &[SSH_KEY_PATH, SERVER_PASSWORD, BEARER_TOKEN]);
                assert_eq!(key_hint.as_deref(), Some(Path::new("/d")));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn development_generates_a_private_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let url = GitUrl::parse("ssh://git@127.0.0.1:2222/r.git").unwrap();
    let given = Given {
        git_url: Some(&url),
        ssh_key: None,
    };
    let key = Path::new("/data/keys/x-deploy");
    let (env, warning) = load(&path, EnvMode::Development, given, key).unwrap();
    assert_eq!(warning, Some(Warning::GeneratedEnv { path: path.clone() }));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(env.ssh_key_path.as_deref(), Some(key));
    assert_eq!(env.server_password.expose().len(), 32);
    assert_ne!(env.server_password, env.bearer_token);
    let text = warning.unwrap().to_string();
    assert!(text.contains("review"), "{text}");
    assert!(!text.contains(env.server_password.expose()), "{text}");
    // A second load reads it back, no warning, same secrets.
    let (again, warning) = load(&path, EnvMode::Development, given, key).unwrap();
    assert_eq!(warning, None);
    assert_eq!(again, env);
}

#[test]
fn development_needs_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let err = load(
        &path,
        EnvMode::Development,
        Given::default(),
        Path::new("/d"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoGitUrl { .. }), "{err:?}");
    assert!(!path.exists());
}

#[test]
fn refuses_unsafe_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    write(&path, FULL, 0o644);
    let err = load(
        &path,
        EnvMode::Production,
        Given::default(),
        Path::new("/d"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");
    let real = dir.path().join("real");
    write(&real, FULL, 0o600);
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&real, &path).unwrap();
    for mode in [EnvMode::Production, EnvMode::Development] {
        let err = load(&path, mode, Given::default(), Path::new("/d"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let err = load(
        &path,
        EnvMode::Production,
        Given::default(),
        Path::new("/d"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn a_different_given_value_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    write(&path, FULL, 0o600);
    let url = GitUrl::parse("https://other/r").unwrap();
    let given = Given {
        git_url: Some(&url),
        ssh_key: None,
    };
    let err = load(&path, EnvMode::Production, given, Path::new("/d"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("https://other/r") && err.contains("git@host:r.git") && err.contains(".env"),
        "{err}"
    );
    let given = Given {
        git_url: None,
        ssh_key: Some(Path::new("/other/key")),
    };
    let err = load(&path, EnvMode::Production, given, Path::new("/d"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/other/key") && err.contains("/k/id"), "{err}");
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    write(&path, &format!("{FULL}MCP_TOOL_PORT=70000\n"), 0o600);
    let err = load(
        &path,
        EnvMode::Production,
        Given::default(),
        Path::new("/d"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("MCP_TOOL_PORT") && err.contains("70000"),
        "{err}"
    );
    write(&path, "A=1\nOPENCODE_SERVER_PASSWORD='hunter2\n", 0o600);
    let err = load(
        &path,
        EnvMode::Production,
        Given::default(),
        Path::new("/d"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 2") && !err.contains("hunter2"), "{err}");
}

#[test]
fn split_words_respects_quotes_without_a_shell() {
    assert_eq!(
        split_words(r#"a 'b c' "d \"e\" \\" f\ g $(x)"#).unwrap(),
        vec!["a", "b c", "d \"e\" \\", "f g", "$(x)"]
    );
    assert!(split_words("a 'b").is_err());
    assert!(split_words("   ").is_err());
}
