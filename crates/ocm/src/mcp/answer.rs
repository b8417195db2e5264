//! What a followed turn waits for (a permission or a question) as the
//! turn's `pending`, and `opencode_answer`, which answers it: the
//! arguments checked, the answer given through the project's engine.

use opencode_api::{PendingRequest, PermissionReply};
use serde_json::{Map, Value, json};
use turns::Engine;

use super::tools::Failure;

/// A request a turn waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Waiting {
    /// A tool asks for a permission.
    Permission(PendingRequest),
    /// A tool asks questions.
    Question(PendingRequest),
}

impl Waiting {
    /// The request ID (`per_...`, `que_...`).
    pub fn id(&self) -> &str {
        match self {
            Waiting::Permission(r) | Waiting::Question(r) => &r.id,
        }
    }

    /// The turn's `pending` object.
    pub fn json(&self) -> Value {
        match self {
            Waiting::Permission(r) => json!({
                "kind": "permission",
                "id": r.id,
                "permission": r.permission,
            }),
            Waiting::Question(r) => json!({
                "kind": "question",
                "id": r.id,
                "questions": serde_json::to_value(&r.questions).unwrap_or(Value::Null),
            }),
        }
    }

    /// What is asked, for a progress notification.
    pub fn describe(&self) -> String {
        match self {
            Waiting::Permission(r) => format!(
                "a tool waits for permission `{}` (request {}): answer with opencode_answer \
                 and `reply`",
                r.permission.as_deref().unwrap_or("?"),
                r.id
            ),
            Waiting::Question(r) => {
                let asked: Vec<String> = r
                    .questions
                    .iter()
                    .map(|q| {
                        let labels: Vec<&str> =
                            q.options.iter().map(|o| o.label.as_str()).collect();
                        format!("{} [{}]", q.question, labels.join(", "))
                    })
                    .collect();
                format!(
                    "a tool asks: {} (request {}): answer with opencode_answer and `answers`",
                    asked.join("; "),
                    r.id
                )
            }
        }
    }
}

/// How `opencode_prompt` treats the turn's permission requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Permissions {
    /// Leave them to the caller (shown in `pending`).
    #[default]
    Ask,
    /// Allow each once.
    Allow,
    /// Refuse each.
    Deny,
}

impl Permissions {
    /// The `permissions` argument (checked by [`check`]; absent: ask).
    pub fn of(arguments: &Map<String, Value>) -> Permissions {
        match arguments.get("permissions").and_then(Value::as_str) {
            Some("allow") => Permissions::Allow,
            Some("deny") => Permissions::Deny,
            _ => Permissions::Ask,
        }
    }

    /// The reply given at once, if any.
    pub fn reply(self) -> Option<PermissionReply> {
        match self {
            Permissions::Ask => None,
            Permissions::Allow => Some(PermissionReply::Once),
            Permissions::Deny => Some(PermissionReply::Reject),
        }
    }
}

/// An answer of `opencode_answer`.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// To a permission.
    Permission(PermissionReply),
    /// To a question: one answer per question.
    Question(Vec<Vec<String>>),
    /// A question declined.
    Reject,
}

/// The input schema of an argument beyond its type and description.
pub fn refine(key: &str, schema: &mut Value) {
    match key {
        "reply" => schema["enum"] = json!(["once", "always", "reject"]),
        "permissions" => schema["enum"] = json!(["ask", "allow", "deny"]),
        "answers" => schema["items"] = json!({"type": "array", "items": {"type": "string"}}),
        "reject" => schema["const"] = json!(true),
        _ => {}
    }
}

