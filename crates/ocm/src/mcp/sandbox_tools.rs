//! The sandbox side of the MCP tools: `project_name` (a sandbox of the
//! `sandbox` crate: a name, a git URL, its `.env`, clone, server and
//! companion) in place of `project` (a folder). `opencode_start` brings
//! the sandbox up, `opencode_status` / `opencode_stop` /
//! `opencode_restart` / `opencode_destroy` act on its server and companion
//! together, and the prompt tools work on its clone (`repo/`) with the
//! password of its `.env`. No result or error holds a secret: the
//! sandbox's types have none, and its errors name `.env` by path.

use std::path::{Path, PathBuf};

use sandbox::{SandboxConfig, SandboxName, Sandboxes, Up, UpOptions};
use serde_json::{Map, Value, json};

use super::tools::{Context, Failure, config, project_argument};

/// What a tool acts on: `project` or `project_name`.
#[derive(Debug)]
pub(super) enum Target {
    /// A project folder (absolute, allowed).
    Folder(PathBuf),
    /// A sandbox, by name, and its clone.
    Sandbox {
        /// Its name.
        name: SandboxName,
        /// Its clone, the project its server runs for.
        repo: PathBuf,
    },
}

impl Target {
    /// The project folder the server runs for.
    pub(super) fn dir(&self) -> &Path {
        match self {
            Target::Folder(dir) => dir,
            Target::Sandbox { repo, .. } => repo,
        }
    }
}

fn input(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        details: Vec::new(),
        hint: None,
    }
}

/// Exactly one of `project` and `project_name`, checked against `--allow`
/// (a sandbox is allowed when its `repo/` is inside an allowed folder).
pub(super) fn target(ctx: &Context, arguments: &Map<String, Value>) -> Result<Target, Failure> {
    match (arguments.get("project"), arguments.get("project_name")) {
        (Some(_), Some(_)) => Err(Failure {
            hint: Some(
                "`project` is a folder (its own server); `project_name` is a sandbox made \
                 from a git URL (opencode_start with project_name and git_url)"
                    .into(),
            ),
            ..input("give either `project` (a folder) or `project_name` (a sandbox), not both")
        }),
        (None, None) => Err(input(
            "`project` (the project folder, an absolute path) or `project_name` (a sandbox's \
             name) is required",
        )),
        (Some(_), None) => Ok(Target::Folder(project_argument(ctx, arguments)?)),
        (None, Some(value)) => {
            let text = value
                .as_str()
                .ok_or_else(|| input("`project_name` must be a string (a sandbox's name)"))?;
            let name = SandboxName::parse(text).map_err(Failure::from)?;
            let repo = sandboxes(ctx)?.repo(&name);
            if !ctx.allows(&repo) {
                let list: Vec<String> = ctx.allow.iter().map(|d| d.display().to_string()).collect();
                return Err(Failure {
                    message: format!(
                        "sandbox {name} ({}) is outside the allowed folders",
                        repo.display()
                    ),
                    details: Vec::new(),
                    hint: Some(format!(
                        "this ocm mcp only manages projects inside {} (its --allow folders)",
                        list.join(", ")
                    )),
                });
            }
            Ok(Target::Sandbox { name, repo })
        }
    }
}

/// The sandboxes (under `$XDG_DATA_HOME/ocm`; `OCM_ENV` says whether a
/// missing `.env` is generated), on the tools' manager configuration.
pub(super) fn sandboxes(ctx: &Context) -> Result<Sandboxes, Failure> {
    let ocm_bin = std::env::current_exe().map_err(|e| {
        input(format!(
            "cannot tell where the ocm binary is (for the sandbox's companion): {e}"
        ))
    })?;
    let mut config = SandboxConfig::from_env(ocm_bin).map_err(Failure::from)?;
    config.manager = config_base(ctx);
    Sandboxes::new(config).map_err(Failure::from)
}

/// The tools' manager configuration without a password of this process's
/// environment: a sandbox's comes from its `.env`.
fn config_base(ctx: &Context) -> manager::Config {
    let mut base = config(ctx);
    base.password = manager::Config::default().password;
    base
}

