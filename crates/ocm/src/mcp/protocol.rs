//! JSON-RPC 2.0 as MCP uses it: one message is classified strictly
//! (request, notification or something to answer with an error), ids are
//! kept as the exact text the client sent, and responses are built for the
//! protocol era the request speaks.
//!
//! Two eras (see the 2026-07-28 revision's "Versioning"): *legacy*
//! revisions negotiate a version once with `initialize`; the *modern*
//! revision carries the version and the client's capabilities in every
//! request's `_meta`, adds `resultType` to every result and `ttlMs` /
//! `cacheScope` to lists. A request is modern when its `_meta` has the
//! protocol version key; everything else is served as the legacy version
//! negotiated (or the latest legacy one before `initialize`).

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// The stateless revision, served per request.
pub const MODERN_VERSION: &str = "2026-07-28";
/// The handshake revisions, oldest first.
pub const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The latest handshake revision: the answer to an `initialize` asking for
/// a version ocm does not know.
pub const LATEST_LEGACY: &str = "2025-11-25";

/// The `_meta` keys of the modern revision.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// JSON-RPC error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// The modern revision's `UnsupportedProtocolVersionError`.
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// Every version ocm speaks, newest first (what `server/discover` and
/// the unsupported-version error list).
pub fn supported_versions() -> Vec<&'static str> {
    let mut all = vec![MODERN_VERSION];
    all.extend(LEGACY_VERSIONS.iter().rev());
    all
}

/// A request id exactly as the client wrote it (a JSON string or number),
/// so that it is echoed byte for byte, whatever its size or spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(String);

impl Id {
    #[cfg(test)]
    pub fn for_test(raw: &str) -> Id {
        Id(raw.to_string())
    }

    /// The id as JSON text.
    pub fn raw(&self) -> &str {
        &self.0
    }

    /// The id as a key to find an in-flight call by (the value, so `1`
    /// and `1.0` spelled differently in a cancellation still match).
    pub fn key(&self) -> String {
        id_key(&serde_json::from_str(&self.0).unwrap_or(Value::Null))
    }
}

/// The key of an id given as a value (`notifications/cancelled`'s
/// `requestId`).
pub fn id_key(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("n:{}", f as i64),
            _ => format!("n:{n}"),
        },
        Value::String(s) => format!("s:{s}"),
        other => format!("?:{other}"),
    }
}

/// One line from the client, classified.
#[derive(Debug)]
pub enum Incoming {
    Request {
        id: Id,
        method: String,
        params: Map<String, Value>,
    },
    Notification {
        method: String,
        params: Map<String, Value>,
    },
    /// A response to a request ocm never sends: ignored.
    Response,
    /// Not a valid message: answer with this error line.
    Invalid(String),
}

#[derive(serde::Deserialize)]
struct RawId<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

/// Classifies one line (without its line ending).
pub fn classify(line: &str) -> Incoming {
    let value: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(e) => {
            return Incoming::Invalid(error_line(
                None,
                PARSE_ERROR,
                &format!("Parse error: {e}"),
                None,
            ));
        }
    };
    let invalid = |id: Option<&Id>, message: &str| {
        Incoming::Invalid(error_line(id, INVALID_REQUEST, message, None))
    };
    let object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return invalid(
                None,
                "Invalid Request: batches are not supported (send one message per line)",
            );
        }
        _ => return invalid(None, "Invalid Request: a message must be a JSON object"),
    };
    // The id exactly as written; only strings and numbers are ids.
    let id = match object.get("id") {
        None => None,
        Some(Value::String(_) | Value::Number(_)) => serde_json::from_str::<RawId<'_>>(line)
            .ok()
            .and_then(|raw| raw.id)
            .map(|raw| Id(raw.get().to_string())),
        Some(Value::Null) => return invalid(None, "Invalid Request: the id must not be null"),
        Some(_) => {
            return invalid(None, "Invalid Request: the id must be a string or a number");
        }
    };
    if object.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return invalid(id.as_ref(), "Invalid Request: \"jsonrpc\" must be \"2.0\"");
    }
    let method = match object.get("method") {
        Some(Value::String(method)) => method.clone(),
        Some(_) => return invalid(id.as_ref(), "Invalid Request: the method must be a string"),
        None if id.is_some() && (object.contains_key("result") || object.contains_key("error")) => {
            return Incoming::Response;
        }
        None => return invalid(id.as_ref(), "Invalid Request: no method"),
    };
    let params = match object.get("params") {
        None => Map::new(),
        Some(Value::Object(params)) => params.clone(),
        Some(_) => {
            return match id {
                // MCP's params are always an object.
                Some(id) => Incoming::Invalid(error_line(
                    Some(&id),
                    INVALID_PARAMS,
                    "Invalid params: params must be an object",
                    None,
                )),
                None => Incoming::Notification {
                    method,
                    params: Map::new(),
                },
            };
        }
    };
    match id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method, params },
    }
}

/// The era a request speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Era {
    /// Stateless, version in `_meta`.
    Modern,
    /// A handshake revision (the negotiated one).
    Legacy(&'static str),
}

impl Era {
    /// Whether this era has `feature`, introduced in revision `since`.
    pub fn has(&self, since: &str) -> bool {
        match self {
            Era::Modern => true,
            Era::Legacy(version) => *version >= since,
        }
    }
}

