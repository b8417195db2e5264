//! `Sandboxes`: up, status, down, restart, destroy and list, each a
//! sequence of the other modules' steps and the manager's server and
//! companion calls.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use manager::{CompanionSpec, Manager, PasswordPolicy, PortPolicy};
use serde::{Deserialize, Serialize};

use crate::env::{self, EnvMode, Given, SandboxEnv};
use crate::error::Error;
use crate::git::{self, Access, Remote};
use crate::keys::{self, DeployKey, KeyOwner};
use crate::name::SandboxName;
use crate::report::{
    CompanionView, Destroyed, Down, Outcome, SandboxStatus, SandboxSummary, ServerView, Up,
};
use crate::url::GitUrl;

mod supervision;

/// The server's ports when `OPENCODE_PORT` is not set.
pub const SERVER_PORTS: std::ops::RangeInclusive<u16> = 4100..=4199;
/// The companion's ports when `MCP_TOOL_PORT` is not set.
pub const COMPANION_PORTS: std::ops::RangeInclusive<u16> = 5100..=5199;

/// The file in a sandbox folder that records how the last `up` ended.
const UP_RECORD: &str = "up.json";
/// The lock that makes `up`, `down`, `restart` and `destroy` of one sandbox
/// take turns.
const LOCK: &str = "sandbox.lock";

/// How [`Sandboxes`] works.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where sandboxes and keys go; `None`: `$XDG_DATA_HOME/ocm`, else
    /// `~/.local/share/ocm`.
    pub data_root: Option<PathBuf>,
    /// The base of every sandbox's manager (state root, timeouts); its
    /// password, port policy and (with `OPENCODE_BIN`) binary are set per
    /// sandbox from `.env`.
    pub manager: manager::Config,
    /// The ocm binary, for the default companion (`ocm mcp --http ...`).
    pub ocm_bin: PathBuf,
    /// What a missing `.env` means.
    pub mode: EnvMode,
    /// The limit of every git and ssh-keygen run.
    pub git_timeout: Duration,
    /// Signals (Ctrl-C) that cancel a git run or a start: the program is
    /// stopped with its group, the start cleaned up, and the call returns
    /// an interrupted error. `None`: they run to their end.
    pub interrupts: Option<std::sync::Arc<manager::signals::Signals>>,
}

impl SandboxConfig {
    /// Defaults: the default data root, `manager::Config::default()`,
    /// production mode, 120 s for git.
    pub fn new(ocm_bin: impl Into<PathBuf>) -> Self {
        SandboxConfig {
            data_root: None,
            manager: manager::Config::default(),
            ocm_bin: ocm_bin.into(),
            mode: EnvMode::Production,
            git_timeout: Duration::from_secs(120),
            interrupts: None,
        }
    }

    /// [`new`](Self::new) with the mode from `OCM_ENV`.
    pub fn from_env(ocm_bin: impl Into<PathBuf>) -> Result<Self, Error> {
        Ok(SandboxConfig {
            mode: EnvMode::from_env()?,
            ..SandboxConfig::new(ocm_bin)
        })
    }
}

/// What `up` is given besides the name.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// `--git URL`: needed the first time (it goes into `.env`), else it
    /// must match `.env`'s `GIT_URL`.
    pub git_url: Option<String>,
    /// `--ssh-key PATH`: the user's key instead of a generated one.
    pub ssh_key: Option<PathBuf>,
}

/// The sandboxes under one data root.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    config: SandboxConfig,
    data_root: PathBuf,
}

/// How the last `up` ended (`up.json` in the sandbox folder; no secrets).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UpRecord {
    outcome: Outcome,
    error: Option<String>,
    at: String,
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "success" => Ok(Outcome::Success),
            "waiting_for_key" => Ok(Outcome::WaitingForKey),
            _ => Ok(Outcome::Error),
        }
    }
}

impl Sandboxes {
    /// The sandboxes of `config` (nothing is created yet).
    pub fn new(config: SandboxConfig) -> Result<Sandboxes, Error> {
        let data_root = match &config.data_root {
            Some(root) => root.clone(),
            None => default_data_root()?,
        };
        Ok(Sandboxes { config, data_root })
    }

    /// Where sandboxes (`sandboxes/`) and keys (`keys/`) go.
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    /// The folder of sandbox `name`: `<data_root>/sandboxes/NAME`.
    pub fn folder(&self, name: &SandboxName) -> PathBuf {
        self.data_root.join("sandboxes").join(name.as_str())
    }

    /// The clone of sandbox `name` (the project its server runs for).
    pub fn repo(&self, name: &SandboxName) -> PathBuf {
        self.folder(name).join("repo")
    }

