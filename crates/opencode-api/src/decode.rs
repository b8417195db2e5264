//! JSON decoding that says where it failed.
//!
//! serde_json reports a line and column for a failed decode but not the field.
//! We turn that position back into a path (`$.parts[2].time.start`) by
//! scanning the text up to it. That is exact for errors serde_json raises
//! itself (a wrong type, a missing field of a derived struct).
//!
//! Types that decode through a [`serde_json::Value`] (to keep unknown
//! variants) raise their errors after the value was consumed, so serde_json
//! places them just after that field's value, or, when the field is the last
//! of its object, after the object's end, which loses the field. So:
//! - those types, and the fields and sequences that hold them ([`field`],
//!   [`seq_field`]), carry their own relative path in the error message
//!   ([`nested_error`]), starting with the field's name;
//! - a failure is located on a copy of the document printed with one extra
//!   member at the end of every object, so a failing field is never the last
//!   and the position always ends right after its value; the field's name,
//!   then in both the outer and the inner path, is counted once.

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::Value;
use std::fmt;

/// Separates an inner path from the message in a custom serde error.
const PATH_MARK: char = '\u{1f}';

/// Where and why a decode failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeFailure {
    /// JSONPath-like location, `$` for the top level.
    pub(crate) path: String,
    /// serde's message, with the line and column when it has them.
    pub(crate) message: String,
}

/// The member added at the end of every object of the locating copy.
const SENTINEL_MEMBER: &str = "\"\\u0001\":0";

/// Decodes `text` as `T`, locating a failure as a path.
pub(crate) fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, DecodeFailure> {
    let value: Value = serde_json::from_str(text).map_err(|e| describe(text, &e))?;
    from_value(&value)
}

/// Decodes an already parsed value as `T`. On failure the value is printed
/// again (see the module doc) and decoded from text, only to learn the
/// position for the path.
pub(crate) fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, DecodeFailure> {
    match T::deserialize(value) {
        Ok(v) => Ok(v),
        Err(first) => {
            let mut text = String::new();
            write_locating_copy(value, &mut text);
            match serde_json::from_str::<T>(&text) {
                Err(e) => Err(describe(&text, &e)),
                // Not expected (same data); keep the first message anyway.
                Ok(_) => Err(split_inner("$", &first.to_string())),
            }
        }
    }
}

/// Prints `value` as JSON with [`SENTINEL_MEMBER`] closing every object.
fn write_locating_copy(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            for (key, member) in map {
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_locating_copy(member, out);
                out.push(',');
            }
            out.push_str(SENTINEL_MEMBER);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_locating_copy(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Turns an inner failure into a custom serde error that carries its path, so
/// the decoder of the enclosing document can prefix its own path.
pub(crate) fn nested_error<E: de::Error>(failure: DecodeFailure) -> E {
    let inner = failure.path.strip_prefix('$').unwrap_or(&failure.path);
    E::custom(format_args!(
        "{PATH_MARK}{inner}{PATH_MARK}{}",
        failure.message
    ))
}

/// `deserialize_with` helper body for a field `name` whose type decodes
/// through a `Value`: the field's name goes into the path of a failure.
pub(crate) fn field<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
    name: &str,
) -> Result<T, D::Error> {
    let value = Value::deserialize(d)?;
    from_value(&value).map_err(|f| nested_error(prefixed(&format!(".{name}"), f)))
}

/// Like [`field`] for a sequence: the element's index goes into the path.
pub(crate) fn seq_field<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
    name: &str,
) -> Result<Vec<T>, D::Error> {
    let values = Vec::<Value>::deserialize(d)?;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            from_value(v).map_err(|f| nested_error(prefixed(&format!(".{name}[{i}]"), f)))
        })
        .collect()
}

/// Decodes a whole document that is a map of values of `T`, locating a
/// failure by its key.
pub(crate) fn map_from_str<T: DeserializeOwned>(
    text: &str,
) -> Result<std::collections::BTreeMap<String, T>, DecodeFailure> {
    let values: std::collections::BTreeMap<String, Value> = from_str(text)?;
    values
        .into_iter()
        .map(|(k, v)| match from_value(&v) {
            Ok(t) => Ok((k, t)),
            Err(f) => Err(prefixed(&key_segment(&k), f)),
        })
        .collect()
}

