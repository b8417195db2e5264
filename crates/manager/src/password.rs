//! The server's password: the configured one, or one generated once per
//! project and kept 0600 in its state folder.

use std::path::PathBuf;

use statefile::ProjectPaths;

use crate::progress::Progress;
use crate::record::{ServerRecord, read_record};
use crate::{Error, Manager, PasswordPolicy};

/// Where a generated password is kept.
pub(crate) fn password_file(paths: &ProjectPaths) -> PathBuf {
    paths.dir.join("password")
}

impl Manager {
    /// The password of a recorded server: none when it was started without
    /// one, else the configured or kept one.
    pub(crate) fn password_of(
        &self,
        record: &ServerRecord,
        paths: &ProjectPaths,
    ) -> Result<Option<String>, Error> {
        if record.auth {
            self.known_password(paths)
        } else {
            Ok(None)
        }
    }

    /// The password a running server of this project may have: the
    /// configured one, else a generated one kept in the state folder.
    pub(crate) fn known_password(&self, paths: &ProjectPaths) -> Result<Option<String>, Error> {
        if let PasswordPolicy::Fixed(password) = &self.config.password {
            return Ok(Some(password.clone()));
        }
        let file = password_file(paths);
        match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                action: "cannot read",
                path: file,
                source,
            }),
        }
    }

    /// The password for a new server, per the policy. Auth is part of the
    /// project's recorded configuration: with no policy given, a project
    /// whose last server had a password gets it again (a replacement after
    /// a crash is never silently open); turning it off takes
    /// [`PasswordPolicy::Off`] and is said.
    pub(crate) fn password_for_start(&self, paths: &ProjectPaths) -> Result<Option<String>, Error> {
        let file = password_file(paths);
        match &self.config.password {
            PasswordPolicy::Fixed(password) => Ok(Some(password.clone())),
            PasswordPolicy::None => {
                let had_auth = read_record(&paths.record)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.auth);
                if !had_auth {
                    remove_password_file(&file)?;
                    return Ok(None);
                }
                match self.known_password(paths)? {
                    Some(kept) => {
                        self.report(Progress::PasswordKept { file });
                        Ok(Some(kept))
                    }
                    None => Err(Error::PasswordNeeded {
                        project: read_record(&paths.record)
                            .ok()
                            .flatten()
                            .map(|r| r.project_path)
                            .unwrap_or_else(|| paths.dir.clone()),
                    }),
                }
            }
            PasswordPolicy::Off => {
                let had_auth = read_record(&paths.record)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.auth);
                remove_password_file(&file)?;
                if had_auth {
                    self.report(Progress::PasswordTurnedOff);
                }
                Ok(None)
            }
            PasswordPolicy::Generate => {
                if let Some(existing) = self.known_password(paths)? {
                    return Ok(Some(existing));
                }
                let password = random_password()?;
                statefile::write_private(&file, password.as_bytes())?;
                Ok(Some(password))
            }
        }
    }
}

fn remove_password_file(file: &std::path::Path) -> Result<(), Error> {
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            action: "cannot remove",
            path: file.to_path_buf(),
            source,
        }),
    }
}

/// 32 hex characters from the kernel's random source.
pub(crate) fn random_password() -> Result<String, Error> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| Error::Io {
            action: "cannot read",
            path: PathBuf::from("/dev/urandom"),
            source,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_passwords_differ() {
        let a = random_password().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_password().unwrap());
    }
}
