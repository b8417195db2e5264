//! Sandbox names: letters, digits, `-` and `_`, 1 to 64 characters.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The longest name allowed.
pub const MAX_NAME_LEN: usize = 64;

/// The rule, as said in errors.
pub const NAME_RULE: &str = "a sandbox name is 1 to 64 ASCII letters, digits, '-' or '_'";

/// A valid sandbox name: safe as one path component and in a file name
/// (no slash, no dot, never empty), checked before anything touches the
/// disk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SandboxName(String);

impl SandboxName {
    /// Checks `name` against the rule ([`NAME_RULE`]).
    pub fn parse(name: &str) -> Result<SandboxName, Error> {
        let bad = |problem: String| Error::BadName {
            given: name.to_string(),
            problem,
        };
        if name.is_empty() {
            return Err(bad("it is empty".into()));
        }
        let len = name.chars().count();
        if len > MAX_NAME_LEN {
            return Err(bad(format!("it has {len} characters")));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(bad(format!("it contains {:?}", c)));
        }
        Ok(SandboxName(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SandboxName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        SandboxName::parse(s)
    }
}

impl fmt::Display for SandboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SandboxName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_characters() {
        for good in ["a", "my-app_2", "ABC", &"x".repeat(64)] {
            assert_eq!(SandboxName::parse(good).unwrap().as_str(), good);
        }
        assert_eq!("web".parse::<SandboxName>().unwrap().to_string(), "web");
    }

    #[test]
    fn refuses_everything_else_with_the_rule() {
        let long = "x".repeat(65);
        for bad in [
            "", "../x", "a/b", ".", "..", "a.b", "a b", " a", "é", "a\n", &long, "a\0",
        ] {
            let err = SandboxName::parse(bad).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(NAME_RULE), "{bad:?}: {text}");
            assert!(
                !text.contains('\n'),
                "{bad:?}: control characters are escaped: {text}"
            );
        }
        let text = SandboxName::parse(&long).unwrap_err().to_string();
        assert!(text.contains("65 characters"), "{text}");
        let text = SandboxName::parse("a/b").unwrap_err().to_string();
        assert!(text.contains("'/'"), "{text}");
    }
}