/// The manager configuration for project `dir`: a sandbox's clone gets the
/// sandbox's (the password of its `.env`), any other folder the tools'.
pub(super) fn config_for(ctx: &Context, dir: &Path) -> Result<manager::Config, Failure> {
    let Ok(sandboxes) = sandboxes(ctx) else {
        return Ok(config(ctx));
    };
    match sandboxes.name_of(dir) {
        Some(name) => sandboxes.manager_config(&name).map_err(Failure::from),
        None => Ok(config(ctx)),
    }
}

/// Runs a lifecycle tool on a sandbox.
pub(super) fn run(
    tool: &str,
    ctx: &Context,
    name: &SandboxName,
    arguments: &Map<String, Value>,
) -> Result<Value, Failure> {
    let sandboxes = sandboxes(ctx)?;
    if matches!(
        tool,
        "opencode_stop" | "opencode_restart" | "opencode_destroy"
    ) && is_own_companion(
        std::env::var_os(manager::COMPANION_VAR).is_some(),
        std::env::var(manager::PROJECT_HASH_VAR).ok().as_deref(),
        &sandboxes.repo(name),
    ) {
        return Err(Failure {
            message: format!(
                "this ocm mcp is the companion of sandbox {name}: {tool} would stop this very \
                 process in the middle of the call"
            ),
            details: Vec::new(),
            hint: Some(format!(
                "run `ocm sandbox down|restart|destroy {name}` on the host, or the tool through \
                 another ocm mcp"
            )),
        });
    }
    let value = match tool {
        "opencode_start" => {
            if let Some(key) = arguments.get("user_ssh_key").and_then(Value::as_str)
                && !Path::new(key).is_absolute()
            {
                return Err(input(format!(
                    "`user_ssh_key` must be an absolute path (the private key file), got `{key}`"
                )));
            }
            let options = UpOptions {
                git_url: arguments
                    .get("git_url")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                ssh_key: arguments
                    .get("user_ssh_key")
                    .and_then(Value::as_str)
                    .map(PathBuf::from),
            };
            match sandboxes
                .up(name, &options)
                .map_err(|e| sandbox_failure(e, true))?
            {
                Up::Ready(status) => to_value(&status),
                Up::WaitingForKey(status) => {
                    let git_url = status.git_url.clone().unwrap_or_default();
                    let mut value = to_value(&status);
                    value["nextStep"] = json!(format!(
                        "the git server refused the deploy key: add publicKey as a deploy key \
                         (read access) of {git_url}, then call opencode_start again with \
                         project_name {name}; it continues where it stopped"
                    ));
                    value
                }
            }
        }
        "opencode_status" => to_value(&sandboxes.status(name).map_err(Failure::from)?),
        "opencode_stop" => to_value(&sandboxes.down(name).map_err(Failure::from)?),
        "opencode_restart" => to_value(
            &sandboxes
                .restart(name)
                .map_err(|e| sandbox_failure(e, true))?,
        ),
        "opencode_destroy" => to_value(&sandboxes.destroy(name).map_err(Failure::from)?),
        other => return Err(input(format!("{other} does not take `project_name`"))),
    };
    Ok(value)
}

/// Whether this process is the companion of the sandbox whose clone is
/// `repo`: it carries the companion marker and that project's hash.
fn is_own_companion(companion: bool, project_hash: Option<&str>, repo: &Path) -> bool {
    companion
        && project_hash.is_some_and(|hash| manager::project(repo).is_ok_and(|p| p.hash == hash))
}

fn to_value(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl From<sandbox::Error> for Failure {
    fn from(error: sandbox::Error) -> Failure {
        sandbox_failure(error, false)
    }
}

/// A sandbox error as a tool failure: the manager's errors as the CLI
/// reports them (a failed start with its log lines), the others with a
/// hint in the tools' terms. `starting`: on the way to a running server.
fn sandbox_failure(error: sandbox::Error, starting: bool) -> Failure {
    if let sandbox::Error::Manager(e) = error {
        let error = crate::error::CliError::from(e);
        return Failure::from(if starting { error.starting() } else { error });
    }
    let hint = match &error {
        sandbox::Error::NoGitUrl { .. } => Some(
            "the first opencode_start of a sandbox needs `git_url` (the repository to \
             clone)"
                .to_string(),
        ),
        sandbox::Error::NotFound { .. } => {
            Some("opencode_start with `project_name` and `git_url` creates the sandbox".to_string())
        }
        _ => None,
    };
    Failure {
        message: error.to_string(),
        details: Vec::new(),
        hint,
    }
}

/// The output schema of a sandbox's status (`opencode_start`,
/// `opencode_status`, `opencode_restart` with `project_name`).
pub(super) fn status_schema() -> Value {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "status": {"type": "string", "description": "success, waiting_for_key or error"},
            "folder": {"type": "string"},
            "repo": {"type": "string"},
            "gitUrl": nullable("string"),
            "keyPath": nullable("string"),
            "keyOwner": nullable("string"),
            "publicKey": {"type": ["string", "null"],
                           "description": "the deploy key to add, when waiting_for_key"},
            "server": {"type": ["object", "null"],
                       "description": "the OpenCode server: url, port, pid, healthy, state"},
            "companion": {"type": ["object", "null"],
                          "description": "the companion: url, port, pid, alive, answered, log"},
            "lastHealthCheck": nullable("string"),
            "warnings": {"type": "array", "items": {"type": "string"}},
            "error": nullable("string"),
            "nextStep": {"type": "string"},
        },
        "required": ["name", "status", "folder"],
    })
}