    /// Brings the sandbox up, from nothing or from where it stopped: the
    /// folder and `.env`, the key, access to the repository (an SSH key not
    /// yet accepted gives [`Up::WaitingForKey`] and starts nothing), the
    /// clone (or a fetch), the OpenCode server and the companion.
    pub fn up(&self, name: &SandboxName, options: &UpOptions) -> Result<Up, Error> {
        // Inputs first: nothing is touched for a bad URL or key.
        let url = options.git_url.as_deref().map(GitUrl::parse).transpose()?;
        if let Some(key) = &options.ssh_key {
            keys::user_key(key, &self.limits())?;
        }
        let folder = self.make_folder(name)?;
        let _lock = self.lock(&folder)?;
        let result = self.up_in(name, &folder, url.as_ref(), options.ssh_key.as_deref());
        let record = match &result {
            Ok(Up::Ready(_)) => (Outcome::Success, None),
            Ok(Up::WaitingForKey(_)) => (Outcome::WaitingForKey, None),
            Err(e) => (Outcome::Error, Some(e.to_string())),
        };
        // The outcome's own error matters more than failing to record it.
        let written = write_up_record(&folder, record.0, record.1);
        let up = result?;
        written?;
        Ok(up)
    }

    fn up_in(
        &self,
        name: &SandboxName,
        folder: &Path,
        url: Option<&GitUrl>,
        ssh_key: Option<&Path>,
    ) -> Result<Up, Error> {
        let given = Given {
            git_url: url,
            ssh_key,
        };
        let default_key = keys::generated_key_path(&self.data_root, name);
        let (env, warning) =
            env::load(&folder.join(".env"), self.config.mode, given, &default_key)?;
        let warnings: Vec<String> = warning.iter().map(ToString::to_string).collect();
        let key = self.key(name, &env)?;
        let known_hosts = folder.join("known_hosts");
        let limits = self.limits();
        let remote = Remote {
            url: &env.git_url,
            key: key.as_ref().map(|k| k.path.as_path()),
            known_hosts: &known_hosts,
            limits: &limits,
        };
        if env.git_url.is_ssh() && git::ls_remote(&remote)? == Access::PermissionDenied {
            // An SSH URL always has a key (.env requires SSH_KEY_PATH).
            let Some(key) = key else {
                return Err(Error::MissingKeys {
                    path: env.path.clone(),
                    file_missing: false,
                    keys: vec![env::SSH_KEY_PATH],
                    key_hint: Some(default_key),
                });
            };
            let mut status = self.blank_status(name, folder);
            status.status = Outcome::WaitingForKey;
            status.git_url = Some(env.git_url.to_string());
            status.key_owner = Some(key.owner);
            status.key_path = Some(key.path);
            status.public_key = Some(key.public_key);
            status.warnings = warnings;
            return Ok(Up::WaitingForKey(status));
        }
        let repo = self.repo(name);
        git::clone_or_fetch(&remote, &repo)?;
        let manager = self.manager(&env)?;
        let server = manager.ensure(&repo)?;
        manager.ensure_companion(
            &repo,
            &self.companion_spec(&env, &manager, &repo, &server.url),
        )?;
        let mut status = self.status_with(name, Some(&env), key.as_ref(), &manager)?;
        status.warnings.extend(warnings);
        Ok(Up::Ready(status))
    }

    /// The sandbox as it is now: the recorded outcome of the last `up`, and
    /// for a clone the live server and companion (health-checked now).
    /// Never starts or creates anything.
    pub fn status(&self, name: &SandboxName) -> Result<SandboxStatus, Error> {
        let folder = self.existing_folder(name)?;
        let env = match self.read_env(name) {
            Ok(env) => env,
            Err(e) => {
                let mut status = self.blank_status(name, &folder);
                status.error = Some(e.to_string());
                return Ok(status);
            }
        };
        let key = match &env.ssh_key_path {
            Some(path) => Some(self.existing_key(name, path)?),
            None => None,
        };
        let manager = self.manager(&env)?;
        self.status_with(name, Some(&env), key.as_ref(), &manager)
    }

    /// Stops the companion and the server (the clone and `.env` stay).
    pub fn down(&self, name: &SandboxName) -> Result<Down, Error> {
        let folder = self.existing_folder(name)?;
        let _lock = self.lock(&folder)?;
        let repo = self.repo(name);
        let manager = match self.read_env(name) {
            Ok(env) => self.manager(&env)?,
            Err(_) => Manager::new(self.config.manager.clone())?,
        };
        // The server first: its record then says `desired: down`, so a
        // supervisor that sees the companion exit leaves it stopped.
        let server = manager.stop(&repo)?;
        let companion = manager.stop_companion(&repo)?;
        Ok(Down {
            name: name.clone(),
            server_pid: server.stopped.and(server.pid),
            companion_stopped: companion.is_some(),
        })
    }

