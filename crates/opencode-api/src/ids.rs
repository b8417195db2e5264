//! Identifiers in OpenCode's own format, made by the client.
//!
//! OpenCode's `Identifier.ascending` builds `prefix_` + 12 hex digits + 14
//! random base62 characters. The hex digits are the low 48 bits of
//! `timestamp_ms * 0x1000 + counter`, where the counter restarts at 1 in each
//! millisecond; so IDs made later sort after earlier ones as strings (the 48
//! bits wrap about every 2.2 years, for the server's IDs just the same). A
//! prompt sent with a client-made `messageID` must sort after the session's
//! earlier messages, and a retry with the same ID does not start a second
//! turn: that is what makes delivery verifiable without duplicates.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
/// assert!(a.starts_with("msg_") && a.len() == 30);
/// assert!(b > a);
/// ```
pub fn new_message_id() -> String {
    ascending_id("msg")
}

/// A new part ID (`prt_...`), see [`new_message_id`].
pub fn new_part_id() -> String {
    ascending_id("prt")
}

/// A new message ID that also sorts after `previous` (for example the
/// session's newest message, written by a server whose clock is ahead).
///
/// ```
/// let ahead = "msg_ffffffff0000AAAAAAAAAAAAAA";
/// let id = opencode_api::new_message_id_after(ahead);
/// assert!(id.as_str() > ahead);
/// ```
pub fn new_message_id_after(previous: &str) -> String {
    let floor = id_value(previous).map(|v| v + 1);
    let value = next_value(now_ms(), floor);
    format_id("msg", value, &random_base62(RANDOM_CHARS))
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
            let id = new_message_id();
            assert_eq!(id.len(), 4 + HEX_DIGITS + RANDOM_CHARS, "{id}");
            assert!(id[4..16].bytes().all(|b| b"0123456789abcdef".contains(&b)));
            assert!(id[16..].bytes().all(|b| BASE62.contains(&b)));
            assert!(id > previous, "{id} <= {previous}");
            previous = id;
        }
    }

    #[test]
    fn after_jumps_over_a_future_id() {
        let future = format_id("msg", (now_ms() + 3_600_000) * 0x1000 + 7, "zzzzzzzzzzzzzz");
        let id = new_message_id_after(&future);
        assert!(id > future, "{id} <= {future}");
        assert_eq!(id_value(&id), id_value(&future).map(|v| v + 1));
        // Later IDs keep sorting after it.
        assert!(new_message_id() > id);
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
