//! Sessions by key: create, find by title, ensure (resume the recorded one
//! unless crashed, gone or of another model), list, delete, with the
//! project's registry.

use opencode_api::{Client, MessageId, ModelRef, NewSession, PromptRequest, Session, SessionId};

use crate::Error;
use crate::engine::{Engine, Turn};
use crate::registry::{Registry, SessionEntry, SessionKey, SessionState, now_ms};
use crate::usage::Usage;

/// A registry entry with what the server says of it now.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The registry's entry, when the session is recorded.
    pub entry: Option<SessionEntry>,
    /// The server's session, when the server has it.
    pub session: Option<Session>,
}

/// The sessions of one project, through an [`Engine`] with a registry.
#[derive(Debug, Clone)]
pub struct Sessions {
    engine: Engine,
    registry: Registry,
}

fn model_text(model: Option<&ModelRef>) -> Option<String> {
    model.map(|m| format!("{}/{}", m.provider_id, m.model_id))
}

/// Whether a recorded session may be resumed: active, or interrupted by a
/// server crash, and made with the model wanted (when one is).
fn usable(entry: &SessionEntry, wanted: Option<&String>) -> bool {
    matches!(
        entry.status,
        SessionState::Active | SessionState::Interrupted
    ) && (wanted.is_none() || wanted == entry.model.as_ref())
}