/// Checks the arguments `opencode_prompt` and `opencode_answer` take
/// beyond their types: the enums, the answers' shape, and that
/// `opencode_answer` has exactly one answer.
pub fn check(name: &str, arguments: &Map<String, Value>) -> Result<(), Failure> {
    let one_of = |key: &str, allowed: &[&str]| match arguments.get(key).and_then(Value::as_str) {
        Some(v) if !allowed.contains(&v) => Err(Failure::input(format!(
            "`{key}` must be one of {} (got `{v}`)",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    };
    one_of("permissions", &["ask", "allow", "deny"])?;
    if name != "opencode_answer" {
        return Ok(());
    }
    one_of("reply", &["once", "always", "reject"])?;
    if let Some(answers) = arguments.get("answers") {
        let ok = answers.as_array().is_some_and(|all| {
            !all.is_empty()
                && all
                    .iter()
                    .all(|a| a.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        });
        if !ok {
            return Err(Failure::input(
                "`answers` must be an array with one array of strings per question (the labels \
                 chosen, or a text of your own), e.g. [[\"blue\"]]",
            ));
        }
    }
    if arguments
        .get("reject")
        .is_some_and(|r| r != &Value::Bool(true))
    {
        return Err(Failure::input(
            "`reject` must be true (it declines a question); leave it out otherwise",
        ));
    }
    let given: Vec<&str> = ["reply", "answers", "reject"]
        .into_iter()
        .filter(|k| arguments.contains_key(*k))
        .collect();
    if given.len() != 1 {
        return Err(Failure::input(format!(
            "give exactly one of `reply` (a permission: once, always or reject), `answers` (a \
             question) or `reject: true` (decline a question){}",
            if given.is_empty() {
                String::new()
            } else {
                format!("; got {}", given.join(" and "))
            }
        )));
    }
    Ok(())
}

/// The answer the (checked) arguments give.
pub fn answer_of(arguments: &Map<String, Value>) -> Answer {
    if let Some(reply) = arguments.get("reply").and_then(Value::as_str) {
        return Answer::Permission(match reply {
            "always" => PermissionReply::Always,
            "reject" => PermissionReply::Reject,
            _ => PermissionReply::Once,
        });
    }
    match arguments.get("answers").and_then(Value::as_array) {
        Some(all) => Answer::Question(
            all.iter()
                .map(|a| {
                    a.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .collect(),
        ),
        None => Answer::Reject,
    }
}

/// Gives `answer` to request `id` on the engine's server; a request the
/// server does not know (never asked, or answered already) is a failure
/// that says so.
pub fn give(
    engine: &Engine,
    id: &str,
    answer: &Answer,
    fail: &dyn Fn(turns::Error) -> Failure,
) -> Result<Value, Failure> {
    let result = match answer {
        Answer::Permission(reply) => engine.reply_permission(id, *reply),
        Answer::Question(answers) => engine.reply_question(id, answers),
        Answer::Reject => engine.reject_question(id),
    };
    match result {
        Ok(()) => Ok(json!({"answered": true, "requestId": id})),
        Err(turns::Error::Api(e)) if e.is_not_found() => Err(Failure {
            message: format!(
                "no pending {} {id} on this project's server (answered already, or never \
                 asked): {e}",
                match answer {
                    Answer::Permission(_) => "permission request",
                    _ => "question",
                }
            ),
            details: Vec::new(),
            hint: Some(
                "opencode_turn shows what a turn waits for in `pending`, with its id".into(),
            ),
        }),
        Err(e) => Err(fail(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn an_answer_is_exactly_one_of_reply_answers_or_reject() {
        let check = |v: Value| check("opencode_answer", &args(v));
        let e = check(json!({"request_id": "per_1"})).unwrap_err();
        assert!(e.message.contains("exactly one of"), "{e:?}");
        let e = check(json!({"reply": "once", "reject": true})).unwrap_err();
        assert!(e.message.contains("got reply and reject"), "{e:?}");
        let e = check(json!({"reply": "maybe"})).unwrap_err();
        assert!(e.message.contains("once, always, reject"), "{e:?}");
        let e = check(json!({"reject": false})).unwrap_err();
        assert!(e.message.contains("`reject` must be true"), "{e:?}");
        for bad in [json!([]), json!(["blue"]), json!([[1]]), json!("blue")] {
            let e = check(json!({"answers": bad})).unwrap_err();
            assert!(e.message.contains("`answers` must be"), "{e:?}");
        }
        assert!(check(json!({"reply": "always"})).is_ok());
        assert!(check(json!({"answers": [["blue"], ["a", "b"]]})).is_ok());
        assert!(check(json!({"reject": true})).is_ok());
    }

    #[test]
    fn answers_and_permissions_are_read_from_the_arguments() {
        assert_eq!(
            answer_of(&args(json!({"reply": "always"}))),
            Answer::Permission(PermissionReply::Always)
        );
        assert_eq!(
            answer_of(&args(json!({"answers": [["blue"], []]}))),
            Answer::Question(vec![vec!["blue".into()], vec![]])
        );
        assert_eq!(answer_of(&args(json!({"reject": true}))), Answer::Reject);
        let e = check("opencode_prompt", &args(json!({"permissions": "yes"}))).unwrap_err();
        assert!(e.message.contains("ask, allow, deny"), "{e:?}");
        assert_eq!(
            Permissions::of(&args(json!({"permissions": "deny"}))).reply(),
            Some(PermissionReply::Reject)
        );
        assert_eq!(Permissions::of(&args(json!({}))), Permissions::Ask);
    }

    #[test]
    fn pending_shows_what_is_asked() {
        let request: PendingRequest = serde_json::from_value(json!({
            "id": "que_1", "sessionID": "ses_1",
            "questions": [{"question": "Which colour?", "header": "Colour",
                           "options": [{"label": "red", "description": "warm"}]}],
        }))
        .unwrap();
        let waiting = Waiting::Question(request);
        let value = waiting.json();
        assert_eq!(value["kind"], "question");
        assert_eq!(value["id"], "que_1");
        assert_eq!(value["questions"][0]["options"][0]["label"], "red");
        assert!(waiting.describe().contains("Which colour? [red]"));
    }
}