    /// Restarts the server and the companion (no git access: see `up` for
    /// a fetch).
    pub fn restart(&self, name: &SandboxName) -> Result<SandboxStatus, Error> {
        let folder = self.existing_folder(name)?;
        let _lock = self.lock(&folder)?;
        let env = self.read_env(name)?;
        let repo = self.repo(name);
        if !repo.join(".git").exists() {
            return Err(Error::NotFound {
                name: name.to_string(),
                folder: repo,
            });
        }
        let manager = self.manager(&env)?;
        manager.stop_companion(&repo)?;
        let server = manager.restart(&repo)?;
        manager.ensure_companion(
            &repo,
            &self.companion_spec(&env, &manager, &repo, &server.url),
        )?;
        let key = match &env.ssh_key_path {
            Some(path) => Some(self.existing_key(name, path)?),
            None => None,
        };
        self.status_with(name, Some(&env), key.as_ref(), &manager)
    }

    /// Stops both, removes the project's state folder, the sandbox folder
    /// and the generated key. A user's own key is never touched.
    pub fn destroy(&self, name: &SandboxName) -> Result<Destroyed, Error> {
        let folder = self.existing_folder(name)?;
        let _lock = self.lock(&folder)?;
        let repo = self.repo(name);
        let env = self.read_env(name).ok();
        let manager = match &env {
            Some(env) => self.manager(env)?,
            None => Manager::new(self.config.manager.clone())?,
        };
        manager.stop_companion(&repo)?;
        manager.destroy(&repo)?;
        std::fs::remove_dir_all(&folder).map_err(|e| Error::io("cannot remove", &folder, e))?;
        let generated = keys::generated_key_path(&self.data_root, name);
        let removed_key = keys::remove_generated(&self.data_root, name)?.then_some(generated);
        let kept_user_key = env
            .and_then(|env| env.ssh_key_path)
            .filter(|path| keys::owner_of(path, &self.data_root, name) == KeyOwner::User);
        Ok(Destroyed {
            name: name.clone(),
            folder,
            removed_key,
            kept_user_key,
        })
    }

