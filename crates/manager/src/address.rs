//! The address a server binds, as a literal: a host name is resolved once,
//! at start, so the record and the URL never hold a name that could later
//! resolve to another address (`localhost` to `::1`, where another user
//! may listen).

use std::net::IpAddr;

use portmap::BindHost;

use crate::Error;

/// The IP literal to bind for `host`: the literal itself, or the address a
/// name resolves to (for a name that resolves to loopback addresses, the
/// IPv4 one when there is one, as opencode binds it).
pub fn bind_literal(host: &str) -> Result<String, Error> {
    let trimmed = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let resolved =
        BindHost::resolve(host, portmap::DEFAULT_RESOLVE_TIMEOUT).map_err(|problem| {
            Error::CannotBind {
                hostname: host.to_string(),
                port: None,
                problem,
            }
        })?;
    let addrs = resolved.addrs();
    let chosen = addrs
        .iter()
        .find(|a| a.ip().is_loopback() && a.is_ipv4())
        .or_else(|| addrs.first())
        .ok_or_else(|| Error::CannotBind {
            hostname: host.to_string(),
            port: None,
            problem: portmap::PortProblem::Unresolvable,
        })?;
    Ok(chosen.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_literals_and_literals_stay() {
        assert_eq!(bind_literal("localhost").unwrap(), "127.0.0.1");
        assert_eq!(bind_literal("127.0.0.1").unwrap(), "127.0.0.1");
        assert_eq!(bind_literal("[::1]").unwrap(), "::1");
        assert_eq!(bind_literal("::1").unwrap(), "::1");
        assert!(matches!(
            bind_literal("no-such-host.invalid"),
            Err(Error::CannotBind { .. })
        ));
    }
}
