//! The server's password: the configured one, or one generated once per
//! project and kept 0600 in its state folder.

use std::io::Read;
use std::path::PathBuf;

use statefile::ProjectPaths;

use crate::progress::Progress;
use crate::record::{ServerRecord, read_record};
use crate::{Error, Manager, PasswordPolicy};

/// A kept password is 32 hex characters; a file much longer is not one.
const MAX_PASSWORD_BYTES: u64 = 4096;

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
        // Never blocking, never through a symlink, only the user's own
        // regular file; and read with a bound.
        let opened = match statefile::open_file(&file, statefile::OpenMode::Read) {
            Ok(opened) => opened,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut bytes = Vec::new();
        opened
            .take(MAX_PASSWORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| Error::Io {
                action: "cannot read",
                path: file.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_PASSWORD_BYTES {
            return Err(Error::Io {
                action: "cannot use",
                path: file,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "longer than {MAX_PASSWORD_BYTES} bytes, so not a password ocm kept; \
                         remove it"
                    ),
                ),
            });
        }
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        Ok((!text.is_empty()).then(|| text.to_string()))
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
                let password = random_secret()?;
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

/// 32 hex characters (128 bits) from the kernel's random source, for
/// passwords, tokens and nonces.
pub fn random_secret() -> Result<String, Error> {
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

    use crate::Config;

    fn generating_manager(root: &std::path::Path) -> (Manager, ProjectPaths) {
        let manager = Manager::new(Config {
            state_root: Some(root.join("state")),
            password: PasswordPolicy::Generate,
            ..Config::default()
        })
        .unwrap();
        let paths = manager.paths(&root.join("project")).unwrap();
        statefile::ensure_dir(&paths.dir).unwrap();
        (manager, paths)
    }

    #[test]
    fn a_fifo_password_file_is_refused_at_once() {
        let root = tempfile::tempdir().unwrap();
        let (manager, paths) = generating_manager(root.path());
        let file = password_file(&paths);
        let status = std::process::Command::new("mkfifo")
            .arg(&file)
            .status()
            .unwrap();
        assert!(status.success());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(manager.known_password(&paths).map_err(|e| e.to_string()));
        });
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading the password blocked on a FIFO")
            .unwrap_err();
        assert!(err.contains("a FIFO") && err.contains("password"), "{err}");
        assert!(err.contains("remove"), "{err}");
    }

    #[test]
    fn a_symlinked_password_file_is_neither_read_nor_written_through() {
        let root = tempfile::tempdir().unwrap();
        let (manager, paths) = generating_manager(root.path());
        let file = password_file(&paths);
        let elsewhere = root.path().join("secret-elsewhere");
        std::fs::write(&elsewhere, "not-for-ocm\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        let err = manager.known_password(&paths).unwrap_err().to_string();
        assert!(err.contains("a symlink"), "{err}");
        assert!(manager.password_for_start(&paths).is_err());
        assert_eq!(
            std::fs::read_to_string(&elsewhere).unwrap(),
            "not-for-ocm\n"
        );
        // Once the link is gone, a password is generated and kept 0600.
        std::fs::remove_file(&file).unwrap();
        let generated = manager.password_for_start(&paths).unwrap().unwrap();
        assert_eq!(manager.known_password(&paths).unwrap(), Some(generated));
    }

    #[test]
    fn random_secrets_differ() {
        let a = random_secret().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_secret().unwrap());
    }
}
