//! Exactly-once delivery of a prompt: a client-made message ID, sent by
//! the turn ([`Sending`]), verified with the event stream or
//! `GET .../message/{id}`; on a transport failure or a server restart the
//! ID is looked up before anything is sent again (answered: done; stored but unanswered: deleted with its partial
//! reply, then sent again with the same ID; not stored: sent again).

use std::time::{Duration, Instant};

use opencode_api::{Client, MessageId, MessageWithParts, PromptRequest, SessionId};

use crate::Error;
use crate::tracker::{Settled, TurnDone, settle};

/// How a prompt is delivered: tries, the pause between them, how long the
/// server may take to store a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (at least 1). Default 3.
    pub tries: u32,
    /// Pause between tries. Default 2 s.
    pub delay: Duration,
    /// How long after a send the message must be stored. Default 5 s.
    pub verify_within: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            tries: 3,
            delay: Duration::from_secs(2),
            verify_within: Duration::from_secs(5),
        }
    }
}

/// The result of a delivery.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// The prompt is stored and its turn runs (or is about to).
    Sent,
    /// The prompt had been answered already (a retry by ID): the reply,
    /// and the session's messages it was read from.
    Answered(Box<TurnDone>, Vec<MessageWithParts>),
}

/// Where a delivery gets the server from: once at first, fresh (the server
/// ensured, maybe restarted) before each retry.
pub(crate) trait ServerSource {
    fn client(&self, fresh: bool) -> Result<Client, Error>;
}

/// How a try hands the prompt to the server and learns it is stored.
pub(crate) trait Sending {
    /// Sends `request` to `session` through `client` and returns at once
    /// (the answer comes to the turn when its turn ends). What the stream
    /// told before this send (a copy deleted before it) does not count as
    /// this send stored.
    fn send(
        &mut self,
        client: &Client,
        session: &SessionId,
        request: &PromptRequest,
    ) -> Result<(), Error>;

    /// Waits until the message is stored (the stream told its
    /// `message.updated`, or the send was answered), at most until
    /// `until`: true when it is; the send's error when it failed first.
    fn stored(&mut self, until: Instant) -> Result<bool, Error>;
}

/// Delivers `request` (which carries `message_id`) to `session` exactly
/// once. `look_first`: the ID may have been sent before (a caller's retry).
/// The message counts as stored when `sending` says so or
/// `GET .../message/{id}` finds it.
/// Blocks at most about `tries * (delay + verify_within + request timeouts)`.
pub(crate) fn deliver(
    source: &dyn ServerSource,
    policy: &RetryPolicy,
    session: &SessionId,
    message_id: &MessageId,
    request: &PromptRequest,
    look_first: bool,
    sending: &mut dyn Sending,
) -> Result<Delivery, Error> {
    let mut look_first = look_first;
    let mut last = String::from("no try made");
    let tries = policy.tries.max(1);
    for attempt in 1..=tries {
        if attempt > 1 {
            std::thread::sleep(policy.delay);
            look_first = true;
        }
        let client = match source.client(attempt > 1) {
            Ok(client) => client,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        match try_once(
            &client, policy, session, message_id, request, look_first, sending,
        ) {
            Ok(Some(delivery)) => return Ok(delivery),
            Ok(None) => last = format!("not stored within {:?}", policy.verify_within),
            Err(Error::Api(e)) if e.is_unreachable() => last = e.to_string(),
            Err(e) => return Err(e),
        }
    }
    Err(Error::Undelivered {
        session_id: session.clone(),
        message_id: message_id.clone(),
        attempts: tries,
        last,
    })
}

/// One try; `Ok(None)` when the message was not stored in time.
fn try_once(
    client: &Client,
    policy: &RetryPolicy,
    session: &SessionId,
    message_id: &MessageId,
    request: &PromptRequest,
    look_first: bool,
    sending: &mut dyn Sending,
) -> Result<Option<Delivery>, Error> {
    if look_first {
        let messages = client.list_messages(session, None)?;
        match settle(session, message_id, &messages) {
            Settled::Done(done) => return Ok(Some(Delivery::Answered(done, messages))),
            Settled::NotStored => {}
            Settled::Unanswered { partial } => {
                let busy = client
                    .session_status()?
                    .get(session)
                    .is_some_and(|s| s.is_active());
                if busy {
                    // Its turn still runs on this server: follow it.
                    return Ok(Some(Delivery::Sent));
                }
                clear(client, session, message_id, &partial)?;
            }
            Settled::Failed(_) => {
                let partial: Vec<MessageId> = messages
                    .iter()
                    .filter_map(|m| m.info.as_assistant())
                    .filter(|a| a.parent_id.as_ref() == Some(message_id))
                    .map(|a| a.id.clone())
                    .collect();
                clear(client, session, message_id, &partial)?;
            }
        }
    }
    sending.send(client, session, request)?;
    let verified = verify(client, session, message_id, policy.verify_within, sending)?;
    Ok(verified.then_some(Delivery::Sent))
}

/// Deletes a partial reply (newest first), then the prompt.
fn clear(
    client: &Client,
    session: &SessionId,
    message_id: &MessageId,
    partial: &[MessageId],
) -> Result<(), Error> {
    for id in partial.iter().rev().chain(std::iter::once(message_id)) {
        match client.delete_message(session, id) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Waits for the message to be stored, until `within` passes: told by
/// `sending` at once, else found by `GET` (after a first wait for it, then
/// between further waits).
fn verify(
    client: &Client,
    session: &SessionId,
    message_id: &MessageId,
    within: Duration,
    sending: &mut dyn Sending,
) -> Result<bool, Error> {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(100);
    loop {
        if sending.stored(deadline.min(Instant::now() + pause))? {
            return Ok(true);
        }
        match client.get_message(session, message_id) {
            Ok(_) => return Ok(true),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
