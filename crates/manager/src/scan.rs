//! What /proc tells about processes ocm did not record: its own servers
//! found by their environment marker, and the holder of a listening port.

use std::path::Path;

/// The variable every server ocm starts carries: the project's hash.
pub const PROJECT_HASH_VAR: &str = "OCM_PROJECT_HASH";
/// The variable every server ocm starts carries: the state root it was
/// recorded under, so two state roots never claim each other's servers.
pub const STATE_ROOT_VAR: &str = "OCM_STATE_DIR";

/// True when `pid` is a server ocm started for `project_hash` under
/// `state_root`: a session leader (ocm starts servers with setsid) running
/// `... serve --hostname H --port P` (as ocm starts it), whose environment
/// carries both markers. Processes the server's tools start inherit the
/// markers but are not session leaders running `serve`; a tool that calls
/// setsid itself still is not an opencode server.
pub fn is_our_server(pid: u32, project_hash: &str, state_root: &Path) -> bool {
    procutil::is_session_leader(pid)
        && runs_serve(pid)
        && procutil::environ_var(pid, PROJECT_HASH_VAR)
            .ok()
            .flatten()
            .is_some_and(|h| h == project_hash)
        && procutil::environ_var(pid, STATE_ROOT_VAR)
            .ok()
            .flatten()
            .is_some_and(|r| Path::new(&r) == state_root)
}

/// Every live server ocm started under `state_root`, with its project hash.
pub fn our_servers(state_root: &Path) -> Vec<(u32, String)> {
    let Ok(pids) = procutil::all_pids() else {
        return Vec::new();
    };
    pids.into_iter()
        .filter_map(|pid| {
            let hash = procutil::environ_var(pid, PROJECT_HASH_VAR).ok()??;
            is_our_server(pid, &hash, state_root).then_some((pid, hash))
        })
        .filter(|(pid, _)| procutil::ProcessIdentity::of(*pid).is_ok())
        .collect()
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
}
