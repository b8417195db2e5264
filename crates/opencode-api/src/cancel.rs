//! Cancelling a blocking call from another thread.

use std::sync::{Arc, Mutex, MutexGuard};
use ureq::Agent;

/// Cancels the calls it is passed to, from any thread.
///
/// A call made with a token runs on its own connection (a ureq `Agent` of its
/// own); [`cancel`](CancelToken::cancel) shuts that connection down, which
/// wakes the blocked read at once, and the call returns
/// [`Error::Cancelled`](crate::Error::Cancelled). A token stays cancelled:
/// calls started with it afterwards fail at once. Clones share the state.
///
/// ```no_run
/// use opencode_api::{CancelToken, Client, PromptRequest, SessionId};
/// let client = Client::new("http://127.0.0.1:4096")?;
/// let session = SessionId::from("ses_...");
/// let token = CancelToken::new();
/// let for_ui = token.clone();
/// std::thread::spawn(move || { /* on Ctrl-C: */ for_ui.cancel(); });
/// match client.prompt_with_cancel(&session, &PromptRequest::text("hi"), &token) {
///     Err(opencode_api::Error::Cancelled { .. }) => eprintln!("cancelled"),
///     other => println!("{:?}", other.map(|reply| reply.text())),
/// }
/// # Ok::<(), opencode_api::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    state: Arc<Mutex<CancelState>>,
}

#[derive(Debug, Default)]
struct CancelState {
    cancelled: bool,
    next_id: u64,
    /// The agents of calls in flight, by registration id.
    agents: Vec<(u64, Agent)>,
}

/// Unregisters a call's agent when the call ends, however it ends.
pub(crate) struct Registration<'a> {
    token: &'a CancelToken,
    id: u64,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels every call in flight with this token and every later one.
    /// Returns at once; the calls return `Error::Cancelled` shortly after.
    pub fn cancel(&self) {
        let agents = {
            let mut state = self.lock();
            state.cancelled = true;
            std::mem::take(&mut state.agents)
        };
        for (_, agent) in agents {
            agent.shutdown();
        }
    }

    /// True once [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Registers the agent of a call; `None` when already cancelled.
    pub(crate) fn register(&self, agent: &Agent) -> Option<Registration<'_>> {
        let mut state = self.lock();
        if state.cancelled {
            return None;
        }
        state.next_id += 1;
        let id = state.next_id;
        state.agents.push((id, agent.clone()));
        Some(Registration { token: self, id })
    }

    fn lock(&self) -> MutexGuard<'_, CancelState> {
        // The state stays consistent even if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.token.lock().agents.retain(|(id, _)| *id != self.id);
    }
}