/// The output schema of `opencode_stop` (sandbox down) and
/// `opencode_destroy` with `project_name`.
pub(super) fn other_schema(tool: &str) -> Value {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    match tool {
        "opencode_destroy" => json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "folder": {"type": "string", "description": "the sandbox folder, removed"},
                "removedKey": nullable("string"),
                "keptUserKey": nullable("string"),
            },
            "required": ["name", "folder"],
        }),
        _ => json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "serverPid": nullable("integer"),
                "companionStopped": {"type": "boolean"},
            },
            "required": ["name", "companionStopped"],
        }),
    }
}

/// The arguments a tool takes besides `project` and `project_name`, for a
/// sandbox: name, JSON type, description.
pub(super) fn start_inputs() -> &'static [(&'static str, &'static str, &'static str)] {
    &[
        (
            "git_url",
            "string",
            "With project_name: the repository to clone (ssh, https or file URL); needed the \
             first time, then it must match the sandbox's.",
        ),
        (
            "user_ssh_key",
            "string",
            "With project_name: the path of your own SSH private key for the repository \
             (mode 0600) instead of a generated deploy key.",
        ),
    ]
}

/// The description of `project_name` in the input schemas.
pub(super) const PROJECT_NAME: &str = "Instead of `project`: a sandbox's name (letters, digits, \
     `-`, `_`; at most 64), a project ocm keeps in $XDG_DATA_HOME/ocm/sandboxes/NAME with its \
     secrets in .env, its clone in repo/, an OpenCode server and a companion MCP server.";

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(allow: Vec<PathBuf>) -> Context {
        Context {
            cli: crate::cli::parse(["ls"]).unwrap(),
            allow,
            turns: Default::default(),
            hide_env: Vec::new(),
        }
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn project_and_project_name_exclude_each_other() {
        let c = ctx(Vec::new());
        let e = target(&c, &args(json!({"project": "/x", "project_name": "a"}))).unwrap_err();
        assert!(e.message.contains("not both"), "{e:?}");
        let e = target(&c, &args(json!({}))).unwrap_err();
        assert!(e.message.contains("is required"), "{e:?}");
        let e = target(&c, &args(json!({"project_name": "../x"}))).unwrap_err();
        assert!(e.message.contains("not allowed"), "{e:?}");
        let e = target(&c, &args(json!({"project_name": 3}))).unwrap_err();
        assert!(e.message.contains("must be a string"), "{e:?}");
    }

    #[test]
    fn a_companion_is_told_from_its_sandbox() {
        let repo = Path::new("/data/ocm/sandboxes/app/repo");
        let hash = manager::project(repo).unwrap().hash;
        assert!(is_own_companion(true, Some(&hash), repo));
        assert!(!is_own_companion(false, Some(&hash), repo));
        assert!(!is_own_companion(true, None, repo));
        let other = Path::new("/data/ocm/sandboxes/other/repo");
        assert!(!is_own_companion(true, Some(&hash), other));
    }

    #[test]
    fn a_sandbox_outside_the_allowed_folders_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let allowed = std::fs::canonicalize(root.path()).unwrap();
        let e = target(&ctx(vec![allowed]), &args(json!({"project_name": "app"}))).unwrap_err();
        assert!(e.message.contains("outside the allowed folders"), "{e:?}");
    }
}
