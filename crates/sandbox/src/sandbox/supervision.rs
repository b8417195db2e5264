//! What a supervisor must know of a sandbox's project: its server's
//! configuration (the password and ports from `.env`) and its companion,
//! so that `ocm supervise` restarts both as `ocm sandbox up` starts them.

use std::path::Path;

use manager::ProjectSetup;

use super::Sandboxes;
use crate::error::Error;
use crate::name::SandboxName;

impl Sandboxes {
    /// The sandbox whose clone is `project` (`<data_root>/sandboxes/NAME/repo`,
    /// compared as real paths), if any.
    pub fn name_of(&self, project: &Path) -> Option<SandboxName> {
        let project = std::fs::canonicalize(project).ok()?;
        let sandboxes = std::fs::canonicalize(self.data_root().join("sandboxes")).ok()?;
        if project.file_name()? != "repo" {
            return None;
        }
        let folder = project.parent()?;
        if folder.parent()? != sandboxes {
            return None;
        }
        SandboxName::parse(folder.file_name()?.to_str()?).ok()
    }

    /// For a sandbox's clone, the configuration its server is started with
    /// and the spec of its companion (reading `.env`; the server's URL goes
    /// into the companion's environment). `Ok(None)` for any other folder.
    pub fn project_setup(&self, project: &Path) -> Result<Option<ProjectSetup>, Error> {
        let Some(name) = self.name_of(project) else {
            return Ok(None);
        };
        let env = self.read_env(&name)?;
        let manager = self.manager(&env)?;
        let repo = self.repo(&name);
        let url = manager.status(&repo)?.url.unwrap_or_default();
        Ok(Some(ProjectSetup {
            config: Some(manager.config().clone()),
            companion: Some(self.companion_spec(&env, &manager, &repo, &url)),
        }))
    }
}
