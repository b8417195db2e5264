//! Git URLs a sandbox accepts: `ssh://`, scp-like `user@host:path`,
//! `https://`, `http://` and `file://`, nothing a shell or git could read as
//! more than a URL.

use std::fmt;

use crate::error::Error;

/// Characters refused anywhere in a URL (besides whitespace and control
/// characters): what a shell would act on.
pub const FORBIDDEN: &str = ";|&$`<>()'\"\\*?!{}[]";

/// The kinds of URL accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `ssh://[user@]host[:port]/path`.
    Ssh,
    /// `[user@]host:path` (git's scp-like syntax, over SSH).
    Scp,
    /// `https://`.
    Https,
    /// `http://`.
    Http,
    /// `file://` (a local repository).
    File,
}

/// A validated git URL. Validation touches nothing: it happens before any
/// file or process is made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct GitUrl {
    url: String,
    #[serde(skip)]
    transport: Transport,
}

impl GitUrl {
    /// Checks `url`; the error says what is wrong (which character, which
    /// scheme).
    pub fn parse(url: &str) -> Result<GitUrl, Error> {
        let bad = |problem: String| Error::BadUrl {
            url: redact_userinfo(url),
            problem,
        };
        if url.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if let Some((at, c)) = url
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || c.is_control() || FORBIDDEN.contains(*c))
        {
            return Err(bad(format!(
                "character {c:?} at byte {at} is not allowed (no whitespace, control characters or any of {FORBIDDEN})"
            )));
        }
        if url.starts_with('-') {
            return Err(bad(
                "it starts with '-' (it would be read as an option)".into()
            ));
        }
        if url.contains("::") {
            return Err(bad(
                "'::' (git's remote helper syntax such as ext:: or fd::) is not allowed".into(),
            ));
        }
        let transport = if let Some((scheme, rest)) = url.split_once("://") {
            let transport = match scheme {
                "ssh" => Transport::Ssh,
                "https" => Transport::Https,
                "http" => Transport::Http,
                "file" => Transport::File,
                other => {
                    return Err(bad(format!(
                        "scheme {other:?} is not allowed (use ssh://, https://, http://, file:// or user@host:path)"
                    )));
                }
            };
            if transport == Transport::File {
                if !rest.starts_with('/') {
                    return Err(bad(
                        "a file:// URL needs an absolute path (file:///...)".into()
                    ));
                }
            } else {
                let authority = rest.split('/').next().unwrap_or("");
                if let Some((userinfo, _)) = authority.rsplit_once('@')
                    && userinfo.contains(':')
                {
                    return Err(bad("it carries a password or token; give no credentials in the URL (use an SSH key, or a git credential helper)".into()));
                }
                let host = authority.rsplit('@').next().unwrap_or("");
                if host.is_empty() {
                    return Err(bad("it names no host".into()));
                }
                if host.starts_with('-') {
                    return Err(bad("its host starts with '-'".into()));
                }
            }
            transport
        } else {
            // scp-like: a ':' before any '/'.
            match url.split_once(':') {
                Some((host, path)) if !host.contains('/') && !path.is_empty() => {
                    let host_only = host.rsplit('@').next().unwrap_or("");
                    if host_only.is_empty() || host_only.starts_with('-') {
                        return Err(bad("it names no valid host before ':'".into()));
                    }
                    Transport::Scp
                }
                _ => {
                    return Err(bad(
                        "it is not a URL git can clone from here (use ssh://, https://, http://, file:///path or user@host:path)".into(),
                    ));
                }
            }
        };
        Ok(GitUrl {
            url: url.to_string(),
            transport,
        })
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Which kind it is.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether git reaches it over SSH (so a key is needed).
    pub fn is_ssh(&self) -> bool {
        matches!(self.transport, Transport::Ssh | Transport::Scp)
    }
}

/// `url` with the user information of its authority replaced when it holds
/// a password (`user:secret@`), for messages.
fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((userinfo, host)) if userinfo.contains(':') => {
                    format!("{scheme}://<redacted>@{host}{path}")
                }
                _ => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

impl fmt::Display for GitUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl std::str::FromStr for GitUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        GitUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_five_kinds() {
        let cases = [
            (
                "ssh://git@127.0.0.1:2222/srv/repo.git",
                Transport::Ssh,
                true,
            ),
            ("git@github.com:owner/repo.git", Transport::Scp, true),
            ("host:repo", Transport::Scp, true),
            ("https://github.com/owner/repo.git", Transport::Https, false),
            ("http://127.0.0.1:8080/repo", Transport::Http, false),
            ("file:///tmp/x/repo.git", Transport::File, false),
        ];
        for (url, transport, ssh) in cases {
            let parsed = GitUrl::parse(url).unwrap();
            assert_eq!(parsed.transport(), transport, "{url}");
            assert_eq!(parsed.is_ssh(), ssh, "{url}");
            assert_eq!(parsed.as_str(), url);
        }
    }

    #[test]
    fn refuses_the_rest_saying_why() {
        let cases = [
            ("", "empty"),
            ("ext::sh -c touch% /tmp/pwned", "' '"),
            ("ext::sh", "::"),
            ("fd::3", "::"),
            ("-uhello", "'-'"),
            ("--upload-pack=touch /tmp/x", "' '"),
            ("ssh://-oProxyCommand=x/repo", "host starts with '-'"),
            ("git@host:repo;rm -rf ~", "';'"),
            ("https://h/r|x", "'|'"),
            ("https://h/$(id)", "'$'"),
            ("https://h/`id`", "'`'"),
            ("https://h/a\nb", "'\\n'"),
            ("https://h/a\tb", "'\\t'"),
            ("https://h/a&b", "'&'"),
            ("https://h/a>b", "'>'"),
            ("https://h/a'b", "'\\''"),
            ("https://h/a*b", "'*'"),
            ("ftp://h/r", "\"ftp\""),
            ("git://h/r", "\"git\""),
            ("/srv/repo", "not a URL"),
            ("./repo", "not a URL"),
            ("file://relative", "absolute"),
            ("https:///path", "no host"),
            ("https://me:s3cret@h/r", "credentials"),
            ("https://me:s3cret!@h/r", "'!'"),
        ];
        for (url, says) in cases {
            let err = GitUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(says), "{url:?}: {err}");
            assert!(!err.contains('\n'), "{url:?}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        assert!(GitUrl::parse("https://me@h/r").is_ok());
    }
}
