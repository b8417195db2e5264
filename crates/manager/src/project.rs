//! A project as ocm names it: its absolute path, hash and deterministic
//! port, worked out from the path alone (no state folder needed).

use std::path::{Path, PathBuf};

use crate::Error;

/// A project folder as ocm names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The path made absolute without resolving symlinks (`.` and `..`
    /// folded), as other OpenCode managers name it.
    pub path: PathBuf,
    /// MD5 hex of the path: the name of its state folder.
    pub hash: String,
    /// The deterministic port, `28000 + md5(path) % 1000`.
    pub port: u16,
}

/// Names the project at `dir` (relative paths against the current folder).
/// Touches nothing; fails only for a path that is not UTF-8 or a current
/// folder that cannot be read.
pub fn project(dir: &Path) -> Result<Project, Error> {
    let path = portmap::resolve_path(dir)?;
    let hash = portmap::project_hash(&path)?;
    let port = portmap::port_for_project(&path)?;
    Ok(Project { path, hash, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_is_named_by_its_lexical_path() {
        let a = project(Path::new("/work/p/../p/")).unwrap();
        let b = project(Path::new("/work/p")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.path, Path::new("/work/p"));
        assert_eq!(a.hash.len(), 32);
        assert!((28000..29000).contains(&a.port));
    }
}
