//! Choosing a new server's port per the policy, and checking a fixed one.

use std::path::Path;

use portmap::{BindHost, PortProblem};
use statefile::ProjectPaths;

use crate::error::PortHolder;
use crate::progress::Progress;
use crate::record::{RecordStatus, read_record};
use crate::{Error, Manager, PortPolicy};

impl Manager {
    /// Picks the port for a new server per the policy (`None`: opencode
    /// picks). The host is resolved once; a port that is taken sends the
    /// project policy to the next candidate, but any other problem (the
    /// address is not this machine's, the port needs privileges, the name
    /// does not resolve) is [`Error::CannotBind`] at once: no other port
    /// would do better.
    ///
    /// Blocks while the host name resolves, at most
    /// [`portmap::DEFAULT_RESOLVE_TIMEOUT`].
    pub(crate) fn choose_port(&self, project: &Path) -> Result<Option<u16>, Error> {
        let host = self.bind_host()?;
        let cannot_bind = |port, problem| self.cannot_bind(Some(port), problem);
        match &self.config.port_policy {
            PortPolicy::Auto => {
                // opencode picks the port; the address alone is checked.
                host.probe(0)
                    .map_err(|problem| self.cannot_bind(None, problem))?;
                Ok(None)
            }
            PortPolicy::Fixed(port) => self.fixed_port_free(&host, *port).map(Some),
            PortPolicy::Range(range) => {
                for port in range.clone() {
                    match host.probe(port) {
                        Ok(()) => return Ok(Some(port)),
                        Err(PortProblem::InUse) => {}
                        Err(problem) => return Err(cannot_bind(port, problem)),
                    }
                }
                Err(Error::NoFreePort {
                    hostname: self.config.hostname.clone(),
                    first: *range.start(),
                    last: *range.end(),
                })
            }
            PortPolicy::Project => {
                let first = portmap::port_for_project(project)?;
                for port in portmap::port_candidates(project)? {
                    match host.probe(port) {
                        Ok(()) => return Ok(Some(port)),
                        Err(PortProblem::InUse) => self.report(Progress::PortTaken {
                            port,
                            holder: PortHolder::of_port(port),
                        }),
                        Err(problem) => return Err(cannot_bind(port, problem)),
                    }
                }
                Err(Error::NoFreePort {
                    hostname: self.config.hostname.clone(),
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
    /// frees it). A port that cannot be bound for another reason fails too.
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
        self.fixed_port_free(&self.bind_host()?, port).map(|_| ())
    }

    /// The configured host, resolved (once per start).
    fn bind_host(&self) -> Result<BindHost, Error> {
        BindHost::resolve(&self.config.hostname, portmap::DEFAULT_RESOLVE_TIMEOUT)
            .map_err(|problem| self.cannot_bind(None, problem))
    }

    fn cannot_bind(&self, port: Option<u16>, problem: PortProblem) -> Error {
        Error::CannotBind {
            hostname: self.config.hostname.clone(),
            port,
            problem,
        }
    }

    /// `port` when it is free, else [`Error::PortInUse`] naming its holder,
    /// or [`Error::CannotBind`] saying why it cannot be bound.
    fn fixed_port_free(&self, host: &BindHost, port: u16) -> Result<u16, Error> {
        match host.probe(port) {
            Ok(()) => Ok(port),
            Err(PortProblem::InUse) => Err(Error::PortInUse {
                hostname: self.config.hostname.clone(),
                port,
                holder: PortHolder::of_port(port),
            }),
            Err(problem) => Err(self.cannot_bind(Some(port), problem)),
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

    fn manager_for(root: &Path, hostname: &str, port_policy: PortPolicy) -> Manager {
        Manager::new(Config {
            state_root: Some(root.to_path_buf()),
            opencode_bin: Some(PathBuf::from("/bin/sh")),
            hostname: hostname.into(),
            port_policy,
            password: crate::PasswordPolicy::Generate,
            ..Config::default()
        })
        .unwrap()
    }

    /// True when the kernel lets any address bind (then 192.0.2.1 binds).
    fn foreign_binds_allowed() -> bool {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind")
            .is_ok_and(|v| v.trim() == "1")
    }

    #[test]
    fn an_address_of_another_machine_is_one_error_for_every_policy() {
        if foreign_binds_allowed() {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: net.ipv4.ip_nonlocal_bind=1; not-available bind not tested"
            );
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let project = root.path();
        let first = portmap::port_for_project(project).unwrap();
        for (policy, port) in [
            (PortPolicy::Project, Some(first)),
            (PortPolicy::Range(28000..=28999), Some(28000)),
            (PortPolicy::Fixed(28000), Some(28000)),
            (PortPolicy::Auto, None),
        ] {
            let progress = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let seen = std::sync::Arc::clone(&progress);
            let manager = manager_for(root.path(), "192.0.2.1", policy.clone())
                .with_progress(move |p: &Progress| seen.lock().unwrap().push(p.clone()));
            match manager.choose_port(project) {
                Err(Error::CannotBind {
                    hostname,
                    port: p,
                    problem: PortProblem::AddressNotAvailable,
                }) => {
                    assert_eq!(hostname, "192.0.2.1");
                    assert_eq!(p, port, "{policy:?}");
                }
                other => panic!("{policy:?}: expected CannotBind, got {other:?}"),
            }
            assert!(
                progress.lock().unwrap().is_empty(),
                "{policy:?}: no port is reported taken"
            );
        }
        let manager = manager_for(root.path(), "192.0.2.1", PortPolicy::Fixed(28000));
        let paths = manager.paths(project).unwrap();
        assert!(matches!(
            manager.check_fixed_port_for_restart(&paths),
            Err(Error::CannotBind { .. })
        ));
    }

    #[test]
    fn a_name_that_does_not_resolve_is_one_error() {
        let root = tempfile::tempdir().unwrap();
        let manager = manager_for(root.path(), "no-such-host.invalid", PortPolicy::Project);
        match manager.choose_port(root.path()) {
            Err(Error::CannotBind {
                port: None,
                problem: PortProblem::Unresolvable | PortProblem::ResolveTimedOut,
                ..
            }) => {}
            other => panic!("expected CannotBind, got {other:?}"),
        }
    }
}
