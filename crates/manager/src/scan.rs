//! What /proc tells about processes ocm did not record: everything carrying
//! a project's markers (its servers and whatever they started), and the
//! holder of a listening port.
//!
//! Only inheritance can put the markers in a process's environment: ocm
//! sets them on the servers it spawns, and everything a server starts
//! (the agent's shell commands, which opencode runs in sessions of their
//! own) inherits them. So the markers find a project's processes even when
//! they left its process group.

use std::collections::HashMap;
use std::path::Path;

use procutil::ProcessIdentity;

/// The variable every server ocm starts carries: the project's hash.
pub const PROJECT_HASH_VAR: &str = "OCM_PROJECT_HASH";
/// The variable every server ocm starts carries: the state root it was
/// recorded under, so two state roots never claim each other's servers.
pub const STATE_ROOT_VAR: &str = "OCM_STATE_DIR";
/// The variable every server ocm starts carries: a random value made for
/// that start and recorded before the spawn, so a server whose starter died
/// before recording its pid is still known as that start's server.
pub const SERVER_NONCE_VAR: &str = "OCM_SERVER_NONCE";
/// The variable a project's companion (see `companion.rs`) carries besides
/// the project's markers, and everything it starts inherits: a random value
/// made for that start and recorded in `companion.json`. It tells a
/// companion from a server, and the recorded companion from an orphan.
pub const COMPANION_VAR: &str = "OCM_COMPANION";

/// A live process carrying the markers of a project under this state root.
#[derive(Debug, Clone)]
pub(crate) struct Marked {
    pub identity: ProcessIdentity,
    pub hash: String,
    /// The start it descends from (absent for servers of older ocm).
    pub nonce: Option<String>,
    /// A session leader running `serve --hostname H --port P`.
    pub server_shaped: bool,
    /// Its parent carries the same project's markers: something a server
    /// (or its tools) started, even when it looks like a server.
    pub parent_marked: bool,
    /// It leads its process group.
    pub leads_group: bool,
    /// The companion start it descends from ([`COMPANION_VAR`]): a
    /// companion or something it started, never a server or its tools.
    pub companion: Option<String>,
    /// Its process group's leader is itself a marked process.
    pub group_leader_marked: bool,
    /// An event relay (`crate::RELAY_VAR`): it follows a server and ends
    /// with it, so it is never reported as a leftover.
    pub relay: bool,
}

impl Marked {
    pub fn pid(&self) -> u32 {
        self.identity.pid
    }

    /// A server ocm started (not something a server started, not a
    /// companion).
    pub fn is_server(&self) -> bool {
        self.server_shaped && !self.parent_marked && self.companion.is_none()
    }
}

/// True when `pid` is a server ocm started for `project_hash` under
/// `state_root`: a session leader (ocm starts servers with setsid) running
/// `... serve --hostname H --port P` (as ocm starts it), whose environment
/// carries both markers and not [`COMPANION_VAR`]. Processes the server's tools start inherit the
/// markers but are not session leaders running `serve`; a tool that calls
/// setsid itself still is not an opencode server.
pub fn is_our_server(pid: u32, project_hash: &str, state_root: &Path) -> bool {
    procutil::is_session_leader(pid)
        && runs_serve(pid)
        && procutil::environ(pid).is_ok_and(|env| {
            env.get(PROJECT_HASH_VAR).is_some_and(|h| h == project_hash)
                && env
                    .get(STATE_ROOT_VAR)
                    .is_some_and(|r| Path::new(&r) == state_root)
                && env.get(COMPANION_VAR).is_none()
        })
}

