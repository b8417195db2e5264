//! Sessions, exactly-once prompts and turns over OpenCode servers.
//!
//! The layer between the manager and the CLI (it depends on `manager` and
//! `opencode-api` only):
//!
//! - [`Sessions`] and [`Registry`]: sessions by title or team key
//!   (`teams::{team}::agent::{agent}::role::{role}`), found again, resumed
//!   after a crash when the server still has them, recorded with their
//!   usage in `sessions.json` in the project's state folder.
//! - [`Engine::prompt`]: a prompt is delivered exactly once: a client-made
//!   message ID, sent as a blocking `POST .../message` on a thread of its
//!   own (its answer ends the turn as soon as the server has it), verified,
//!   and after a failure looked up before anything is sent again (see
//!   [`RetryPolicy`]).
//! - [`Turn`]: the typed events of one turn ([`TurnEvent`]): text and
//!   reasoning deltas (never twice, never out of place: a part the stream
//!   told from its middle comes whole), tool calls, permissions, per-step
//!   usage, then `Done` or `Failed`. One `/global/event` connection per
//!   server feeds every turn; a watchdog, reconciling after reconnects, an
//!   abort guard and one turn per session keep turns from hanging or
//!   crossing.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use manager::{Config, Manager};
//! use opencode_api::PromptRequest;
//! use turns::{Engine, Registry, SessionKey, Sessions, TurnEvent, TurnOptions};
//!
//! let manager = Arc::new(Manager::new(Config::from_env())?);
//! let project = std::path::Path::new(".");
//! let engine = Engine::managed(Arc::clone(&manager), project, TurnOptions::default())?;
//! let sessions = Sessions::new(engine.clone(), Registry::open(&manager, project)?);
//! let key = SessionKey::team("red", "a1", "reviewer")?;
//! let session = sessions.ensure(&key, None)?;
//! let mut turn = engine.prompt(&session.session_id, PromptRequest::text("say hi"))?;
//! let deadline = Instant::now() + Duration::from_secs(300);
//! while let Some(event) = turn.next(deadline)? {
//!     match event {
//!         TurnEvent::Text { delta, .. } => print!("{delta}"),
//!         TurnEvent::Done(done) => println!("\n{} tokens out", done.usage.output),
//!         TurnEvent::Failed { message_id, reason } => eprintln!("{message_id}: {reason}"),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), turns::Error>(())
//! ```
//!
//! Keys and usage need no server:
//!
//! ```
//! let key = turns::SessionKey::team("red", "a1", "lead")?;
//! assert_eq!(key.title(), "teams::red::agent::a1::role::lead");
//! let mut total = turns::Usage::default();
//! total.add(&turns::Usage { input: 3, ..Default::default() });
//! assert_eq!(total.input, 3);
//! # Ok::<(), turns::Error>(())
//! ```

#![forbid(unsafe_code)]

mod deliver;
mod demux;
mod engine;
mod error;
mod registry;
mod relay;
mod sessions;
mod tracker;
mod usage;
mod waiter;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod fake_server;

pub use deliver::RetryPolicy;
pub use engine::{Engine, Turn, TurnOptions};
pub use error::{Error, FailReason};
pub use registry::{REGISTRY_SCHEMA, Registry, SessionEntry, SessionKey, SessionState, TurnLock};
pub use sessions::{SessionView, Sessions};
pub use tracker::{ToolActivity, TurnDone, TurnEvent};
pub use usage::Usage;
