//! The per-project session registry, `sessions.json` in the project's state
//! folder: key → OpenCode session, status, usage totals, last activity.
//!
//! Every change is a read-modify-write under `sessions.lock` (an advisory
//! lock with a deadline) and an atomic replace, both through the manager.
//! The end of a turn appends its session's totals to
//! `turns/<session>.usage`, one JSON line, without fsync: the registry's
//! atomic replace (a file created, two fsyncs, a rename) took 2 to 8 ms
//! while the server wrote its own files after the turn, and an append to
//! an existing file is one plain write. The last whole line wins over the
//! registry's figures, which catch up at its next write (and when the
//! file reaches [`MAX_TALLY`], which then goes). A power loss may set the
//! totals back; the sessions and their states are only ever written
//! durably.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use manager::Manager;
use opencode_api::SessionId;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::usage::Usage;

/// The registry file's schema version.
pub const REGISTRY_SCHEMA: u32 = 1;
/// How long a change waits for another process's change.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// The size at which a session's totals go into the registry and their
/// file (`turns/<session>.usage`) starts again.
pub const MAX_TALLY: u64 = 64 * 1024;

/// How a session is named: a title of the user's, a team member, or the
/// project's default session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKey {
    /// The project's default session (`ocm prompt` without a session).
    Default,
    /// A session found again by its title.
    Title(String),
    /// A team member's session, titled
    /// `teams::{team}::agent::{agent}::role::{role}`.
    Team {
        /// The team.
        team: String,
        /// The agent's id.
        agent: String,
        /// The role.
        role: String,
    },
}

impl SessionKey {
    /// A team key; the parts may not be empty nor contain `::`.
    pub fn team(team: &str, agent: &str, role: &str) -> Result<SessionKey, Error> {
        for (name, value) in [("team", team), ("agent", agent), ("role", role)] {
            if value.trim().is_empty() || value.contains("::") {
                return Err(Error::BadKey(format!(
                    "{name} {value:?} must be non-empty and contain no \"::\""
                )));
            }
        }
        Ok(SessionKey::Team {
            team: team.into(),
            agent: agent.into(),
            role: role.into(),
        })
    }

    /// The OpenCode session title this key stands for; it is also the
    /// registry key.
    pub fn title(&self) -> String {
        match self {
            SessionKey::Default => "ocm::default".to_string(),
            SessionKey::Title(title) => title.clone(),
            SessionKey::Team { team, agent, role } => {
                format!("teams::{team}::agent::{agent}::role::{role}")
            }
        }
    }
}

/// What the registry knows of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// In use.
    Active,
    /// A turn hung (watchdog) or the server lost it: the next `ensure`
    /// makes a fresh one.
    Crashed,
    /// The server died mid-turn: resumed after the restart when the server
    /// still has it.
    Interrupted,
    /// Deleted by the user.
    Closed,
}

/// One registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEntry {
    /// The key: the title the session was asked for by.
    pub key: String,
    /// The OpenCode session.
    pub session_id: SessionId,
    /// Its title on the server.
    pub title: String,
    /// Its state.
    pub status: SessionState,
    /// `provider/model` it was created with, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Totals of every turn run through ocm.
    #[serde(default)]
    pub usage: Usage,
    /// Turns that ended (done or failed).
    #[serde(default)]
    pub turns: u64,
    /// When it was created, ms since the Unix epoch.
    pub created: u64,
    /// When a turn last ended, ms since the Unix epoch.
    #[serde(default)]
    pub last_active: u64,
}

/// A session's totals as a turn left them (a line of
/// `turns/<session>.usage`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tally {
    schema_version: u32,
    session_id: SessionId,
    usage: Usage,
    turns: u64,
    last_active: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistryFile {
    schema_version: u32,
    #[serde(default)]
    sessions: Vec<SessionEntry>,
}

/// A turn in flight on a session, held across the project's processes
/// ([`Registry::try_turn_lock`]); released on drop.
#[derive(Debug)]
pub struct TurnLock {
    guard: manager::StateLock,
}

impl TurnLock {
    /// Releases it. Its files stay for the session's next turn: creating
    /// them waited for the file system's journal (about 1 ms each on ext4
    /// while the server writes, measured), opening them does not.
    pub fn release(self) {
        drop(self.guard);
    }
}

