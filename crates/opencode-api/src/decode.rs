//! JSON decoding that says where it failed.
//!
//! A document is decoded straight into its type. Only when that fails is it
//! parsed into a [`Value`] to learn where: serde_json reports a line and
//! column but not the field, so the value is printed again with one value
//! (or an object's or array's opening or closing) per line, remembering each
//! line's path, and decoded from that copy. The line of the error is the
//! failing value's line: its scalar, the opening of a value of the wrong kind,
//! or the closing of an object that misses a field.
//!
//! Types that decode through a [`Value`] (to keep unknown variants) convert
//! it inside serde's visitor ([`buffered`]), so serde_json positions their
//! failure at the end of their own object rather than after the separator
//! that follows it (which is where the enclosing array would place an error
//! returned later, naming the next element). Their inner path travels in the
//! error's message ([`nested_error`]), relative to their own object.

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// Separates an inner path from the message in a custom serde error.
const PATH_MARK: char = '\u{1f}';

/// Where and why a decode failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeFailure {
    /// JSONPath-like location, `$` for the top level.
    pub(crate) path: String,
    /// serde's message, with the line and column for a syntax error.
    pub(crate) message: String,
}

/// Decodes `text` as `T`; on failure, locates it as a path.
pub(crate) fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, DecodeFailure> {
    serde_json::from_str(text).map_err(|first| match serde_json::from_str::<Value>(text) {
        // Not JSON at all: the line and column are the best location there is.
        Err(syntax) => DecodeFailure {
            path: "$".into(),
            message: syntax.to_string(),
        },
        Ok(value) => locate::<T>(&value, &first),
    })
}

/// Decodes an already parsed value as `T`; on failure, locates it as a path.
pub(crate) fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, DecodeFailure> {
    T::deserialize(value).map_err(|first| locate::<T>(value, &first))
}

/// Decodes the locating copy of `value` (see the module doc) as `T` to learn
/// the path of the failure `first`.
#[cold]
fn locate<T: DeserializeOwned>(value: &Value, first: &serde_json::Error) -> DecodeFailure {
    let mut copy = LocatingCopy::default();
    copy.write(value, &mut "$".to_string(), "", "");
    match serde_json::from_str::<T>(&copy.text) {
        Err(e) => {
            let outer = e.line().checked_sub(1).and_then(|i| copy.paths.get(i));
            split_inner(outer.map_or("$", String::as_str), &e)
        }
        // Not expected (same data); keep the first message.
        Ok(_) => split_inner("$", first),
    }
}

/// The document printed one value per line, and the path of each line.
#[derive(Default)]
struct LocatingCopy {
    text: String,
    paths: Vec<String>,
}

impl LocatingCopy {
    /// Prints `value` at `path`, after `lead` (its member's key) and before
    /// `trail` (the separator from the next value).
    fn write(&mut self, value: &Value, path: &mut String, lead: &str, trail: &str) {
        let (open, close) = match value {
            Value::Object(_) => ("{", "}"),
            Value::Array(_) => ("[", "]"),
            scalar => return self.line(path, &[lead, &scalar.to_string(), trail]),
        };
        self.line(path, &[lead, open]);
        let len = path.len();
        match value {
            Value::Object(map) => {
                for (i, (key, member)) in map.iter().enumerate() {
                    path.push_str(&key_segment(key));
                    let key = format!("{}:", Value::String(key.clone()));
                    self.write(member, path, &key, if i + 1 < map.len() { "," } else { "" });
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push_str(&format!("[{i}]"));
                    self.write(item, path, "", if i + 1 < items.len() { "," } else { "" });
                    path.truncate(len);
                }
            }
            _ => {}
        }
        self.line(path, &[close, trail]);
    }

    fn line(&mut self, path: &str, pieces: &[&str]) {
        pieces.iter().for_each(|p| self.text.push_str(p));
        self.text.push('\n');
        self.paths.push(path.to_string());
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

/// Puts `prefix` (relative, like `.properties`) in front of a failure's path.
pub(crate) fn prefixed(prefix: &str, failure: DecodeFailure) -> DecodeFailure {
    let inner = failure.path.strip_prefix('$').unwrap_or(&failure.path);
    DecodeFailure {
        path: format!("${prefix}{inner}"),
        message: failure.message,
    }
}

/// The body of a `Deserialize` impl that needs the whole object as a
/// [`Value`] (to read a tag, to keep unknown variants): `convert` runs inside
/// serde's visitor, so a failure is positioned at the end of this object (see
/// the module doc). Anything but an object is an error.
pub(crate) fn buffered<'de, D, T, F>(d: D, convert: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(Value) -> Result<T, serde_json::Error>,
{
    struct Buffered<F>(F);

    impl<'de, T, F: FnOnce(Value) -> Result<T, serde_json::Error>> Visitor<'de> for Buffered<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
            // A custom error keeps the message and the inner path it carries.
            (self.0)(value).map_err(de::Error::custom)
        }
    }

