//! The relay as a process of its own, beside a server no supervisor
//! watches: [`Manager::run_relay`] is its body (`ocm relay`), and
//! [`Manager::start_relay`] starts it detached (`ocm prompt` does, after a
//! prompt that found no relay).
//!
//! It lives exactly as long as its server's event stream: it ends when the
//! stream breaks (the server stopped or died, at once; it hung, after 25 s
//! without a frame) or when another relay took its socket (a supervisor's
//! does). It carries the project's markers and the server's start nonce,
//! so stopping the server ([`Manager::stop`], `gc`, a repair) sweeps it
//! with the server's leftovers if it has not ended yet; [`RELAY_VAR`] keeps
//! it out of the leftovers those report.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::{Relay, relay_socket};
use crate::{
    COMPANION_VAR, Error, Manager, PROJECT_HASH_VAR, SERVER_NONCE_VAR, STATE_ROOT_VAR, read_record,
};

/// The variable a relay process carries besides the project's markers.
pub const RELAY_VAR: &str = "OCM_RELAY";
/// How often a relay looks whether its socket is still its own.
const LOOK: Duration = Duration::from_secs(10);

/// How [`Manager::run_relay`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEnd {
    /// No server of the project runs as recorded: nothing to follow.
    NotRunning,
    /// A relay already listens on the project's socket (the supervisor's,
    /// or another `ocm relay`): it was left alone.
    AlreadyServed,
    /// The server's event stream broke: the server stopped, died or hung.
    StreamEnded {
        /// The server it followed.
        url: String,
        /// The clients it took.
        clients: u64,
    },
    /// Another relay replaced this one's socket.
    Replaced {
        /// The server it followed.
        url: String,
        /// The clients it took.
        clients: u64,
    },
}

impl fmt::Display for RelayEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayEnd::NotRunning => f.write_str("no server runs for the project"),
            RelayEnd::AlreadyServed => f.write_str("another relay serves the project already"),
            RelayEnd::StreamEnded { url, clients } => write!(
                f,
                "the event stream of {url} ended (the server stopped, died or hung); \
                 {clients} clients served"
            ),
            RelayEnd::Replaced { url, clients } => write!(
                f,
                "another relay took the socket for {url}; {clients} clients served"
            ),
        }
    }
}

impl Manager {
    /// Where the event relay of `project` listens, when one runs (see
    /// [`crate::RELAY_HELLO`] for what it says).
    pub fn relay_socket(&self, project: &Path) -> Result<std::path::PathBuf, Error> {
        Ok(relay_socket(&self.paths(project)?))
    }

    /// Runs the event relay of `project`'s running server in this process
    /// until the server's stream breaks or another relay takes the socket;
    /// at once when no server runs as recorded, or a relay listens there
    /// already. Blocks for as long as the server runs.
    pub fn run_relay(&self, project: &Path) -> Result<RelayEnd, Error> {
        let paths = self.paths(project)?;
        let Some(server) = self.running_server(project)? else {
            return Ok(RelayEnd::NotRunning);
        };
        let socket = relay_socket(&paths);
        if procutil::connect_unix_now(&socket).is_ok() {
            return Ok(RelayEnd::AlreadyServed);
        }
        let (ended, end) = mpsc::channel();
        let relay = Relay::start(
            &socket,
            &server.url,
            server.password.as_deref(),
            Some(ended),
        )
        .map_err(|source| Error::Io {
            action: "listening on the event relay's socket",
            path: socket.clone(),
            source,
        })?;
        let url = server.url;
        loop {
            match end.recv_timeout(LOOK) {
                Err(mpsc::RecvTimeoutError::Timeout) if relay.still_listens() => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let clients = relay.clients_served();
                    return Ok(RelayEnd::Replaced { url, clients });
                }
                _ => {
                    let clients = relay.clients_served();
                    return Ok(RelayEnd::StreamEnded { url, clients });
                }
            }
        }
    }

    /// Starts `program args` detached as `project`'s event relay (it should
    /// call [`Manager::run_relay`]: `ocm relay DIR` does), with the
    /// project's markers, the server's start nonce and [`RELAY_VAR`], in
    /// `/`, its output appended to `relay.log` in the state folder. Nothing
    /// when no server is recorded running or something listens on the
    /// relay's socket already. Returns the relay's pid when it started one.
    /// Does not wait for the relay to take clients (its stream's first
    /// heartbeat, within 10 s).
    pub fn start_relay(
        &self,
        project: &Path,
        program: &Path,
        args: &[&OsStr],
    ) -> Result<Option<u32>, Error> {
        let (_, hash, paths) = self.project(project)?;
        let Ok(Some(record)) = read_record(&paths.record) else {
            return Ok(None);
        };
        if record.pid == 0 || !record.identity().is_alive() {
            return Ok(None);
        }
        if procutil::connect_unix_now(&relay_socket(&paths)).is_ok() {
            return Ok(None);
        }
        let mut spec = procutil::SpawnSpec::new(program)
            .args(args.iter().copied())
            .cwd("/")
            .output(procutil::Output::AppendTo(paths.dir.join("relay.log")))
            .env_remove(COMPANION_VAR)
            .env(PROJECT_HASH_VAR, &hash)
            .env(STATE_ROOT_VAR, self.state_root().as_os_str())
            .env(RELAY_VAR, "1");
        spec = match &record.nonce {
            Some(nonce) => spec.env(SERVER_NONCE_VAR, nonce),
            None => spec.env_remove(SERVER_NONCE_VAR),
        };
        let child = procutil::spawn_detached(&spec)?;
        let pid = child.pid();
        self.adopt_child(child);
        Ok(Some(pid))
    }
}