/// The session registry of one project.
#[derive(Debug, Clone)]
pub struct Registry {
    path: PathBuf,
    lock: PathBuf,
}

/// A failure of the registry's files (not of the server).
fn registry_error(e: manager::Error) -> Error {
    Error::Registry(Box::new(e))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Registry {
    /// The registry of `project`: `sessions.json` in its state folder.
    pub fn open(manager: &Manager, project: &Path) -> Result<Registry, Error> {
        Ok(Registry::at(&manager.paths(project)?.dir))
    }

    /// The registry in the folder `dir` (tests, embedders with their own
    /// state folder).
    pub fn at(dir: &Path) -> Registry {
        Registry {
            path: dir.join("sessions.json"),
            lock: dir.join("sessions.lock"),
        }
    }

    /// Takes the lock that marks a turn in flight on `session` across the
    /// project's processes (`turns/<session>.lock` beside the registry):
    /// `None` while another process holds it. Held until dropped, and at
    /// most as long as the process lives.
    pub fn try_turn_lock(&self, session: &SessionId) -> Result<Option<TurnLock>, Error> {
        Ok(
            manager::try_lock_state_file(&self.session_file(session, "lock"))
                .map_err(registry_error)?
                .map(|guard| TurnLock { guard }),
        )
    }

    /// `turns/<session>.<ext>` beside the registry.
    fn session_file(&self, session: &SessionId, ext: &str) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new(".")).join("turns");
        // Session IDs are OpenCode's (`ses_...`); anything else (given by
        // hand) is hex, so it never names another path.
        let id = session.as_str();
        let name = if !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            id.to_string()
        } else {
            id.bytes().map(|b| format!("{b:02x}")).collect()
        };
        dir.join(format!("{name}.{ext}"))
    }

    /// `entry` with the totals its newest turn wrote, when they can be
    /// read and count at least the registry's turns (a power loss may have
    /// kept the registry's write and not the newest lines); else the
    /// registry's own stand.
    fn with_tally(&self, mut entry: SessionEntry) -> SessionEntry {
        let path = self.session_file(&entry.session_id, "usage");
        if let Ok(Some(tally)) = manager::read_last_state_line(&path, |t: &Tally| {
            t.schema_version == REGISTRY_SCHEMA
                && t.session_id == entry.session_id
                && t.turns >= entry.turns
        }) {
            entry.usage = tally.usage;
            entry.turns = tally.turns;
            entry.last_active = tally.last_active;
        }
        entry
    }

    /// The registry file's entries, with their totals.
    fn read(&self) -> Result<Vec<SessionEntry>, Error> {
        let (file, _) =
            manager::read_versioned_state_file::<RegistryFile>(&self.path, REGISTRY_SCHEMA)
                .map_err(registry_error)?;
        Ok(file
            .map(|f| f.sessions)
            .unwrap_or_default()
            .into_iter()
            .map(|e| self.with_tally(e))
            .collect())
    }

    /// Writes the entries durably.
    fn write(&self, sessions: Vec<SessionEntry>) -> Result<(), Error> {
        let file = RegistryFile {
            schema_version: REGISTRY_SCHEMA,
            sessions,
        };
        manager::write_state_file(&self.path, &file).map_err(registry_error)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry, in creation order, with its totals. Blocks at most on
    /// reading the registry and each session's totals file.
    pub fn entries(&self) -> Result<Vec<SessionEntry>, Error> {
        self.read()
    }

    /// The newest entry under `key`, unless it is closed.
    pub fn get(&self, key: &str) -> Result<Option<SessionEntry>, Error> {
        Ok(self
            .entries()?
            .into_iter()
            .rev()
            .find(|e| e.key == key)
            .filter(|e| e.status != SessionState::Closed))
    }

    /// The entry of an OpenCode session.
    pub fn by_session(&self, session_id: &SessionId) -> Result<Option<SessionEntry>, Error> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|e| &e.session_id == session_id))
    }

    /// Changes the entries under the registry's lock (waiting at most 10 s
    /// for another process) and writes them back atomically.
    pub fn update<R>(&self, change: impl FnOnce(&mut Vec<SessionEntry>) -> R) -> Result<R, Error> {
        let _guard = manager::lock_state_file(&self.lock, LOCK_TIMEOUT).map_err(registry_error)?;
        let mut sessions = self.read()?;
        let result = change(&mut sessions);
        self.write(sessions)?;
        Ok(result)
    }

    /// Records a session under `key`, marking older open entries of that
    /// key crashed when `replace_status` says so.
    pub fn record(&self, entry: SessionEntry) -> Result<(), Error> {
        self.update(|sessions| {
            sessions.retain(|e| e.session_id != entry.session_id);
            for old in sessions.iter_mut().filter(|e| e.key == entry.key) {
                if old.status == SessionState::Active || old.status == SessionState::Interrupted {
                    old.status = SessionState::Crashed;
                }
            }
            sessions.push(entry);
        })
    }

    /// Sets a session's state; false when it is not recorded.
    pub fn set_status(&self, session_id: &SessionId, status: SessionState) -> Result<bool, Error> {
        self.update(|sessions| {
            let mut found = false;
            for e in sessions.iter_mut().filter(|e| &e.session_id == session_id) {
                e.status = status;
                found = true;
            }
            found
        })
    }

    /// Adds one ended turn and its usage to a session's totals.
    pub fn add_turn(&self, session_id: &SessionId, usage: &Usage) -> Result<bool, Error> {
        self.end_turn(session_id, usage, None)
    }

    /// Adds one ended turn and its usage to a session's totals (written
    /// without fsyncs, see the module's docs) and, when given, sets its
    /// state (durably, when it changes). False when the session is not
    /// recorded.
    pub fn end_turn(
        &self,
        session_id: &SessionId,
        usage: &Usage,
        status: Option<SessionState>,
    ) -> Result<bool, Error> {
        let _guard = manager::lock_state_file(&self.lock, LOCK_TIMEOUT).map_err(registry_error)?;
        let mut sessions = self.read()?;
        let Some(entry) = sessions.iter_mut().find(|e| &e.session_id == session_id) else {
            return Ok(false);
        };
        entry.usage.add(usage);
        entry.turns += 1;
        entry.last_active = now_ms();
        let tally = Tally {
            schema_version: REGISTRY_SCHEMA,
            session_id: session_id.clone(),
            usage: entry.usage,
            turns: entry.turns,
            last_active: entry.last_active,
        };
        let path = self.session_file(session_id, "usage");
        let appended = manager::append_state_line(&path, &tally);
        let status = status.filter(|s| *s != entry.status);
        if let Some(status) = status {
            entry.status = status;
        }
        // The registry takes the totals too when the state changes, when
        // the file is full, and when they could not be appended.
        let full = appended.as_ref().is_ok_and(|size| *size >= MAX_TALLY);
        if status.is_some() || full || appended.is_err() {
            self.write(sessions)?;
        }
        // Carried by the registry now (a crash before the removal leaves
        // the same totals in both).
        if full {
            manager::remove_state_file(&path).map_err(registry_error)?;
        }
        appended.map_err(registry_error)?;
        Ok(true)
    }

    /// The usage of every session of the project, summed.
    pub fn totals(&self) -> Result<Usage, Error> {
        let mut total = Usage::default();
        for e in self.entries()? {
            total.add(&e.usage);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, id: &str) -> SessionEntry {
        SessionEntry {
            key: key.into(),
            session_id: SessionId::from(id),
            title: key.into(),
            status: SessionState::Active,
            model: None,
            usage: Usage::default(),
            turns: 0,
            created: now_ms(),
            last_active: 0,
        }
    }

    /// A registry in a temp folder with one session, `ses_1` (key `t`).
    fn one_session() -> (tempfile::TempDir, Registry, SessionId) {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::at(dir.path());
        registry.record(entry("t", "ses_1")).unwrap();
        (dir, registry, SessionId::from("ses_1"))
    }

    /// A turn's usage of `n` output tokens.
    fn output(n: u64) -> Usage {
        Usage {
            output: n,
            ..Usage::default()
        }
    }

    #[test]
    fn team_key_has_the_seed_title() {
        let key = SessionKey::team("red", "a1", "lead").unwrap();
        assert_eq!(key.title(), "teams::red::agent::a1::role::lead");
        assert!(SessionKey::team("red", "", "lead").is_err());
        assert!(SessionKey::team("r::d", "a", "lead").is_err());
    }

    #[test]
    fn records_replace_and_total() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::at(dir.path());
        assert!(registry.entries().unwrap().is_empty());
        registry.record(entry("t", "ses_1")).unwrap();
        registry.record(entry("t", "ses_2")).unwrap();
        let all = registry.entries().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].status, SessionState::Crashed);
        assert_eq!(registry.get("t").unwrap().unwrap().session_id, "ses_2");
        let usage = Usage {
            input: 3,
            cost: 0.5,
            ..Usage::default()
        };
        assert!(
            registry
                .add_turn(&SessionId::from("ses_2"), &usage)
                .unwrap()
        );
        assert!(
            registry
                .add_turn(&SessionId::from("ses_2"), &usage)
                .unwrap()
        );
        assert!(
            !registry
                .add_turn(&SessionId::from("ses_9"), &usage)
                .unwrap()
        );
        let e = registry
            .by_session(&SessionId::from("ses_2"))
            .unwrap()
            .unwrap();
        assert_eq!((e.usage.input, e.turns), (6, 2));
        assert_eq!(registry.totals().unwrap().input, 6);
        registry
            .set_status(&SessionId::from("ses_2"), SessionState::Closed)
            .unwrap();
        assert!(registry.get("t").unwrap().is_none());
    }

    #[test]
    fn an_ended_turn_records_its_usage_and_the_state_together() {
        let (_dir, registry, s) = one_session();
        let usage = output(7);
        assert!(
            registry
                .end_turn(&s, &usage, Some(SessionState::Crashed))
                .unwrap()
        );
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!(
            (e.usage.output, e.turns, e.status),
            (7, 1, SessionState::Crashed)
        );
        assert!(registry.end_turn(&s, &usage, None).unwrap());
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!(
            (e.usage.output, e.turns, e.status),
            (14, 2, SessionState::Crashed),
            "no state given: kept"
        );
    }

    /// A turn's end writes its session's totals beside the registry, not
    /// the registry; they are what it reads, and its next write carries
    /// them; totals that cannot be read leave the registry's own.
    #[test]
    fn an_ended_turn_writes_its_totals_beside_the_registry() {
        let (dir, registry, s) = one_session();
        registry.record(entry("u", "ses_2")).unwrap();
        let before = std::fs::read(registry.path()).unwrap();
        let usage = output(7);
        assert!(
            registry
                .end_turn(&s, &usage, Some(SessionState::Active))
                .unwrap()
        );
        assert_eq!(
            std::fs::read(registry.path()).unwrap(),
            before,
            "the registry is not written when the state stays"
        );
        let tally = dir.path().join("turns").join("ses_1.usage");
        assert!(tally.is_file());
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!((e.usage.output, e.turns), (7, 1));
        assert!(e.last_active > 0);
        assert_eq!(registry.totals().unwrap().output, 7);

        // The next write of the registry carries the totals.
        registry
            .set_status(&SessionId::from("ses_2"), SessionState::Crashed)
            .unwrap();
        std::fs::remove_file(&tally).unwrap();
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!((e.usage.output, e.turns), (7, 1));

        // Cut by a power loss: the line before stands.
        registry.end_turn(&s, &usage, None).unwrap();
        let whole = std::fs::read(&tally).unwrap();
        registry.end_turn(&s, &usage, None).unwrap();
        let mut cut = std::fs::read(&tally).unwrap();
        cut.truncate(whole.len() + 20);
        std::fs::write(&tally, &cut).unwrap();
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!((e.usage.output, e.turns), (14, 2));
        // Gone altogether: the registry's figures stand, and the next turn
        // adds to them.
        std::fs::write(&tally, b"{\"schemaVer").unwrap();
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!((e.usage.output, e.turns), (7, 1));
        registry.end_turn(&s, &usage, None).unwrap();
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!((e.usage.output, e.turns), (14, 2));
    }

    /// A registry another schema wrote (a newer ocm's) is refused, and
    /// left as it is: rewriting it in this schema would lose what it holds.
    #[test]
    fn a_registry_of_another_schema_is_refused_and_left_as_it_is() {
        let (dir, registry, s) = one_session();
        let path = dir.path().join("sessions.json");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"schemaVersion\": 1", "\"schemaVersion\": 2")
            .replace("\"schemaVersion\":1", "\"schemaVersion\":2");
        assert!(
            text.contains("\"schemaVersion\": 2") || text.contains("\"schemaVersion\":2"),
            "{text}"
        );
        std::fs::write(&path, &text).unwrap();
        let err = registry.by_session(&s).unwrap_err().to_string();
        assert!(err.contains("schema version 2"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(registry.end_turn(&s, &output(1), None).is_err());
        assert!(registry.record(entry("u", "ses_2")).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    /// A totals line another schema wrote is not taken.
    #[test]
    fn totals_of_another_schema_are_not_taken() {
        let (dir, registry, s) = one_session();
        registry.end_turn(&s, &output(5), None).unwrap();
        let tally = dir.path().join("turns").join("ses_1.usage");
        let line = std::fs::read_to_string(&tally).unwrap();
        let newer = line.replace("\"schemaVersion\":1", "\"schemaVersion\":2");
        assert_ne!(line, newer);
        let bigger = newer.replace("\"turns\":1", "\"turns\":9");
        std::fs::write(&tally, format!("{line}{bigger}")).unwrap();
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!(e.turns, 1, "{e:?}");
    }

    /// A power loss kept the registry's durable write but not the newest
    /// lines: an older line never sets the totals below the registry's.
    #[test]
    fn totals_older_than_the_registrys_are_not_taken() {
        let (dir, registry, s) = one_session();
        let usage = output(5);
        registry.end_turn(&s, &usage, None).unwrap();
        let tally = dir.path().join("turns").join("ses_1.usage");
        let one_turn = std::fs::read(&tally).unwrap();
        registry
            .end_turn(&s, &usage, Some(SessionState::Crashed))
            .unwrap();
        std::fs::write(&tally, &one_turn).unwrap();
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!((e.usage.output, e.turns), (10, 2));
    }

    /// A turn's end whose totals cannot be appended still sets the state,
    /// and the registry takes the totals.
    #[test]
    fn a_failed_append_still_records_the_state_and_the_totals() {
        let (dir, registry, s) = one_session();
        // A folder where the file should be: refused.
        std::fs::create_dir_all(dir.path().join("turns").join("ses_1.usage")).unwrap();
        let usage = output(5);
        let _ = registry.end_turn(&s, &usage, Some(SessionState::Crashed));
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!(
            (e.status, e.usage.output, e.turns),
            (SessionState::Crashed, 5, 1)
        );
    }

    /// The totals' file stops growing: at its bound the registry takes
    /// them and it starts again.
    #[test]
    fn a_full_totals_file_goes_into_the_registry() {
        let (dir, registry, s) = one_session();
        let usage = Usage {
            input: 3,
            ..Usage::default()
        };
        let tally = dir.path().join("turns").join("ses_1.usage");
        let mut turns = 0;
        while tally.is_file() || turns == 0 {
            registry.end_turn(&s, &usage, None).unwrap();
            turns += 1;
            assert!(turns < 10_000, "the file never started again");
        }
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!((e.usage.input, e.turns), (3 * turns, turns));
        registry.end_turn(&s, &usage, None).unwrap();
        assert!(std::fs::metadata(&tally).unwrap().len() < 1024);
        let e = registry.by_session(&s).unwrap().unwrap();
        assert_eq!(e.turns, turns + 1);
    }

    #[test]
    fn a_turn_lock_is_one_holders_and_its_files_stay_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::at(dir.path());
        let s = SessionId::from("ses_1");
        let held = registry.try_turn_lock(&s).unwrap().expect("free");
        assert!(registry.try_turn_lock(&s).unwrap().is_none(), "held");
        held.release();
        assert!(dir.path().join("turns").join("ses_1.lock").is_file());
        let again = registry.try_turn_lock(&s).unwrap();
        assert!(again.is_some(), "free again");
    }

    #[test]
    fn a_corrupt_registry_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::at(dir.path());
        std::fs::write(registry.path(), b"[oops").unwrap();
        assert!(registry.entries().unwrap().is_empty());
        registry.record(entry("t", "ses_1")).unwrap();
        assert_eq!(registry.entries().unwrap().len(), 1);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("sessions.json.corrupt-"))
        );
    }
}
