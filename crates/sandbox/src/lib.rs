//! Sandboxes: a named project made from nothing but a name and a git URL,
//! with its secrets in `.env`, a deploy key, the clone, its OpenCode server
//! and a companion process, managed together.
//!
//! A sandbox lives in `<data_root>/sandboxes/NAME/` (`.env` 0600,
//! `.gitignore`, `known_hosts`, `repo/`), its generated key in
//! `<data_root>/keys/NAME-deploy`; the server and companion are the
//! manager's, for the project `repo/`. Secrets are read from `.env` and go
//! into the server's and the companion's environment only: no value of this
//! crate that can be printed or serialized holds them ([`Secret`]).
//!
//! ```no_run
//! use sandbox::{SandboxConfig, SandboxName, Sandboxes, Up, UpOptions};
//!
//! let sandboxes = Sandboxes::new(SandboxConfig::from_env("/usr/local/bin/ocm")?)?;
//! let name: SandboxName = "my-app".parse()?;
//! let options = UpOptions {
//!     git_url: Some("git@github.com:me/my-app.git".into()),
//!     ssh_key: None,
//! };
//! match sandboxes.up(&name, &options)? {
//!     Up::Ready(status) => println!("{}", serde_json::to_string_pretty(&status).unwrap()),
//!     Up::WaitingForKey(status) => {
//!         let key = status.public_key.unwrap_or_default();
//!         println!("add this deploy key, then run up again:\n{key}")
//!     }
//! }
//! sandboxes.down(&name)?;
//! # Ok::<(), sandbox::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod dotenv;
pub mod env;
mod error;
pub mod git;
pub mod keys;
mod name;
mod report;
mod sandbox;
pub mod url;

pub use env::{EnvMode, Secret, Warning};
pub use error::Error;
pub use keys::{DeployKey, KeyOwner, Limits};
pub use name::{MAX_NAME_LEN, NAME_RULE, SandboxName};
pub use report::{
    CompanionView, Destroyed, Down, Outcome, SandboxStatus, SandboxSummary, ServerView, Up,
};
pub use sandbox::{COMPANION_PORTS, SERVER_PORTS, SandboxConfig, Sandboxes, UpOptions};
pub use url::{GitUrl, Transport};