    /// Every sandbox under the data root, by name, with the outcome of its
    /// last `up` (no process is checked).
    pub fn list(&self) -> Result<Vec<SandboxSummary>, Error> {
        let dir = self.data_root.join("sandboxes");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot read", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| SandboxName::parse(n).ok())
            else {
                continue;
            };
            let folder = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let status = read_up_record(&folder).map_or(Outcome::Error, |r| r.outcome);
            out.push(SandboxSummary {
                cloned: folder.join("repo/.git").exists(),
                name,
                folder,
                status,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    // -----------------------------------------------------------------
    // Steps

    /// Creates `<data_root>/sandboxes/NAME` (0700) with its `.gitignore`.
    fn make_folder(&self, name: &SandboxName) -> Result<PathBuf, Error> {
        let folder = self.folder(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&folder)
            .map_err(|e| Error::io("cannot create", &folder, e))?;
        check_folder(&folder)?;
        let ignore = folder.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(&ignore, ".env\nknown_hosts\nup.json\nsandbox.lock\n")
                .map_err(|e| Error::io("cannot write", &ignore, e))?;
        }
        Ok(folder)
    }

    /// The sandbox's lock, waited for at most the manager's lock timeout.
    fn lock(&self, folder: &Path) -> Result<manager::StateLock, Error> {
        Ok(manager::lock_state_file(
            &folder.join(LOCK),
            self.config.manager.lock_timeout,
        )?)
    }

    fn existing_folder(&self, name: &SandboxName) -> Result<PathBuf, Error> {
        let folder = self.folder(name);
        if std::fs::symlink_metadata(&folder).is_err() {
            return Err(Error::NotFound {
                name: name.to_string(),
                folder,
            });
        }
        check_folder(&folder)?;
        Ok(folder)
    }

    /// `.env` as it is (never generated).
    fn read_env(&self, name: &SandboxName) -> Result<SandboxEnv, Error> {
        let path = self.folder(name).join(".env");
        let default_key = keys::generated_key_path(&self.data_root, name);
        Ok(env::load(&path, EnvMode::Production, Given::default(), &default_key)?.0)
    }

    /// The key `.env` names, generated when it is ours and missing.
    fn key(&self, name: &SandboxName, env: &SandboxEnv) -> Result<Option<DeployKey>, Error> {
        let Some(path) = &env.ssh_key_path else {
            return Ok(None);
        };
        let limits = self.limits();
        Ok(Some(match keys::owner_of(path, &self.data_root, name) {
            KeyOwner::Ocm => keys::ensure_generated(&self.data_root, name, &limits)?,
            KeyOwner::User => keys::user_key(path, &limits)?,
        }))
    }

    /// The key `.env` names, as it is (never generated).
    fn existing_key(&self, name: &SandboxName, path: &Path) -> Result<DeployKey, Error> {
        let mut key = keys::user_key(path, &self.limits())?;
        key.owner = keys::owner_of(path, &self.data_root, name);
        Ok(key)
    }

    /// The sandbox's manager: the base configuration with `.env`'s
    /// password, port and binary.
    fn manager(&self, env: &SandboxEnv) -> Result<Manager, Error> {
        let manager = Manager::new(self.manager_config_of(env))?;
        Ok(match &self.config.interrupts {
            Some(signals) => manager.with_interrupts(std::sync::Arc::clone(signals)),
            None => manager,
        })
    }

    /// The bounds of a git or ssh-keygen run.
    fn limits(&self) -> keys::Limits {
        keys::Limits {
            timeout: self.config.git_timeout,
            interrupts: self.config.interrupts.clone(),
        }
    }

    /// The manager configuration `up`, `status`, `restart`... use for
    /// sandbox `name`: the base configuration with the password, port and
    /// binary of its `.env` (read, never generated). For other callers
    /// that work on the sandbox's server (`repo/`), e.g. to send it
    /// prompts. The password is in it ([`PasswordPolicy::Fixed`], redacted
    /// by its `Debug`): keep it out of output.
    pub fn manager_config(&self, name: &SandboxName) -> Result<manager::Config, Error> {
        self.existing_folder(name)?;
        Ok(self.manager_config_of(&self.read_env(name)?))
    }

    fn manager_config_of(&self, env: &SandboxEnv) -> manager::Config {
        let mut config = self.config.manager.clone();
        config.password = PasswordPolicy::Fixed(env.server_password.expose().to_string());
        config.port_policy = match env.opencode_port {
            Some(port) => PortPolicy::Fixed(port),
            None => PortPolicy::Range(SERVER_PORTS),
        };
        if let Some(bin) = &env.opencode_bin {
            config.opencode_bin = Some(bin.clone());
        }
        config
    }

    /// The companion: `COMPANION_COMMAND`, else `ocm mcp --http ...`; the
    /// secrets in its environment only, on top of the base configuration's
    /// `env_set` (the environment the servers get).
    fn companion_spec(
        &self,
        env: &SandboxEnv,
        manager: &Manager,
        repo: &Path,
        server_url: &str,
    ) -> CompanionSpec {
        let command = env.companion_command.clone().unwrap_or_else(|| {
            vec![
                self.config.ocm_bin.to_string_lossy().into_owned(),
                "mcp".into(),
                "--http".into(),
                "127.0.0.1:{port}".into(),
                "--token-env".into(),
                env::BEARER_TOKEN.into(),
                "--allow".into(),
                repo.to_string_lossy().into_owned(),
            ]
        });
        // The servers' environment (HOME, XDG folders... of the base
        // configuration) first, then the companion's own variables.
        let own = [
            env::BEARER_TOKEN,
            "OPENCODE_SERVER",
            env::SERVER_PASSWORD,
            manager::STATE_ROOT_VAR,
            env::MCP_TOOL_PORT,
        ];
        let mut vars: Vec<(String, String)> = self
            .config
            .manager
            .env_set
            .iter()
            .filter(|(k, _)| !own.contains(&k.as_str()))
            .cloned()
            .collect();
        vars.extend([
            (
                env::BEARER_TOKEN.to_string(),
                env.bearer_token.expose().to_string(),
            ),
            ("OPENCODE_SERVER".to_string(), server_url.to_string()),
            (
                env::SERVER_PASSWORD.to_string(),
                env.server_password.expose().to_string(),
            ),
            (
                manager::STATE_ROOT_VAR.to_string(),
                manager.state_root().to_string_lossy().into_owned(),
            ),
        ]);
        if let Some(port) = env.mcp_tool_port {
            vars.push((env::MCP_TOOL_PORT.to_string(), port.to_string()));
        }
        CompanionSpec {
            command,
            env: vars,
            port: match env.mcp_tool_port {
                Some(port) => PortPolicy::Fixed(port),
                None => PortPolicy::Range(COMPANION_PORTS),
            },
            start_timeout: self.config.manager.start_timeout,
        }
    }

    fn blank_status(&self, name: &SandboxName, folder: &Path) -> SandboxStatus {
        SandboxStatus {
            name: name.clone(),
            status: Outcome::Error,
            folder: folder.to_path_buf(),
            repo: self.repo(name),
            git_url: None,
            key_path: None,
            key_owner: None,
            public_key: None,
            server: None,
            companion: None,
            last_health_check: None,
            warnings: Vec::new(),
            error: None,
        }
    }

    /// The status from what is on disk and what runs.
    fn status_with(
        &self,
        name: &SandboxName,
        env: Option<&SandboxEnv>,
        key: Option<&DeployKey>,
        manager: &Manager,
    ) -> Result<SandboxStatus, Error> {
        let folder = self.folder(name);
        let repo = self.repo(name);
        let mut status = self.blank_status(name, &folder);
        status.git_url = env.map(|e| e.git_url.to_string());
        status.key_path = key.map(|k| k.path.clone());
        status.key_owner = key.map(|k| k.owner);
        let record = read_up_record(&folder);
        if !repo.join(".git").exists() {
            match record {
                Some(r) if r.outcome == Outcome::WaitingForKey => {
                    status.status = Outcome::WaitingForKey;
                    status.public_key = key.map(|k| k.public_key.clone());
                }
                Some(r) => {
                    status.error = Some(
                        r.error
                            .unwrap_or_else(|| "not cloned yet: run up".to_string()),
                    );
                }
                None => status.error = Some("not cloned yet: run up".to_string()),
            }
            return Ok(status);
        }
        let server = manager.status(&repo)?;
        let companion = manager.companion_status(&repo)?;
        status.last_health_check = Some(
            companion
                .as_ref()
                .map_or_else(manager::rfc3339_now, |c| c.checked_at.clone()),
        );
        status.server = Some(ServerView {
            url: server.url.clone(),
            port: server.port,
            pid: server.pid,
            healthy: server.healthy,
            state: server.status.to_string(),
        });
        status.companion = companion.as_ref().map(|c| CompanionView {
            url: c.info.url.clone(),
            port: c.info.port,
            pid: c.info.pid,
            alive: c.alive,
            answered: c.answered_ms.is_some(),
            answered_ms: c.answered_ms,
            log: c.info.log.clone(),
        });
        let problem = if !server.healthy {
            Some(format!("the OpenCode server is {}: run up", server.status))
        } else {
            match &companion {
                None => Some("the companion is not running: run up".to_string()),
                Some(c) if !c.alive => Some("the companion is not running: run up".to_string()),
                Some(c) if c.answered_ms.is_none() => Some(format!(
                    "the companion (pid {}) did not answer on port {} within 2 s; see {}",
                    c.info.pid,
                    c.info.port,
                    c.info.log.display()
                )),
                Some(_) => None,
            }
        };
        match problem {
            None => status.status = Outcome::Success,
            Some(p) => status.error = Some(p),
        }
        Ok(status)
    }
}

/// A sandbox folder must be a real folder (not a symlink).
fn check_folder(folder: &Path) -> Result<(), Error> {
    let meta =
        std::fs::symlink_metadata(folder).map_err(|e| Error::io("cannot read", folder, e))?;
    if !meta.is_dir() {
        return Err(Error::BadFolder {
            path: folder.to_path_buf(),
            problem: "is not a folder (a symlink or a file); move it away".into(),
        });
    }
    Ok(())
}

fn default_data_root() -> Result<PathBuf, Error> {
    let var = |name| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(xdg) = var("XDG_DATA_HOME") {
        return Ok(xdg.join("ocm"));
    }
    var("HOME")
        .map(|home| home.join(".local/share/ocm"))
        .ok_or(Error::NoDataRoot)
}

fn read_up_record(folder: &Path) -> Option<UpRecord> {
    let text = std::fs::read_to_string(folder.join(UP_RECORD)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_up_record(folder: &Path, outcome: Outcome, error: Option<String>) -> Result<(), Error> {
    let record = UpRecord {
        outcome,
        error,
        at: manager::rfc3339_now(),
    };
    let text = serde_json::to_string_pretty(&record).unwrap_or_default();
    let tmp = folder.join(format!(".{UP_RECORD}.tmp"));
    let path = folder.join(UP_RECORD);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io("cannot write", &path, e))
}

#[cfg(test)]
mod tests;
