//! Is a recorded server alive, ours and answering? Health requests with a
//! deadline, and the live check of a record.

use std::time::{Duration, Instant};

use crate::record::ServerRecord;
use crate::{Manager, USERNAME, scan};

/// One health request while a fresh server settles (FACTS: a request sent
/// in the moment the port is bound can hang; the next one answers at once).
const STARTUP_HEALTH_ATTEMPT: Duration = Duration::from_millis(500);

/// What a live check of a recorded server found.
pub(crate) enum Liveness {
    Healthy { version: String },
    Unauthorized,
    Unhealthy { reason: String },
    Dead,
    NotOurs,
}

pub(crate) enum HealthFailure {
    Unauthorized,
    Other(String),
}

impl Manager {
    /// Whether a recorded server is ours, alive and healthy.
    pub(crate) fn liveness(
        &self,
        record: &ServerRecord,
        hash: &str,
        password: Option<&str>,
    ) -> Liveness {
        if !record.identity().is_alive() {
            return Liveness::Dead;
        }
        if !scan::is_our_server(record.pid, hash, self.state_root()) {
            return Liveness::NotOurs;
        }
        match health(&record.url, password, self.config.health_timeout) {
            Ok(version) => Liveness::Healthy { version },
            Err(HealthFailure::Unauthorized) => Liveness::Unauthorized,
            Err(HealthFailure::Other(reason)) => Liveness::Unhealthy { reason },
        }
    }
}

/// One health request; the server's version when it is healthy.
pub(crate) fn health(
    url: &str,
    password: Option<&str>,
    timeout: Duration,
) -> Result<String, HealthFailure> {
    let mut builder = opencode_api::Client::builder(url)
        .connect_timeout(timeout)
        .health_timeout(timeout);
    if let Some(password) = password {
        builder = builder.basic_auth(USERNAME, password);
    }
    let client = builder
        .build()
        .map_err(|e| HealthFailure::Other(e.to_string()))?;
    match client.health() {
        Ok(h) if h.healthy => Ok(h.version),
        Ok(_) => Err(HealthFailure::Other("it reports healthy: false".into())),
        Err(opencode_api::Error::Unauthorized { .. }) => Err(HealthFailure::Unauthorized),
        Err(e) => Err(HealthFailure::Other(e.to_string())),
    }
}

/// Why [`wait_healthy`] gave up.
pub(crate) enum HealthWait {
    /// No healthy answer: the last failure.
    Failed(String),
    /// An interrupt arrived.
    Interrupted,
}

/// Health checks with short attempts until one succeeds, `deadline`, or
/// `interrupted()` (checked between attempts, at most half a second apart).
pub(crate) fn wait_healthy(
    url: &str,
    password: Option<&str>,
    deadline: Instant,
    interrupted: &dyn Fn() -> bool,
) -> Result<String, HealthWait> {
    loop {
        if interrupted() {
            return Err(HealthWait::Interrupted);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HealthWait::Failed(
                "no healthy answer before the start-up deadline".into(),
            ));
        }
        match health(url, password, STARTUP_HEALTH_ATTEMPT.min(left)) {
            Ok(version) => return Ok(version),
            Err(HealthFailure::Unauthorized) => {
                return Err(HealthWait::Failed(
                    "it refused ocm's credentials (401)".into(),
                ));
            }
            Err(HealthFailure::Other(reason)) => {
                if Instant::now() >= deadline {
                    return Err(HealthWait::Failed(reason));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn url_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(url_host_port("::1", 80), "[::1]:80");
        assert_eq!(url_host_port("[::1]", 80), "[::1]:80");
        assert_eq!(url_host_port("127.0.0.1", 80), "127.0.0.1:80");
    }
}
