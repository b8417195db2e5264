//! The keys of `ocm --json` output that scripts may rely on, kept in one
//! place: the README's tables, the unit and end-to-end tests and the tidy
//! check (`cargo test -p xtask`) all compare against these lists.
//!
//! Every JSON object about a project has exactly [`COMMON_KEYS`], whatever
//! the command, plus that command's row of [`EXTRA_KEYS`]; an error has
//! exactly [`ERROR_KEYS`] plus, for some kinds, a row of
//! [`ERROR_EXTRA_KEYS`]. The end-to-end tests compare key sets exactly.

/// The keys every JSON object about a project has (null when unknown).
pub const COMMON_KEYS: [&str; 17] = [
    "project",
    "projectExists",
    "projectPort",
    "stateDir",
    "status",
    "healthy",
    "detail",
    "url",
    "port",
    "pid",
    "startedAt",
    "uptimeSeconds",
    "version",
    "residentMemoryBytes",
    "logPath",
    "auth",
    "passwordFile",
];

/// What each command adds to its project object: (the command, its keys).
/// `ls` prints an array of project objects; `gc` prints one object of
/// lists (its row), each entry a project object plus the `gc entries` row.
pub const EXTRA_KEYS: [(&str, &[&str]); 11] = [
    ("up", &["reused", "hostname", "elapsedMs"]),
    ("restart", &["reused", "hostname", "elapsedMs", "replaced"]),
    ("status", &[]),
    ("url", &[]),
    ("ls", &[]),
    ("port", &["projectHash"]),
    ("logs", &["lines"]),
    (
        "down",
        &[
            "wasRunning",
            "stopped",
            "stoppedPid",
            "orphansStopped",
            "leftoversStopped",
            "leftAlone",
        ],
    ),
    (
        "destroy",
        &[
            "wasRunning",
            "stopped",
            "stoppedPid",
            "orphansStopped",
            "leftoversStopped",
            "leftAlone",
            "removed",
        ],
    ),
    (
        "gc",
        &[
            "removed",
            "projectGone",
            "orphansStopped",
            "leftoversStopped",
            "busy",
            "unreadable",
            "failed",
        ],
    ),
    ("gc entries", &["recordPath"]),
];

/// The keys every JSON error has.
pub const ERROR_KEYS: [&str; 3] = ["error", "hint", "exitCode"];

/// What some kinds of error add: (the kind, its keys).
pub const ERROR_EXTRA_KEYS: [(&str, &[&str]); 3] = [
    ("about a path", &["path"]),
    ("missing .env keys", &["path", "missingKeys"]),
    (
        "a failed start",
        &[
            "project",
            "binary",
            "attempts",
            "failure",
            "exitStatus",
            "signal",
            "logPath",
            "logTail",
        ],
    ),
];

/// The objects `ocm sandbox ... --json` prints: (the object, its keys).
/// `up`, `status` and `restart` print a `sandbox status` (its `server`
/// and `companion` are the next rows, or null); `ls` an array of
/// `sandbox ls entries`; `down` and `destroy` their rows. These are the
/// sandbox crate's types as serialized (camelCase).
pub const SANDBOX_KEYS: [(&str, &[&str]); 6] = [
    (
        "sandbox status",
        &[
            "name",
            "status",
            "folder",
            "repo",
            "gitUrl",
            "keyPath",
            "keyOwner",
            "publicKey",
            "server",
            "companion",
            "lastHealthCheck",
            "warnings",
            "error",
        ],
    ),
    (
        "sandbox server",
        &["url", "port", "pid", "healthy", "state"],
    ),
    (
        "sandbox companion",
        &[
            "url",
            "port",
            "pid",
            "alive",
            "answered",
            "answeredMs",
            "log",
        ],
    ),
    (
        "sandbox ls entries",
        &["name", "folder", "status", "cloned"],
    ),
    ("sandbox down", &["name", "serverPid", "companionStopped"]),
    (
        "sandbox destroy",
        &["name", "folder", "removedKey", "keptUserKey"],
    ),
];
