//! A sandbox's settings, read from its `.env` (or generated in development
//! mode): the git URL, the key, the server's password and the companion's
//! token, optional ports, binary and companion command.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::dotenv::{self, Entry};
use crate::error::Error;
use crate::url::GitUrl;

/// `GIT_URL`: where the repository is cloned from.
pub const GIT_URL: &str = "GIT_URL";
/// `SSH_KEY_PATH`: the private key for SSH URLs.
pub const SSH_KEY_PATH: &str = "SSH_KEY_PATH";
/// `OPENCODE_SERVER_PASSWORD`: the OpenCode server's password.
pub const SERVER_PASSWORD: &str = "OPENCODE_SERVER_PASSWORD";
/// `MCP_TOOL_BEARER_TOKEN`: the companion's bearer token.
pub const BEARER_TOKEN: &str = "MCP_TOOL_BEARER_TOKEN";
/// `OPENCODE_PORT`: a fixed port for the server (else 4100-4199).
pub const OPENCODE_PORT: &str = "OPENCODE_PORT";
/// `MCP_TOOL_PORT`: a fixed port for the companion (else 5100-5199).
pub const MCP_TOOL_PORT: &str = "MCP_TOOL_PORT";
/// `OPENCODE_BIN`: the opencode binary.
pub const OPENCODE_BIN: &str = "OPENCODE_BIN";
/// `COMPANION_COMMAND`: the companion's command line (words, quotes
/// respected, no shell).
pub const COMPANION_COMMAND: &str = "COMPANION_COMMAND";

/// Keys every `.env` needs (plus [`SSH_KEY_PATH`] for an SSH URL).
pub const REQUIRED: [&str; 3] = [GIT_URL, SERVER_PASSWORD, BEARER_TOKEN];

/// A secret value: never printed (`Debug` and `Display` say
/// `<redacted>`), compared in constant time.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for where it must go (an environment variable).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with `other` (the time depends on the
    /// lengths only).
    pub fn matches(&self, other: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for i in 0..a.len().max(b.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= x ^ y;
        }
        std::hint::black_box(diff) == 0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How a missing `.env` is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnvMode {
    /// The default: a missing or incomplete `.env` is an error.
    #[default]
    Production,
    /// A missing `.env` is generated with random secrets.
    Development,
}

impl EnvMode {
    /// The mode `OCM_ENV` names: unset, empty or `production` →
    /// Production, `development` → Development, anything else an error.
    pub fn from_env() -> Result<EnvMode, Error> {
        EnvMode::parse(std::env::var("OCM_ENV").ok().as_deref())
    }

    /// The mode a value of `OCM_ENV` names.
    pub fn parse(value: Option<&str>) -> Result<EnvMode, Error> {
        match value {
            None | Some("" | "production") => Ok(EnvMode::Production),
            Some("development") => Ok(EnvMode::Development),
            Some(other) => Err(Error::BadMode {
                value: other.to_string(),
            }),
        }
    }
}

/// Something the caller should tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// A `.env` was generated (development mode).
    GeneratedEnv {
        /// The file.
        path: PathBuf,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::GeneratedEnv { path } => write!(
                f,
                "generated {} (OCM_ENV=development) with a random {SERVER_PASSWORD} and {BEARER_TOKEN} (stored there, mode 0600) and the {GIT_URL} and {SSH_KEY_PATH} given; review it before relying on the sandbox",
                path.display()
            ),
        }
    }
}

/// A sandbox's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxEnv {
    /// The `.env` file they came from.
    pub path: PathBuf,
    /// `GIT_URL`.
    pub git_url: GitUrl,
    /// `SSH_KEY_PATH`, when set.
    pub ssh_key_path: Option<PathBuf>,
    /// `OPENCODE_SERVER_PASSWORD`.
    pub server_password: Secret,
    /// `MCP_TOOL_BEARER_TOKEN`.
    pub bearer_token: Secret,
    /// `OPENCODE_PORT`.
    pub opencode_port: Option<u16>,
    /// `MCP_TOOL_PORT`.
    pub mcp_tool_port: Option<u16>,
    /// `OPENCODE_BIN`.
    pub opencode_bin: Option<PathBuf>,
    /// `COMPANION_COMMAND`, split into words.
    pub companion_command: Option<Vec<String>>,
    /// The other keys of the file (kept, ignored; names only).
    pub unknown_keys: Vec<String>,
}