/// Puts `prefix` (relative, like `.parts[2]`) in front of a failure's path.
pub(crate) fn prefixed(prefix: &str, failure: DecodeFailure) -> DecodeFailure {
    let inner = failure.path.strip_prefix('$').unwrap_or(&failure.path);
    DecodeFailure {
        path: format!("${prefix}{inner}"),
        message: failure.message,
    }
}

fn key_segment(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_string()))
    }
}

fn describe(text: &str, err: &serde_json::Error) -> DecodeFailure {
    let position = if err.line() == 0 {
        None
    } else {
        Some(byte_offset(text, err.line(), err.column()))
    };
    let outer = match position {
        Some(offset) if !err.is_syntax() && !err.is_eof() => path_at(text, offset),
        _ => "$".to_string(),
    };
    // serde_json appends " at line L column C"; keep it only for syntax errors,
    // where it is the best location there is.
    let mut message = err.to_string();
    if !(err.is_syntax() || err.is_eof())
        && let Some(cut) = message.rfind(" at line ")
    {
        message.truncate(cut);
    }
    split_inner(&outer, &message)
}

fn split_inner(outer: &str, message: &str) -> DecodeFailure {
    let mut parts = message.splitn(3, PATH_MARK);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(""), Some(inner), Some(rest)) => {
            // The position ends right after the failing field's value, so the
            // outer path ends with the field that the inner one starts with.
            let first = first_segment(inner);
            let outer = match outer.strip_suffix(first) {
                Some(stripped) if !first.is_empty() => stripped,
                _ => outer,
            };
            DecodeFailure {
                path: format!("{outer}{inner}"),
                message: rest.to_string(),
            }
        }
        _ => DecodeFailure {
            path: outer.to_string(),
            message: message.to_string(),
        },
    }
}

/// The first segment of a relative path: `.parts` of `.parts[2].text`,
/// `["a b"]` of `["a b"].x`.
fn first_segment(path: &str) -> &str {
    let bytes = path.as_bytes();
    match bytes.first() {
        Some(b'.') => {
            let end = path[1..].find(['.', '[']).map_or(path.len(), |i| i + 1);
            &path[..end]
        }
        Some(b'[') => {
            // A quoted key may contain `]`; skip over the JSON string.
            let mut i = 1;
            if bytes.get(1) == Some(&b'"') {
                i = string_end(bytes, 1);
            }
            match path[i..].find(']') {
                Some(j) => &path[..i + j + 1],
                None => path,
            }
        }
        _ => "",
    }
}

/// Byte offset just past the character serde_json names by a 1-based line
/// and column.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    (start + column).min(text.len())
}

enum Frame {
    Object { key: Option<String>, in_value: bool },
    Array { index: usize },
}

