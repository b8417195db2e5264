//! The keys of `ocm --json` output that scripts may rely on, kept in one
//! place: the README's tables, the unit and end-to-end tests and the tidy
//! check (`cargo test -p xtask`) all compare against these lists.

/// The keys every JSON object that reports on a project has.
pub const COMMON_KEYS: [&str; 8] = [
    "project",
    "url",
    "port",
    "pid",
    "status",
    "healthy",
    "startedAt",
    "logPath",
];

/// The keys a command's `--json` output adds: (the command, its keys).
pub const EXTRA_KEYS: [(&str, &[&str]); 3] = [
    ("port", &["projectPort"]),
    ("logs", &["lines"]),
    ("gc", &["removed", "projectGone", "busy", "unreadable"]),
];
