//! What the sandbox operations return: serializable, for the CLI's JSON,
//! and free of secrets (no field ever holds the password or the token).

use std::path::PathBuf;

use serde::Serialize;

use crate::keys::KeyOwner;
use crate::name::SandboxName;

/// A sandbox's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Cloned, the server healthy and the companion answering.
    Success,
    /// The deploy key has not been accepted by the git server yet.
    WaitingForKey,
    /// Something failed or is not running; see `error`.
    Error,
}

/// The OpenCode server of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerView {
    /// `http://127.0.0.1:PORT`.
    pub url: Option<String>,
    /// Its port.
    pub port: Option<u16>,
    /// Its pid.
    pub pid: Option<u32>,
    /// It answered `GET /global/health`.
    pub healthy: bool,
    /// `running`, `stopped`, `unhealthy` or `dead`.
    pub state: String,
}

/// The companion of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanionView {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its port.
    pub port: u16,
    /// Its pid.
    pub pid: u32,
    /// The recorded process still runs.
    pub alive: bool,
    /// It answered an HTTP request within 2 s.
    pub answered: bool,
    /// How long the answer took.
    pub answered_ms: Option<u64>,
    /// Its log.
    pub log: PathBuf,
}

/// A sandbox, as `status` and `up` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxStatus {
    /// The name.
    pub name: SandboxName,
    /// `success`, `waiting_for_key` or `error`.
    pub status: Outcome,
    /// The sandbox folder (`.env`, `repo/`...).
    pub folder: PathBuf,
    /// The clone, the project the server runs for.
    pub repo: PathBuf,
    /// `GIT_URL`, when `.env` could be read.
    pub git_url: Option<String>,
    /// The private key's path (SSH URLs).
    pub key_path: Option<PathBuf>,
    /// Whose key it is (`ocm`: deleted by destroy; `user`: never).
    pub key_owner: Option<KeyOwner>,
    /// The public key to add to the git server, when waiting for it.
    pub public_key: Option<String>,
    /// The OpenCode server.
    pub server: Option<ServerView>,
    /// The companion.
    pub companion: Option<CompanionView>,
    /// When the server and companion were last checked, RFC 3339 UTC.
    pub last_health_check: Option<String>,
    /// Things to tell the user (a generated `.env`...).
    pub warnings: Vec<String>,
    /// What is wrong, when `status` is `error`.
    pub error: Option<String>,
}

/// What `up` ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Up {
    /// Everything runs.
    Ready(SandboxStatus),
    /// The git server refused the key: add the status's `public_key` to it
    /// (a deploy key of the repository) and run `up` again; nothing was
    /// started. The status says `waiting_for_key`, with the key's path and
    /// owner, the folder, the git URL and the warnings.
    WaitingForKey(SandboxStatus),
}

impl Up {
    /// The sandbox's status, whichever way `up` ended.
    pub fn status(&self) -> &SandboxStatus {
        match self {
            Up::Ready(status) | Up::WaitingForKey(status) => status,
        }
    }
}

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSummary {
    /// The name.
    pub name: SandboxName,
    /// The sandbox folder.
    pub folder: PathBuf,
    /// `success`, `waiting_for_key` or `error`, from the recorded state
    /// (no process is checked: see `status` for that).
    pub status: Outcome,
    /// Cloned yet.
    pub cloned: bool,
}

/// What `down` stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Down {
    /// The name.
    pub name: SandboxName,
    /// The server's pid, when one was stopped.
    pub server_pid: Option<u32>,
    /// Whether a companion was stopped.
    pub companion_stopped: bool,
}

/// What `destroy` removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Destroyed {
    /// The name.
    pub name: SandboxName,
    /// The sandbox folder, removed.
    pub folder: PathBuf,
    /// The generated key, when one was removed.
    pub removed_key: Option<PathBuf>,
    /// The user's key, left untouched.
    pub kept_user_key: Option<PathBuf>,
}