    d.deserialize_map(Buffered(convert))
}

fn key_segment(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_string()))
    }
}

/// Joins `outer` and the inner path a nested failure carries in its message.
fn split_inner(outer: &str, err: &serde_json::Error) -> DecodeFailure {
    // serde_json appends " at line L column C" to a positioned error; the
    // line is one of the locating copy, so it is of no use to a reader.
    let mut message = err.to_string();
    if err.line() > 0
        && let Some(cut) = message.rfind(" at line ")
    {
        message.truncate(cut);
    }
    let mut parts = message.splitn(3, PATH_MARK);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(""), Some(inner), Some(rest)) => DecodeFailure {
            path: format!("{outer}{inner}"),
            message: rest.to_string(),
        },
        _ => DecodeFailure {
            path: outer.to_string(),
            message,
        },
    }
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
    use std::collections::BTreeMap;

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
        type Nested = BTreeMap<String, BTreeMap<String, (u8, BTreeMap<String, u8>)>>;
        let f = from_str::<Nested>(r#"{"a b":{"q\"x":[0,{"k":true}]}}"#).unwrap_err();
        assert_eq!(f.path, r#"$["a b"]["q\"x"][1].k"#);
        assert!(f.message.starts_with("invalid type: boolean"), "{f:?}");
    }

    #[derive(Debug)]
    struct ViaValue;

    impl<'de> Deserialize<'de> for ViaValue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            buffered(d, |v| {
                from_value::<Inner>(&v).map_err(nested_error)?;
                Ok(ViaValue)
            })
        }
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        n: u8,
        list: Vec<ViaValue>,
    }

    #[test]
    fn inner_paths_join_the_outer_one() {
        let text = r#"[{"n":1,"list":[]},{"n":2,"list":[{"start":2},{"start":-1}]}]"#;
        let f = from_str::<Vec<Doc>>(text).unwrap_err();
        assert_eq!(f.path, "$[1].list[1].start");
        assert!(f.message.contains("invalid value"), "{f:?}");

        let f = from_str::<BTreeMap<String, Doc>>(
            r#"{"a":{"n":1,"list":[]},"b c":{"n":1,"list":[{}]},"d":{"n":1,"list":[]}}"#,
        )
        .unwrap_err();
        assert_eq!(f.path, r#"$["b c"].list[0]"#);
        assert_eq!(f.message, "missing field `start`");
    }

    #[test]
    fn a_buffered_value_that_fails_is_named_not_its_neighbour() {
        // An error returned after the value was read would be placed by the
        // array after the next separator, i.e. at the next element.
        let f =
            from_str::<Vec<ViaValue>>(r#"[{"start":1},{"start":"x"},{"start":2}]"#).unwrap_err();
        assert_eq!(f.path, "$[1].start");
        let f = from_str::<Vec<ViaValue>>(r#"[{"start":1},{},{"start":2}]"#).unwrap_err();
        assert_eq!(
            (f.path.as_str(), f.message.as_str()),
            ("$[1]", "missing field `start`")
        );
        let f = from_str::<Vec<ViaValue>>(r#"[{"start":1},"x"]"#).unwrap_err();
        assert_eq!(f.path, "$[1]");
        assert!(f.message.contains("expected an object"), "{f:?}");
        // The last member of an object keeps its name too.
        let f = from_str::<Doc>(r#"{"n":1,"list":[{}]}"#).unwrap_err();
        assert_eq!(f.path, "$.list[0]");
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_named_where_it_opens() {
        let f = from_str::<Outer>(r#"{"name":"x","items":[{"start":{"a":1}}]}"#).unwrap_err();
        assert_eq!(f.path, "$.items[0].start");
        assert!(f.message.starts_with("invalid type: map"), "{f:?}");
        let f = from_str::<Vec<String>>(r#"["a",["b"]]"#).unwrap_err();
        assert_eq!(f.path, "$[1]");
        let f = from_str::<Outer>(r#"{"items":[{"start":1}]}"#).unwrap_err();
        assert_eq!(
            (f.path.as_str(), f.message.as_str()),
            ("$", "missing field `name`")
        );
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
