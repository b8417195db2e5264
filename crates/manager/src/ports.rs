//! Choosing a new server's port per the policy, and checking a fixed one.

use std::path::Path;

use statefile::ProjectPaths;

use crate::error::PortHolder;
use crate::progress::Progress;
use crate::record::{RecordStatus, read_record};
use crate::{Error, Manager, PortPolicy};

impl Manager {
    /// Picks the port for a new server per the policy (`None`: opencode
    /// picks).
    pub(crate) fn choose_port(&self, project: &Path) -> Result<Option<u16>, Error> {
        let host = &self.config.hostname;
        match &self.config.port_policy {
            PortPolicy::Auto => Ok(None),
            PortPolicy::Fixed(port) => self.fixed_port_free(*port).map(Some),
            PortPolicy::Range(range) => portmap::first_free_port(host, range.clone())
                .map(Some)
                .ok_or_else(|| Error::NoFreePort {
                    hostname: host.clone(),
                    first: *range.start(),
                    last: *range.end(),
                }),
            PortPolicy::Project => {
                let first = portmap::port_for_project(project)?;
                for port in portmap::port_candidates(project)? {
                    if portmap::is_port_free(host, port) {
                        return Ok(Some(port));
                    }
                    self.report(Progress::PortTaken {
                        port,
                        holder: PortHolder::of_port(port),
                    });
                }
                Err(Error::NoFreePort {
                    hostname: host.clone(),
                    first,
                    last: if first == portmap::PROJECT_PORT_BASE {
                        portmap::PROJECT_PORT_BASE + portmap::PROJECT_PORT_SPAN - 1
                    } else {
                        first - 1
                    },
                })
            }
        }
    }

    /// With a fixed port that something holds, fails before anything is
    /// stopped, unless the holder is the recorded server itself (whose stop
    /// frees it).
    pub(crate) fn check_fixed_port_for_restart(&self, paths: &ProjectPaths) -> Result<(), Error> {
        let PortPolicy::Fixed(port) = self.config.port_policy else {
            return Ok(());
        };
        let held_by_recorded = read_record(&paths.record).ok().flatten().is_some_and(|r| {
            r.port == port && r.status != RecordStatus::Stopped && r.identity().is_alive()
        });
        if held_by_recorded {
            return Ok(());
        }
        self.fixed_port_free(port).map(|_| ())
    }

    /// `port` when it is free, else [`Error::PortInUse`] naming its holder.
    fn fixed_port_free(&self, port: u16) -> Result<u16, Error> {
        let host = &self.config.hostname;
        if portmap::is_port_free(host, port) {
            Ok(port)
        } else {
            Err(Error::PortInUse {
                hostname: host.clone(),
                port,
                holder: PortHolder::of_port(port),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::Config;

    use super::*;

    #[test]
    fn restart_refuses_a_fixed_port_held_by_another_program() {
        let root = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Any executable will do: the port check comes before a spawn.
        let manager = Manager::new(Config {
            state_root: Some(root.path().to_path_buf()),
            opencode_bin: Some(PathBuf::from("/bin/sh")),
            port_policy: PortPolicy::Fixed(port),
            ..Config::default()
        })
        .unwrap();
        let err = manager.restart(root.path()).unwrap_err();
        match err {
            Error::PortInUse {
                port: p, holder, ..
            } => {
                assert_eq!(p, port);
                assert_eq!(holder.map(|h| h.pid), Some(std::process::id()));
            }
            other => panic!("expected PortInUse, got {other}"),
        }
    }
}
