//! Stopping everything a project's servers started: every process that
//! carries the project's markers, by process group, whether or not it is
//! still in the server's group (opencode runs the agent's shell commands in
//! sessions of their own, so signalling the server's group misses them).

use std::path::Path;
use std::time::{Duration, Instant};

use procutil::Pidfd;

use crate::{Manager, scan};

/// At most this many looks: a process may start another while it is being
/// stopped.
const SWEEPS: usize = 3;

impl Manager {
    /// Terminates every process carrying the markers of project `hash`
    /// (restricted to one start's processes when `nonce` is given): SIGTERM
    /// to each marked group leader's group and to each marked process whose
    /// group is not marked, SIGKILL to what is left after the grace period.
    /// Never this process or its ancestors, and never the project's
    /// companion or what it started (see [`Manager::sweep_companions`]):
    /// repairing or restarting the server leaves the companion running.
    /// Returns the pids it signalled, but those of event relays (which end
    /// with their server by themselves: they are no leftovers).
    pub(crate) fn sweep_project(&self, hash: &str, nonce: Option<&str>) -> Vec<u32> {
        self.sweep(hash, |m| {
            m.companion.is_none() && (nonce.is_none() || m.nonce.as_deref() == nonce)
        })
    }

    /// [`Manager::sweep_project`] for a project with no state folder,
    /// without its lock: never a server (the caller stops those under the
    /// lock), and nothing from the round the folder is back (a start then
    /// holds the project, and what it starts is its own).
    pub(crate) fn sweep_folderless(&self, hash: &str, dir: &Path) -> Vec<u32> {
        self.sweep(hash, |m| {
            m.companion.is_none() && !m.is_server() && !dir.exists()
        })
    }

    /// Terminates the project's companion processes (those carrying
    /// `OCM_COMPANION`), all of them, or only those of the starts `keep`
    /// does not accept, the same way as [`Manager::sweep_project`].
    pub(crate) fn sweep_companions(&self, hash: &str, keep: impl Fn(&str) -> bool) -> Vec<u32> {
        self.sweep(hash, |m| m.companion.as_deref().is_some_and(|c| !keep(c)))
    }

    fn sweep(&self, hash: &str, wanted: impl Fn(&scan::Marked) -> bool) -> Vec<u32> {
        let mut signalled = Vec::new();
        for _ in 0..SWEEPS {
            let targets: Vec<scan::Marked> = scan::marked(self.state_root())
                .into_iter()
                .filter(|m| m.hash == hash)
                .filter(&wanted)
                // A member of a marked leader's group goes with its group.
                .filter(|m| m.leads_group || !m.group_leader_marked)
                .collect();
            if targets.is_empty() {
                break;
            }
            for target in targets.iter().filter(|t| !t.relay) {
                if !signalled.contains(&target.pid()) {
                    signalled.push(target.pid());
                }
            }
            let grace = self.config.stop_grace;
            // A group's leader is terminated with its whole group, the
            // members it leaves behind included (one without markers that
            // survives SIGTERM gets SIGKILL too), each group on a thread
            // of its own so the graces run together; any other process on
            // its own.
            std::thread::scope(|scope| {
                for target in targets.iter().filter(|t| t.leads_group) {
                    scope.spawn(move || {
                        let _ = procutil::terminate(&target.identity, grace);
                    });
                }
                let alone: Vec<&scan::Marked> = targets.iter().filter(|t| !t.leads_group).collect();
                for target in &alone {
                    send(target, libc::SIGTERM);
                }
                let deadline = Instant::now() + grace;
                for target in &alone {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let gone = procutil::wait_gone(&target.identity, left).unwrap_or(true);
                    if !gone {
                        send(target, libc::SIGKILL);
                        let _ = procutil::wait_gone(&target.identity, Duration::from_secs(2));
                    }
                }
            });
        }
        signalled
    }
}

/// Signals a marked process that leads no group (a group's leader goes
/// with its group through `procutil::terminate`), through a pidfd opened
/// for its recorded identity (never a pid that was reused).
fn send(target: &scan::Marked, signal: i32) {
    if let Ok(Some(pidfd)) = Pidfd::open_verified(&target.identity) {
        let _ = pidfd.send_signal(signal);
    }
}