/// The path of the innermost value that contains or ends at `end` (exclusive).
pub(crate) fn path_at(text: &str, end: usize) -> String {
    let bytes = text.as_bytes();
    let end = end.min(bytes.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'{' => stack.push(Frame::Object {
                key: None,
                in_value: false,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { key, in_value }) => {
                    *key = None;
                    *in_value = false;
                }
                None => {}
            },
            b':' => {
                if let Some(Frame::Object { in_value, .. }) = stack.last_mut() {
                    *in_value = true;
                }
            }
            b'"' => {
                let close = string_end(bytes, i);
                if let Some(Frame::Object {
                    key,
                    in_value: false,
                }) = stack.last_mut()
                {
                    let raw = &text[i + 1..close.saturating_sub(1).max(i + 1)];
                    *key = Some(
                        serde_json::from_str(&format!("\"{raw}\""))
                            .unwrap_or_else(|_| raw.to_string()),
                    );
                }
                i = close;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::from("$");
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(k), .. } => path.push_str(&key_segment(k)),
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// Index just past the closing quote of the string starting at `open`.
fn string_end(bytes: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The short name of a type for messages: `Vec<Session>`, not
/// `alloc::vec::Vec<opencode_api::types::Session>`.
pub(crate) fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut word = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(&word));
    out
}

/// Lenient numbers: the schema says "number" for counts and times, so a
/// float or a null must not fail a whole message.
pub(crate) mod num {
    use super::*;

    struct Lenient;

    impl Visitor<'_> for Lenient {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number or null")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    struct LenientU64;

    impl Visitor<'_> for LenientU64 {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative number or null")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && v >= 0.0 {
                // Truncation is the intent: these are counts and milliseconds.
                Ok(Some(v as u64))
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    /// A count or a time in ms; null counts as 0.
    pub(crate) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Ok(d.deserialize_any(LenientU64)?.unwrap_or(0))
    }

    /// An optional count or time in ms.
    pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(LenientU64)
    }

    /// A cost; null counts as 0.
    pub(crate) fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(d.deserialize_any(Lenient)?.unwrap_or(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        start: u64,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
    }

    #[test]
    fn type_error_path_names_the_field() {
        let text = r#"{"name":"x","items":[{"start":1},{"start":"late"}]}"#;
        let f = from_str::<Outer>(text).unwrap_err();
        assert_eq!(f.path, "$.items[1].start");
        assert!(f.message.contains("invalid type"), "{f:?}");
    }

    #[test]
    fn missing_field_path_names_the_object() {
        let text = "{\n  \"name\": \"x\",\n  \"items\": [ {\"start\": 1}, {} ]\n}";
        let f = from_str::<Outer>(text).unwrap_err();
        assert_eq!(f.path, "$.items[1]");
        assert_eq!(f.message, "missing field `start`");
    }

    #[test]
    fn syntax_error_keeps_line_and_column() {
        let f = from_str::<Outer>("{\"name\": \"x\",\n oops}").unwrap_err();
        assert_eq!(f.path, "$");
        assert!(f.message.contains("line 2"), "{f:?}");
    }

    #[test]
    fn odd_keys_are_quoted_and_escapes_skipped() {
        let text = r#"{"a b":{"q\"x":[0,{"k":true}]}}"#;
        let end = text.find("true").unwrap() + 4;
        assert_eq!(path_at(text, end), r#"$["a b"]["q\"x"][1].k"#);
    }

    #[test]
    fn inner_paths_join_the_outer_one() {
        #[derive(Debug)]
        struct ViaValue;
        impl<'de> Deserialize<'de> for ViaValue {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = Value::deserialize(d)?;
                from_value::<Inner>(&v).map_err(nested_error)?;
                Ok(ViaValue)
            }
        }
        fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ViaValue>, D::Error> {
            seq_field(d, "list")
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            n: u8,
            #[serde(deserialize_with = "list")]
            list: Vec<ViaValue>,
        }
        let text = r#"[{"n":1,"list":[]},{"n":2,"list":[{"start":2},{"start":-1}]}]"#;
        let f = from_str::<Vec<Doc>>(text).unwrap_err();
        assert_eq!(f.path, "$[1].list[1].start");
        assert!(f.message.contains("invalid value"), "{f:?}");

        let f = map_from_str::<Doc>(r#"{"a":{"n":1,"list":[]},"b c":{"n":1,"list":[{}]}}"#)
            .unwrap_err();
        assert_eq!(f.path, r#"$["b c"].list[0]"#);
        assert_eq!(f.message, "missing field `start`");
    }

    #[test]
    fn short_type_names() {
        assert_eq!(short_type_name::<Vec<Outer>>(), "Vec<Outer>");
        assert_eq!(
            short_type_name::<std::collections::BTreeMap<String, u8>>(),
            "BTreeMap<String, u8>"
        );
    }

    #[test]
    fn lenient_numbers() {
        #[derive(Deserialize)]
        struct N {
            #[serde(deserialize_with = "num::u64")]
            a: u64,
            #[serde(deserialize_with = "num::u64")]
            b: u64,
            #[serde(default, deserialize_with = "num::opt_u64")]
            c: Option<u64>,
            #[serde(deserialize_with = "num::f64")]
            d: f64,
        }
        let n: N = serde_json::from_str(r#"{"a":3.9,"b":null,"d":1}"#).unwrap();
        assert_eq!((n.a, n.b, n.c, n.d), (3, 0, None, 1.0));
        assert!(serde_json::from_str::<N>(r#"{"a":-1,"b":0,"d":0}"#).is_err());
    }
}