/// The era of a request from its `_meta`: `Ok(None)` for a legacy
/// request, `Err` with the error line for a modern one that is malformed
/// or asks for a version ocm does not speak.
pub fn request_era(id: &Id, params: &Map<String, Value>) -> Result<Option<Era>, String> {
    let Some(meta) = params.get("_meta").and_then(Value::as_object) else {
        return Ok(None);
    };
    let Some(version) = meta.get(META_VERSION) else {
        return Ok(None);
    };
    let Some(version) = version.as_str() else {
        return Err(error_line(
            Some(id),
            INVALID_PARAMS,
            &format!("Invalid params: _meta.{META_VERSION} must be a string"),
            None,
        ));
    };
    if version != MODERN_VERSION {
        return Err(error_line(
            Some(id),
            UNSUPPORTED_VERSION,
            "Unsupported protocol version",
            Some(json!({"supported": supported_versions(), "requested": version})),
        ));
    }
    if !meta.get(META_CAPABILITIES).is_some_and(Value::is_object) {
        return Err(error_line(
            Some(id),
            INVALID_PARAMS,
            &format!("Invalid params: _meta.{META_CAPABILITIES} (an object) is required"),
            None,
        ));
    }
    Ok(Some(Era::Modern))
}

/// The version `initialize` answers: the one asked for when ocm speaks
/// it, else the latest handshake revision.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    LEGACY_VERSIONS
        .iter()
        .find(|v| Some(**v) == requested)
        .copied()
        .unwrap_or(LATEST_LEGACY)
}

/// ocm's `Implementation` object.
pub fn server_info(era: &Era) -> Value {
    let mut info = json!({"name": "ocm", "version": env!("CARGO_PKG_VERSION")});
    if era.has("2025-06-18") {
        info["title"] = json!("ocm: OpenCode servers per project");
    }
    info
}

/// A result for a request of `era`: a modern result gets `resultType`
/// and the server's identity in `_meta`.
pub fn finish_result(mut result: Map<String, Value>, era: &Era) -> Map<String, Value> {
    if *era == Era::Modern {
        result.insert("resultType".into(), json!("complete"));
        let mut meta = result
            .remove("_meta")
            .and_then(|m| m.as_object().cloned())
            .unwrap_or_default();
        meta.insert(META_SERVER_INFO.into(), server_info(era));
        result.insert("_meta".into(), Value::Object(meta));
    }
    result
}

/// A success response line.
pub fn result_line(id: &Id, result: &Map<String, Value>) -> String {
    let result = serde_json::to_string(result).unwrap_or_else(|_| "{}".into());
    format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.raw())
}

/// An error response line; `id` `None` is `"id": null`.
pub fn error_line(id: Option<&Id>, code: i64, message: &str, data: Option<Value>) -> String {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{}}}"#,
        id.map_or("null", Id::raw),
        error
    )
}

/// A notification line.
pub fn notification_line(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(line: &str) -> Value {
        match classify(line) {
            Incoming::Invalid(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn malformed_and_invalid_messages_get_the_right_codes() {
        let e = error_of("{not json");
        assert_eq!(e["error"]["code"], PARSE_ERROR);
        assert_eq!(e["id"], Value::Null);
        let e = error_of(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
        assert_eq!(e["error"]["code"], INVALID_REQUEST);
        let e = error_of(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#);
        assert_eq!(e["error"]["code"], INVALID_REQUEST);
        assert_eq!(e["id"], Value::Null);
        let e = error_of(r#"{"id":7,"method":"ping"}"#);
        assert_eq!(
            (e["error"]["code"].clone(), e["id"].clone()),
            (json!(-32600), json!(7))
        );
        let e = error_of(r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#);
        assert_eq!(e["error"]["code"], INVALID_REQUEST);
        let e = error_of(r#"{"jsonrpc":"2.0","id":"a","method":"x","params":[1]}"#);
        assert_eq!(e["error"]["code"], INVALID_PARAMS);
        let e = error_of("42");
        assert_eq!(e["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn ids_are_echoed_as_written() {
        for raw in [
            "0",
            "-5",
            "1.5",
            "1e3",
            "123456789012345678901234567890",
            r#""""#,
            r#""a\"b\u00e9""#,
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"ping"}}"#);
            let Incoming::Request { id, .. } = classify(&line) else {
                panic!("{line}")
            };
            assert_eq!(id.raw(), raw);
            assert!(result_line(&id, &Map::new()).contains(&format!(r#""id":{raw},"#)));
        }
    }

    #[test]
    fn responses_and_notifications_are_told_apart() {
        assert!(matches!(
            classify(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Incoming::Response
        ));
        assert!(matches!(
            classify(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Incoming::Notification { .. }
        ));
    }

    #[test]
    fn modern_requests_are_checked() {
        let id = Id("1".into());
        let params = |meta: Value| json!({"_meta": meta}).as_object().cloned().unwrap();
        assert_eq!(request_era(&id, &Map::new()), Ok(None));
        let ok = params(json!({META_VERSION: MODERN_VERSION, META_CAPABILITIES: {}}));
        assert_eq!(request_era(&id, &ok), Ok(Some(Era::Modern)));
        let old = params(json!({META_VERSION: "1900-01-01", META_CAPABILITIES: {}}));
        let e: Value = serde_json::from_str(&request_era(&id, &old).unwrap_err()).unwrap();
        assert_eq!(e["error"]["code"], UNSUPPORTED_VERSION);
        assert_eq!(e["error"]["data"]["requested"], "1900-01-01");
        let no_caps = params(json!({META_VERSION: MODERN_VERSION}));
        let e: Value = serde_json::from_str(&request_era(&id, &no_caps).unwrap_err()).unwrap();
        assert_eq!(e["error"]["code"], INVALID_PARAMS);
    }

    #[test]
    fn initialize_echoes_known_versions_else_the_latest() {
        for v in LEGACY_VERSIONS {
            assert_eq!(negotiate(Some(v)), v);
        }
        assert_eq!(negotiate(Some("2099-01-01")), LATEST_LEGACY);
        assert_eq!(negotiate(None), LATEST_LEGACY);
    }
}
