//! A turn's prompt sent as a blocking `POST /session/{id}/message` on a
//! thread of its own. The server answers it (with the turn's last
//! assistant message) as soon as the turn ends, 15 to 25 ms before its
//! event stream tells the same (measured with the offline model: the
//! stream lags behind the turn), so the turn can end then. Closing the
//! connection does not stop the server's turn (measured too).

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use opencode_api::{CancelToken, Client, PromptReply, PromptRequest, SessionId};

use crate::demux::Routed;

type Answer = Result<PromptReply, opencode_api::Error>;

/// The thread of one send. Dropping it closes the connection and joins
/// the thread (at once: the blocked read is woken by the shutdown).
#[derive(Debug)]
pub(crate) struct Waiter {
    /// Which send of the turn this is (its [`Routed::Answered`]).
    pub(crate) send: u64,
    cancel: CancelToken,
    answer: Arc<Mutex<Option<Answer>>>,
    thread: Option<JoinHandle<()>>,
}

impl Waiter {
    /// Sends `request` on a new thread; when the server answers, the
    /// answer is kept for [`take`](Waiter::take) and `wake` is told
    /// `Routed::Answered(send)`. `Err` when no thread could be made.
    pub(crate) fn start(
        client: Client,
        session: SessionId,
        request: PromptRequest,
        send: u64,
        wake: Sender<Routed>,
    ) -> std::io::Result<Waiter> {
        let cancel = CancelToken::new();
        let answer: Arc<Mutex<Option<Answer>>> = Arc::default();
        let thread = {
            let (cancel, answer) = (cancel.clone(), Arc::clone(&answer));
            std::thread::Builder::new()
                .name("ocm-turn-send".into())
                .spawn(move || {
                    let got = client.prompt_with_cancel(&session, &request, &cancel);
                    *lock(&answer) = Some(got);
                    let _ = wake.send(Routed::Answered(send));
                })?
        };
        Ok(Waiter {
            send,
            cancel,
            answer,
            thread: Some(thread),
        })
    }

    /// The server's answer, once it came (taken once).
    pub(crate) fn take(&self) -> Option<Answer> {
        lock(&self.answer).take()
    }

    /// The send's error, when it failed (taken); a reply stays for
    /// [`take`](Waiter::take).
    pub(crate) fn take_error(&self) -> Option<opencode_api::Error> {
        let mut answer = lock(&self.answer);
        match answer.take() {
            Some(Err(e)) => Some(e),
            other => {
                *answer = other;
                None
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
