//! Session and message IDs as types of their own, and IDs in OpenCode's
//! own format made by the client.
//!
//! OpenCode's `Identifier.ascending` builds `prefix_` + 12 hex digits + 14
//! random base62 characters. The hex digits are the low 48 bits of
//! `timestamp_ms * 0x1000 + counter`, where the counter restarts at 1 in each
//! millisecond; so IDs made later sort after earlier ones as strings (the 48
//! bits wrap about every 2.2 years, for the server's IDs just the same). A
//! prompt sent with a client-made `messageID` must sort after the session's
//! earlier messages, and a retry with the same ID does not start a second
//! turn: that is what makes delivery verifiable without duplicates.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Defines a string ID newtype. Both IDs behave alike; the point of two
/// types is that a message ID can never be passed where a session ID goes.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an ID as the server spells it. Nothing is checked: the
            /// server decides what its IDs look like.
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            /// The ID as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The ID as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }

            /// True for the empty ID a decoder fills in when the server left
            /// the field out.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Lets a map keyed by IDs be searched with a `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }

        // Builders take `impl Into<Id>`; this lets them take `&id` too.
        impl From<&$name> for $name {
            fn from(id: &$name) -> Self {
                id.clone()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_id! {
    /// A session ID (`ses_...`).
    ///
    /// ```
    /// use opencode_api::SessionId;
    /// let id = SessionId::from("ses_1");
    /// assert_eq!(id, "ses_1");
    /// assert_eq!(id.to_string(), "ses_1");
    /// assert_eq!(serde_json::to_string(&id).unwrap(), r#""ses_1""#);
    /// ```
    SessionId
}

string_id! {
    /// A message ID (`msg_...`); make one with [`new_message_id`].
    ///
    /// IDs made by OpenCode and by [`new_message_id`] sort by time as
    /// strings, and so do these.
    ///
    /// ```
    /// use opencode_api::MessageId;
    /// let id: MessageId = serde_json::from_str(r#""msg_1""#).unwrap();
    /// assert_eq!(id.as_str(), "msg_1");
    /// assert!(id < MessageId::from("msg_2"));
    /// ```
    MessageId
}

const HEX_DIGITS: usize = 12;
const RANDOM_CHARS: usize = 14;
const LOW_48_BITS: u64 = 0xffff_ffff_ffff;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The last time value handed out in this process (full width, before the
/// 48-bit cut), so IDs stay strictly increasing even when the clock steps
/// back or more than 4095 IDs are made in one millisecond.
static LAST_VALUE: Mutex<u64> = Mutex::new(0);

/// A new message ID (`msg_...`) that sorts after every ID made before it in
/// this process and after the server's IDs of earlier times.
///
/// ```
/// let a = opencode_api::new_message_id();
/// let b = opencode_api::new_message_id();
/// assert!(a.as_str().starts_with("msg_") && a.as_str().len() == 30);
/// assert!(b > a);
/// ```
pub fn new_message_id() -> MessageId {
    MessageId(ascending_id("msg"))
}

/// A new part ID (`prt_...`), see [`new_message_id`].
pub fn new_part_id() -> String {
    ascending_id("prt")
}

/// A new message ID that also sorts after `previous` (for example the
/// session's newest message, written by a server whose clock is ahead).
///
/// ```
/// use opencode_api::{MessageId, new_message_id_after};
/// let ahead = MessageId::from("msg_ffffffff0000AAAAAAAAAAAAAA");
/// let id = new_message_id_after(&ahead);
/// assert!(id > ahead);
/// ```
pub fn new_message_id_after(previous: &MessageId) -> MessageId {
    let floor = id_value(previous.as_str()).map(|v| v + 1);
    let value = next_value(now_ms(), floor);
    MessageId(format_id("msg", value, &random_base62(RANDOM_CHARS)))
}

/// A new ID with any prefix (`msg`, `prt`, ...), see [`new_message_id`].
pub fn ascending_id(prefix: &str) -> String {
    let value = next_value(now_ms(), None);
    format_id(prefix, value, &random_base62(RANDOM_CHARS))
}

/// The 48-bit time value encoded in an ascending ID, if it has the format.
pub fn id_value(id: &str) -> Option<u64> {
    let (_, rest) = id.split_once('_')?;
    let hex = rest.get(..HEX_DIGITS)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The next full-width value: at least `now_ms * 0x1000 + 1` (what OpenCode
/// makes first in that millisecond), above the last one handed out, and with
/// its low 48 bits at or above `floor` when one is given.
fn next_value(now_ms: u64, floor: Option<u64>) -> u64 {
    let mut last = LAST_VALUE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut value = now_ms
        .saturating_mul(0x1000)
        .saturating_add(1)
        .max(last.saturating_add(1));
    if let Some(floor) = floor
        && (value & LOW_48_BITS) < floor
        && floor <= LOW_48_BITS
    {
        value = (value & !LOW_48_BITS) | floor;
    }
    *last = value;
    value
}

fn format_id(prefix: &str, value: u64, random: &str) -> String {
    format!("{prefix}_{:012x}{random}", value & LOW_48_BITS)
}

/// Random base62 text. Uniqueness comes from the time value already; these
/// characters only make IDs of the same millisecond in different processes
/// distinct, so std's randomly keyed SipHash is enough.
fn random_base62(len: usize) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let keys = RandomState::new();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut hasher = keys.build_hasher();
        hasher.write_u64(SEQUENCE.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let mut word = hasher.finish();
        // 62^10 < 2^64: ten digits per word, with negligible bias.
        for _ in 0..10 {
            if out.len() == len {
                break;
            }
            out.push(BASE62[(word % 62) as usize] as char);
            word /= 62;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_matches_opencode() {
        // From the captured stream: the assistant message created at
        // 1795253292934 ms has the ID msg_1fd6f4f86001CXL4QHpClWwwJF.
        let id = format_id("msg", 1795253292934 * 0x1000 + 1, "CXL4QHpClWwwJF");
        assert_eq!(id, "msg_1fd6f4f86001CXL4QHpClWwwJF");
    }

    #[test]
    fn made_ids_have_the_shape_and_grow() {
        let mut previous = String::new();
        for _ in 0..10_000 {
            let id = new_message_id().into_string();
            assert_eq!(id.len(), 4 + HEX_DIGITS + RANDOM_CHARS, "{id}");
            assert!(id[4..16].bytes().all(|b| b"0123456789abcdef".contains(&b)));
            assert!(id[16..].bytes().all(|b| BASE62.contains(&b)));
            assert!(id > previous, "{id} <= {previous}");
            previous = id;
        }
    }

    #[test]
    fn after_jumps_over_a_future_id() {
        let future = MessageId(format_id(
            "msg",
            (now_ms() + 3_600_000) * 0x1000 + 7,
            "zzzzzzzzzzzzzz",
        ));
        let id = new_message_id_after(&future);
        assert!(id > future, "{id} <= {future}");
        assert_eq!(
            id_value(id.as_str()),
            id_value(future.as_str()).map(|v| v + 1)
        );
        // Later IDs keep sorting after it.
        assert!(new_message_id() > id);
    }

    #[test]
    fn ids_compare_with_strings_and_look_up_maps_by_str() {
        let id = SessionId::from("ses_1");
        assert_eq!(id, "ses_1");
        assert_eq!("ses_1", id);
        assert_eq!(id, *"ses_1");
        assert_eq!(String::from("ses_1"), id);
        assert_ne!(id, "ses_2");
        assert_eq!(String::from(id.clone()), "ses_1");
        let map = std::collections::HashMap::from([(id.clone(), 1)]);
        assert_eq!(map.get("ses_1"), Some(&1));
        let decoded: Vec<MessageId> = serde_json::from_str(r#"["msg_a","msg_b"]"#).unwrap();
        assert_eq!(decoded, [MessageId::new("msg_a"), MessageId::new("msg_b")]);
        assert!(serde_json::from_str::<SessionId>("7").is_err());
    }

    #[test]
    fn id_value_reads_the_hex() {
        assert_eq!(
            id_value("msg_1fd6f4f86001CXL4QHpClWwwJF"),
            Some(0x1fd6f4f86001)
        );
        assert_eq!(id_value("msg_xyz"), None);
        assert_eq!(id_value("nounderscore"), None);
    }
}
