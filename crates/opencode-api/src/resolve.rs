//! Name resolution for the client's connections: an IP address in the URL
//! is used as it is, a host name is looked up by ureq's own resolver.
//!
//! ureq looks every name up on a thread of its own when the lookup has a
//! timeout (so a hung DNS server cannot block past it), also a literal such
//! as `127.0.0.1:4096`: each new connection to a local server then started
//! and joined a thread for nothing (measured on two cores: 0.04 ms, and
//! 0.16 ms in a process that sat idle for 100 ms; a new `ocm prompt` makes
//! two such connections before its prompt is sent). A literal needs no
//! lookup and cannot hang.
//!
//! `ureq::unversioned::resolver` may change in a minor release of ureq;
//! the workspace pins ureq in `Cargo.lock`.

use std::net::{IpAddr, SocketAddr};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// Takes an IP address in the URL as it is; looks host names up with
/// [`DefaultResolver`] (within the timeout).
#[derive(Debug, Default)]
pub(crate) struct LiteralFirst {
    names: DefaultResolver,
}

impl LiteralFirst {
    /// The URL's address when its host is an IP address (`[::1]` too) and
    /// its port is given or implied by an `http`/`https` scheme.
    fn literal(uri: &Uri) -> Option<SocketAddr> {
        let authority = uri.authority()?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip: IpAddr = host.parse().ok()?;
        let port = authority.port_u16().or_else(|| match uri.scheme_str()? {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        })?;
        Some(SocketAddr::new(ip, port))
    }
}

impl Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match LiteralFirst::literal(uri) {
            Some(addr) => {
                let mut addrs = self.empty();
                addrs.push(addr);
                Ok(addrs)
            }
            None => self.names.resolve(uri, config, timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(url: &str) -> Option<SocketAddr> {
        LiteralFirst::literal(&url.parse::<Uri>().unwrap())
    }

    #[test]
    fn an_ip_address_is_taken_as_it_is() {
        assert_eq!(
            literal("http://127.0.0.1:4096/global/event"),
            Some("127.0.0.1:4096".parse().unwrap())
        );
        assert_eq!(
            literal("http://[::1]:7/session"),
            Some("[::1]:7".parse().unwrap())
        );
        assert_eq!(
            literal("http://127.0.0.1/"),
            Some("127.0.0.1:80".parse().unwrap())
        );
    }

    #[test]
    fn a_host_name_is_left_to_the_lookup() {
        assert_eq!(literal("http://localhost:4096/"), None);
        assert_eq!(literal("http://127.0.0.1.example:4096/"), None);
    }

    #[test]
    fn a_client_reaches_its_server_by_address_and_by_name() {
        use crate::Client;
        use crate::fake_server::{Answer, FakeServer, json_response};

        let fake = FakeServer::start(Answer::With(json_response("200 OK", "[]")));
        let by_name = fake.url().replace("127.0.0.1", "localhost");
        for url in [fake.url(), by_name] {
            let sessions = Client::new(&url).unwrap().list_sessions();
            assert!(sessions.is_ok_and(|s| s.is_empty()), "{url}");
        }
    }
}