/// Every live process carrying the markers of a project under
/// `state_root`, but this process and its ancestors (an `ocm down` run by
/// the agent itself inherits the markers of the project it stops).
pub(crate) fn marked(state_root: &Path) -> Vec<Marked> {
    let Ok(pids) = procutil::all_pids() else {
        return Vec::new();
    };
    let spared = self_and_ancestors();
    let mut found: HashMap<u32, Found> = HashMap::new();
    for pid in pids {
        if spared.contains(&pid) {
            continue;
        }
        // Pinned first: what is read next is of this process only if it
        // is still alive after the reads (the pid may be reused between).
        let Ok(identity) = ProcessIdentity::of(pid) else {
            continue;
        };
        // One read, whole even while the process execs (a server a
        // wrapper just started may be between two programs).
        let Ok(env) = procutil::environ(pid) else {
            continue;
        };
        let Some(hash) = env.get(PROJECT_HASH_VAR) else {
            continue;
        };
        if env.get(STATE_ROOT_VAR).as_deref().map(Path::new) != Some(state_root) {
            continue;
        }
        let nonce = env.get(SERVER_NONCE_VAR);
        let companion = env.get(COMPANION_VAR);
        let relay = env.get(crate::RELAY_VAR).is_some();
        if !identity.is_alive() {
            continue;
        }
        found.insert(
            pid,
            Found {
                identity,
                hash,
                nonce,
                companion,
                relay,
            },
        );
    }
    // Marked the same way: the same project, and both of a companion or
    // both not (a server a companion started is not the companion's tool).
    let kin = |pid: u32, of: &Found| {
        found
            .get(&pid)
            .is_some_and(|f| f.hash == of.hash && f.companion.is_some() == of.companion.is_some())
    };
    let mut all: Vec<Marked> = found
        .iter()
        .map(|(&pid, f)| {
            let parent = procutil::parent_pid(pid).unwrap_or(0);
            let group = procutil::process_group_id(pid).unwrap_or(0);
            Marked {
                identity: f.identity.clone(),
                hash: f.hash.clone(),
                nonce: f.nonce.clone(),
                server_shaped: procutil::is_session_leader(pid) && runs_serve(pid),
                parent_marked: kin(parent, f),
                leads_group: group == pid,
                group_leader_marked: group != pid && kin(group, f),
                companion: f.companion.clone(),
                relay: f.relay,
            }
        })
        // Read of the process pinned, not of one that took its pid since.
        .filter(|m| m.identity.is_alive())
        .collect();
    all.sort_by_key(Marked::pid);
    all
}

/// What [`marked`] read of one process.
struct Found {
    identity: ProcessIdentity,
    hash: String,
    nonce: Option<String>,
    companion: Option<String>,
    relay: bool,
}

/// Every live server ocm started under `state_root`, with its project hash
/// and start nonce.
pub(crate) fn our_servers(state_root: &Path) -> Vec<Marked> {
    marked(state_root)
        .into_iter()
        .filter(Marked::is_server)
        .collect()
}

/// This process and every ancestor up to init.
fn self_and_ancestors() -> Vec<u32> {
    let mut chain = vec![std::process::id()];
    while let Some(&last) = chain.last() {
        match procutil::parent_pid(last) {
            Ok(parent) if parent > 1 && !chain.contains(&parent) => chain.push(parent),
            _ => break,
        }
    }
    chain
}

/// True when the process's arguments end in `serve --hostname H --port P`,
/// as ocm starts the server (possibly through a wrapper script, whose
/// interpreter then leads the group: `bash /path/opencode serve ...`).
fn runs_serve(pid: u32) -> bool {
    procutil::cmdline(pid).is_ok_and(|args| {
        args.len() >= 6
            && matches!(
                &args[args.len() - 5..],
                [serve, hostname, _, port, _]
                    if serve == "serve" && hostname == "--hostname" && port == "--port"
            )
    })
}

/// The pid of the process listening on `port` (TCP, IPv4 or IPv6), when
/// /proc tells (it does not for other users' processes without privileges).
pub fn port_holder(port: u16) -> Option<u32> {
    procutil::listening_socket_holder(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_holder_of_a_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(port_holder(port), Some(std::process::id()));
        drop(listener);
        assert_eq!(port_holder(port), None);
    }

    #[test]
    fn the_test_process_is_not_a_server() {
        assert!(!is_our_server(
            std::process::id(),
            "0123",
            Path::new("/nonexistent")
        ));
    }

    #[test]
    fn this_process_and_its_ancestors_are_spared() {
        let chain = self_and_ancestors();
        assert_eq!(chain[0], std::process::id());
        assert!(chain.contains(&procutil::parent_pid(std::process::id()).unwrap()));
    }
}
