//! One healthy OpenCode server per project, found again from any process.
//!
//! A [`Manager`] starts `opencode serve` for a project folder on a known
//! port, records it under the state root, and finds it again from any
//! process: [`Manager::ensure`] returns the running server when its process
//! is still the one recorded and it answers `GET /global/health`, and
//! otherwise repairs what it finds (a dead, hung or foreign process, a corrupt
//! record, a taken port) and starts a fresh one. Every change to a project's
//! server happens under that project's advisory lock, so any number of
//! processes asking at once get exactly one server.
//!
//! ```no_run
//! use manager::{Config, Manager};
//!
//! let manager = Manager::new(Config::from_env())?;
//! let server = manager.ensure(std::path::Path::new("."))?;
//! println!("{} (pid {})", server.url, server.pid);
//! for (name, value) in server.child_env() {
//!     println!("{name}={value}");
//! }
//! manager.stop(std::path::Path::new("."))?;
//! # Ok::<(), manager::Error>(())
//! ```
//!
//! Servers ocm starts carry `OCM_PROJECT_HASH` and `OCM_STATE_DIR` in their
//! environment and lead their own session, so ocm recognises its own
//! servers (and orphans of them) and never signals a process that is not
//! one of them.
//!
//! Beside the server, a project may have one companion process on its own
//! port ([`Manager::ensure_companion`], [`CompanionSpec`]): started,
//! recorded, health-checked and stopped the same careful way, and left
//! running by the server's stops, restarts and repairs.

#![forbid(unsafe_code)]

mod address;
mod children;
mod cleanup;
mod companion;
mod config;
mod error;
mod health;
mod inspect;
mod interrupt;
mod listen;
mod logs;
mod manager;
mod opencode;
mod password;
mod ports;
mod progress;
mod project;
mod record;
mod relay;
mod report;
mod scan;
mod start;
mod statefiles;
mod stop;
mod supervise;
mod sweep;

pub use address::bind_literal;
pub use companion::{
    COMPANION_ANSWER_TIMEOUT, COMPANION_HOST, CompanionInfo, CompanionSpec, CompanionStatus,
};
pub use config::{Config, PasswordPolicy, PortPolicy, is_loopback};
pub use error::{Error, PortHolder};
pub use interrupt::{INTERRUPTS, catch_interrupts};
pub use logs::{open_log, tail as log_tail};
pub use manager::Manager;
pub use opencode::{OPENCODE_VERSION, find_opencode, opencode_cache_dir, opencode_in_prefix};
pub use password::random_secret;
pub use portmap::PortProblem;
pub use procutil::{
    Error as ProcessError, ExitStatus, Termination, Termination as StopKind, cmdline,
    output_within, output_within_unless, signals, watch,
};
pub use progress::{Progress, Repair, StartFailure};
pub use project::{Project, project};
pub use record::{Desired, RecordStatus, SCHEMA_VERSION, ServerRecord, read_record};
pub use relay::{RELAY_HELLO, RELAY_VAR, RelayEnd, connect_relay};
pub use report::{GcFailure, GcReport, ServerInfo, ServerState, ServerStatus, StopReport};
pub use scan::{COMPANION_VAR, PROJECT_HASH_VAR, SERVER_NONCE_VAR, STATE_ROOT_VAR};
pub use statefile::{ProjectPaths, rfc3339_now};
pub use statefiles::{
    StateLock, append_state_line, lock_state_file, read_last_state_line, read_state_file,
    read_versioned_state_file, remove_state_file, try_lock_state_file, write_state_file,
};
pub use supervise::{
    Notice, ProjectSetup, ProjectSource, Reason, RestartPolicy, SuperviseConfig, Supervisor,
    SupervisorInfo, SupervisorState, Transition, WatchOutcome, supervise_lock_holder,
};

/// The user name opencode expects with a password.
pub const USERNAME: &str = "opencode";