/// What the caller gave (command-line options).
#[derive(Debug, Clone, Copy, Default)]
pub struct Given<'a> {
    /// `--git URL`.
    pub git_url: Option<&'a GitUrl>,
    /// `--ssh-key PATH`.
    pub ssh_key: Option<&'a Path>,
}

/// Reads the `.env` at `path`, or in development mode generates it when it
/// is missing (with `given`'s URL and key, else `default_key` for an SSH
/// URL). A value `given` that differs from the file's is an error naming
/// both.
pub fn load(
    path: &Path,
    mode: EnvMode,
    given: Given<'_>,
    default_key: &Path,
) -> Result<(SandboxEnv, Option<Warning>), Error> {
    let text = match read_private(path)? {
        Some(text) => text,
        None => {
            if mode == EnvMode::Production {
                let url_is_ssh = given.git_url.is_none_or(GitUrl::is_ssh);
                let mut keys = REQUIRED.to_vec();
                if url_is_ssh {
                    keys.insert(1, SSH_KEY_PATH);
                }
                return Err(Error::MissingKeys {
                    path: path.to_path_buf(),
                    file_missing: true,
                    key_hint: url_is_ssh.then(|| default_key.to_path_buf()),
                    keys,
                });
            }
            let url = given.git_url.ok_or_else(|| Error::NoGitUrl {
                path: path.to_path_buf(),
            })?;
            let key = given
                .ssh_key
                .map(Path::to_path_buf)
                .or_else(|| url.is_ssh().then(|| default_key.to_path_buf()));
            let text = generate(path, url, key.as_deref())?;
            let env = parse_env(path, &text, given).map_err(|e| hint(e, default_key))?;
            return Ok((
                env,
                Some(Warning::GeneratedEnv {
                    path: path.to_path_buf(),
                }),
            ));
        }
    };
    Ok((
        parse_env(path, &text, given).map_err(|e| hint(e, default_key))?,
        None,
    ))
}

/// `err` with the generated key's path as a hint when it says
/// `SSH_KEY_PATH` is missing.
fn hint(err: Error, default_key: &Path) -> Error {
    match err {
        Error::MissingKeys {
            path,
            file_missing,
            keys,
            key_hint: None,
        } if keys.contains(&SSH_KEY_PATH) => Error::MissingKeys {
            path,
            file_missing,
            keys,
            key_hint: Some(default_key.to_path_buf()),
        },
        other => other,
    }
}

/// The settings in `text` (the content of `path`).
pub fn parse_env(path: &Path, text: &str, given: Given<'_>) -> Result<SandboxEnv, Error> {
    let entries = dotenv::parse(text).map_err(|source| Error::Dotenv {
        path: path.to_path_buf(),
        source,
    })?;
    let get = |key| dotenv::get(&entries, key).filter(|v| !v.is_empty());
    let url_text = get(GIT_URL);
    let url_is_ssh = url_text.is_none_or(|u| GitUrl::parse(u).is_ok_and(|u| u.is_ssh()));
    let mut missing: Vec<&'static str> = Vec::new();
    for key in [GIT_URL, SSH_KEY_PATH, SERVER_PASSWORD, BEARER_TOKEN] {
        if get(key).is_none() && (key != SSH_KEY_PATH || url_is_ssh) {
            missing.push(key);
        }
    }
    if !missing.is_empty() {
        return Err(Error::MissingKeys {
            path: path.to_path_buf(),
            file_missing: false,
            keys: missing,
            key_hint: None,
        });
    }
    let setting = |key: &'static str, problem: String| Error::BadSetting {
        path: path.to_path_buf(),
        key,
        problem,
    };
    let url_text = url_text.unwrap_or_default();
    let git_url = GitUrl::parse(url_text).map_err(|e| setting(GIT_URL, e.to_string()))?;
    if let Some(given) = given.git_url
        && given.as_str() != url_text
    {
        return Err(Error::Conflict {
            key: GIT_URL,
            given: given.to_string(),
            in_file: url_text.to_string(),
            path: path.to_path_buf(),
        });
    }
    let ssh_key_path = get(SSH_KEY_PATH).map(PathBuf::from);
    if let Some(given) = given.ssh_key
        && ssh_key_path.as_deref() != Some(given)
    {
        return Err(Error::Conflict {
            key: SSH_KEY_PATH,
            given: given.display().to_string(),
            in_file: ssh_key_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            path: path.to_path_buf(),
        });
    }
    let port = |key: &'static str| -> Result<Option<u16>, Error> {
        get(key)
            .map(|v| {
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| setting(key, format!("{v:?} is not a port (1-65535)")))
            })
            .transpose()
    };
    let companion_command = get(COMPANION_COMMAND)
        .map(|v| split_words(v).map_err(|problem| setting(COMPANION_COMMAND, problem)))
        .transpose()?;
    const KNOWN: [&str; 8] = [
        GIT_URL,
        SSH_KEY_PATH,
        SERVER_PASSWORD,
        BEARER_TOKEN,
        OPENCODE_PORT,
        MCP_TOOL_PORT,
        OPENCODE_BIN,
        COMPANION_COMMAND,
    ];
    let mut unknown_keys: Vec<String> = entries
        .iter()
        .map(|e: &Entry| e.key.clone())
        .filter(|k| !KNOWN.contains(&k.as_str()))
        .collect();
    unknown_keys.dedup();
    Ok(SandboxEnv {
        path: path.to_path_buf(),
        git_url,
        ssh_key_path,
        server_password: Secret::new(get(SERVER_PASSWORD).unwrap_or_default()),
        bearer_token: Secret::new(get(BEARER_TOKEN).unwrap_or_default()),
        opencode_port: port(OPENCODE_PORT)?,
        mcp_tool_port: port(MCP_TOOL_PORT)?,
        opencode_bin: get(OPENCODE_BIN).map(PathBuf::from),
        companion_command,
        unknown_keys,
    })
}