impl Sessions {
    /// The sessions of the engine's project, recorded in `registry`.
    pub fn new(engine: Engine, registry: Registry) -> Sessions {
        Sessions { engine, registry }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Creates a session titled after `key` and records it (an older open
    /// entry of the key is marked crashed).
    pub fn create(
        &self,
        key: &SessionKey,
        model: Option<&ModelRef>,
    ) -> Result<SessionEntry, Error> {
        let title = key.title();
        let mut new = NewSession::titled(title.clone());
        if let Some(model) = model {
            new = new.model(model.clone());
        }
        let session = self.engine.with_client(|c| c.create_session(&new))?;
        let entry = SessionEntry {
            key: title.clone(),
            session_id: session.id,
            title,
            status: SessionState::Active,
            model: model_text(model),
            usage: Usage::default(),
            turns: 0,
            created: now_ms(),
            last_active: 0,
        };
        self.registry.record(entry.clone())?;
        Ok(entry)
    }

    /// The server's newest session with this title in the project.
    pub fn find_by_title(&self, title: &str) -> Result<Option<Session>, Error> {
        let sessions = self.engine.with_client(Client::list_sessions)?;
        Ok(sessions
            .into_iter()
            .filter(|s| s.title == title)
            .max_by_key(|s| s.time.updated))
    }

    /// The session for `key`: the recorded one when it is active or was
    /// interrupted by a server crash and the server still has it, and
    /// `model` is the one it was made with; else a fresh one (the old entry
    /// marked crashed). A key never recorded adopts the server's session of
    /// that title, else creates one; one whose sessions were all closed
    /// (deleted by the user) creates one.
    pub fn ensure(
        &self,
        key: &SessionKey,
        model: Option<&ModelRef>,
    ) -> Result<SessionEntry, Error> {
        let title = key.title();
        let wanted = model_text(model);
        if let Some(entry) = self.registry.get(&title)? {
            if usable(&entry, wanted.as_ref()) {
                // Whether the server still has it, by reading its newest
                // message (404 when it is gone); the read also tells the
                // demultiplexer that message, which the next prompt's ID
                // sorts after.
                match self.engine.newest_message(&entry.session_id) {
                    Ok(_) => return self.resumed(entry),
                    Err(Error::Api(e)) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            return self.create(key, model);
        }
        // Recorded before, and all closed: the user deleted its session,
        // so it starts afresh (the server may still have an older one of
        // that title, crashed: not that).
        if self.registry.entries()?.iter().any(|e| e.key == title) {
            return self.create(key, model);
        }
        if let Some(session) = self.find_by_title(&title)? {
            let entry = SessionEntry {
                key: title.clone(),
                session_id: session.id,
                title,
                status: SessionState::Active,
                model: wanted,
                usage: Usage::default(),
                turns: 0,
                created: now_ms(),
                last_active: 0,
            };
            self.registry.record(entry.clone())?;
            return Ok(entry);
        }
        self.create(key, model)
    }

    /// Sends `request` to `key`'s session: the recorded one when it may be
    /// resumed (as [`ensure`](Sessions::ensure) decides) without asking
    /// the server first whether it still has it; when the server answers
    /// the send with "not found", the prompt goes to a fresh session (the
    /// old entry marked crashed). A key never recorded is ensured first,
    /// and so is the session of a retry by message ID (see
    /// [`prompt_in`](Sessions::prompt_in)).
    pub fn prompt(
        &self,
        key: &SessionKey,
        model: Option<&ModelRef>,
        request: PromptRequest,
    ) -> Result<(SessionEntry, Turn), Error> {
        let recorded = match self.registry.get(&key.title())? {
            Some(entry)
                if request.message_id.is_none() && usable(&entry, model_text(model).as_ref()) =>
            {
                entry
            }
            _ => return self.prompt_in(key, self.ensure(key, model)?, request),
        };
        // Marked active before the send: a registry that cannot be
        // written fails the prompt before it is sent, never after (a
        // delivered turn must not be dropped).
        let recorded = self.resumed(recorded)?;
        match self.engine.prompt(&recorded.session_id, request.clone()) {
            Ok(turn) => Ok((recorded, turn)),
            // The server no longer has it.
            Err(Error::Api(e)) if e.is_not_found() => {
                let fresh = self.create(key, model)?;
                let turn = self.engine.prompt(&fresh.session_id, request)?;
                Ok((fresh, turn))
            }
            Err(e) => Err(e),
        }
    }

    /// Sends `request` to `entry`, a session of `key`. A retry by message
    /// ID (the request carries it) is never sent twice: when an older
    /// session of `key` holds that ID (it was sent there before the key got
    /// a new session), it is taken back from there first, and when it was
    /// answered there, the turn is that stored reply and nothing is sent.
    pub fn prompt_in(
        &self,
        key: &SessionKey,
        entry: SessionEntry,
        request: PromptRequest,
    ) -> Result<(SessionEntry, Turn), Error> {
        if let Some(id) = &request.message_id
            && let Some(old) = self.locate(key, id)?
            && old != entry.session_id
            && self.engine.withdraw(&old, id)?.is_some()
            && let Some(old) = self.registry.by_session(&old)?
        {
            // Answered there: the engine gives that reply, sending nothing.
            let turn = self.engine.prompt(&old.session_id, request)?;
            return Ok((old, turn));
        }
        let turn = self.engine.prompt(&entry.session_id, request)?;
        Ok((entry, turn))
    }

    /// `entry`, resumed: marked active (again, after an interruption).
    fn resumed(&self, entry: SessionEntry) -> Result<SessionEntry, Error> {
        if entry.status != SessionState::Active {
            self.registry
                .set_status(&entry.session_id, SessionState::Active)?;
        }
        Ok(SessionEntry {
            status: SessionState::Active,
            ..entry
        })
    }

    /// The registry merged with the server's sessions of the project.
    pub fn list(&self) -> Result<Vec<SessionView>, Error> {
        let mut server = self.engine.with_client(Client::list_sessions)?;
        let mut views = Vec::new();
        for entry in self.registry.entries()? {
            let session = server
                .iter()
                .position(|s| s.id == entry.session_id)
                .map(|i| server.remove(i));
            views.push(SessionView {
                entry: Some(entry),
                session,
            });
        }
        views.extend(server.into_iter().map(|s| SessionView {
            entry: None,
            session: Some(s),
        }));
        Ok(views)
    }

    /// Deletes a session on the server and marks it closed in the registry.
    pub fn delete(&self, session_id: &SessionId) -> Result<(), Error> {
        match self.engine.with_client(|c| c.delete_session(session_id)) {
            Ok(_) => {}
            Err(Error::Api(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.registry.set_status(session_id, SessionState::Closed)?;
        Ok(())
    }

    /// The recorded session of `key` (newest first, crashed ones too)
    /// that holds `message_id`: where a prompt retried by its ID was sent.
    pub fn locate(
        &self,
        key: &SessionKey,
        message_id: &MessageId,
    ) -> Result<Option<SessionId>, Error> {
        let title = key.title();
        for entry in self
            .registry
            .entries()?
            .into_iter()
            .rev()
            .filter(|e| e.key == title)
        {
            match self
                .engine
                .with_client(|c| c.get_message(&entry.session_id, message_id))
            {
                Ok(_) => return Ok(Some(entry.session_id)),
                Err(Error::Api(e)) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The recorded session under `key`, if any.
    pub fn get(&self, key: &SessionKey) -> Result<Option<SessionEntry>, Error> {
        self.registry.get(&key.title())
    }
}