/// Splits a command line into words: spaces separate, single quotes are
/// literal, double quotes allow `\"` and `\\`, a backslash outside quotes
/// escapes the next character. Nothing is expanded. The error says what is
/// wrong (the command is not repeated).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("a single quote is never closed".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("a double quote is never closed".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("a double quote is never closed".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("it ends with a lone backslash".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if words.is_empty() {
        return Err("it is empty".into());
    }
    Ok(words)
}

/// The content of `path` when it exists; refused when it is a symlink, not
/// a regular file, or readable or writable by group or others.
fn read_private(path: &Path) -> Result<Option<String>, Error> {
    let unsafe_file = |problem: String| Error::UnsafeEnvFile {
        path: path.to_path_buf(),
        problem,
    };
    let before = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read", path, e)),
    };
    if before.file_type().is_symlink() {
        return Err(unsafe_file(
            "is a symbolic link; secrets are read only from a regular file: replace it with the file itself (mode 0600)".into(),
        ));
    }
    if !before.is_file() {
        return Err(unsafe_file("is not a regular file".into()));
    }
    let mut file = File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("cannot read", path, e))?;
    if (meta.dev(), meta.ino()) != (before.dev(), before.ino()) {
        return Err(unsafe_file("changed while it was being opened".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(unsafe_file(format!(
            "has mode {mode:04o}, so other users can read the secrets in it: run chmod 600 {}",
            path.display()
        )));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| Error::io("cannot read", path, e))?;
    Ok(Some(text))
}

/// Writes a new `.env` (created exclusively, never through a symlink, mode
/// 0600) and returns its text.
fn generate(path: &Path, url: &GitUrl, key: Option<&Path>) -> Result<String, Error> {
    let mut text = String::from(
        "# Generated by ocm (OCM_ENV=development): review it. Secrets stay in this file.\n",
    );
    let line = |text: &mut String, k: &str, v: &str| {
        text.push_str(&dotenv::render(k, v));
        text.push('\n');
    };
    line(&mut text, GIT_URL, url.as_str());
    if let Some(key) = key {
        line(&mut text, SSH_KEY_PATH, &key.to_string_lossy());
    }
    line(&mut text, SERVER_PASSWORD, &manager::random_secret()?);
    line(&mut text, BEARER_TOKEN, &manager::random_secret()?);
    text.push_str("# Optional: OPENCODE_PORT, MCP_TOOL_PORT, OPENCODE_BIN, COMPANION_COMMAND\n");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("cannot create", path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("cannot write", path, e))?;
    Ok(text)
}

#[cfg(test)]
mod tests;
