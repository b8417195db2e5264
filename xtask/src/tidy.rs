//! Tidy checks of the source tree, run as ordinary tests (as rust-analyzer
//! does), so `cargo test --workspace` and `cargo xtask ci` run them:
//!
//! 1. crates depend only on the layers below them ([`LAYERS`]);
//! 2. every `.rs` file under `crates/` starts with a `//!` line;
//! 3. `unsafe` appears only in the files that need it ([`UNSAFE_ALLOWED`]),
//!    and the crates that need none forbid it ([`FORBID_UNSAFE`]);
//! 4. no file under `crates/` has more than [`MAX_CODE_LINES`] lines of code;
//! 5. the README's JSON key tables match `crates/ocm/src/json_keys.rs`, and
//!    its command table lists every command and alias of the CLI's table.
//!
//! Each check lists every offending file (and line) in its failure. The
//! parsers are small and line-based on purpose: xtask adds no dependency
//! for them, and the files they read are written in one plain style.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::workspace_root;

// ---------------------------------------------------------------------------
// Files

/// Every `.rs` file under `dir` (a folder of the workspace), sorted.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                // Build output and hidden folders are not sources.
                if name != "target" && !name.starts_with('.') {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&workspace_root().join(dir), &mut files);
    files.sort();
    files
}

/// `path` relative to the workspace root, with `/`.
fn relative(path: &Path) -> String {
    let root = workspace_root();
    let relative = path.strip_prefix(&root).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Fails with every offender, one per line, under `what`.
fn report(what: &str, offenders: &[String]) {
    assert!(
        offenders.is_empty(),
        "\n{what} ({} offending):\n  {}\n",
        offenders.len(),
        offenders.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// 1. Dependency direction

/// The workspace crates under `crates/`: (name, layer, the workspace crates
/// it may depend on). A crate may only use crates of a lower layer, and of
/// those only the ones listed: the CLI talks to the manager, not to
/// statefile. `turns` and `sandbox` sit between the manager and the CLI.
const LAYERS: &[(&str, u8, &[&str])] = &[
    ("procutil", 0, &[]),
    ("portmap", 0, &[]),
    ("statefile", 0, &[]),
    ("httpsse", 0, &[]),
    ("mock-llm", 0, &[]),
    ("opencode-api", 1, &["httpsse"]),
    (
        "manager",
        2,
        &["procutil", "portmap", "statefile", "opencode-api"],
    ),
    ("turns", 3, &["manager", "opencode-api"]),
    ("sandbox", 4, &["manager"]),
    ("ocm", 5, &["manager", "opencode-api", "turns", "sandbox"]),
];

/// Workspace members outside `crates/`, which no crate may depend on.
const OTHER_MEMBERS: &[&str] = &["e2e", "xtask"];

/// What a manifest says that the check needs.
#[derive(Debug, Default, PartialEq)]
struct Manifest {
    /// `[package] name`.
    name: Option<String>,
    /// (line number, crate) of every normal, build or target dependency;
    /// dev-dependencies are test code, which may use more.
    dependencies: Vec<(usize, String)>,
}

/// Reads a Cargo.toml line by line: section headers, `key = value` lines,
/// `key.workspace = true`, `[dependencies.key]` tables and `package =`
/// renames. Enough for manifests written the way this workspace writes
/// them; not a TOML parser.
fn parse_manifest(text: &str) -> Manifest {
    let mut manifest = Manifest::default();
    let mut section = String::new();
    for (index, raw) in text.lines().enumerate() {
        let line = strip_toml_comment(raw).trim();
        if line.starts_with('[') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            if let Some(dep) = dependency_table(&section) {
                manifest.dependencies.push((index + 1, unquote(dep)));
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if section == "package" && key == "name" {
            manifest.name = Some(unquote(value));
        } else if is_dependency_section(&section) {
            let name = unquote(key.split('.').next().unwrap_or(key));
            let name = renamed_package(value).unwrap_or(name);
            manifest.dependencies.push((index + 1, name));
        } else if dependency_table(&section).is_some() && key == "package" {
            // `[dependencies.alias]` with `package = "real"`: the real one.
            if let Some(last) = manifest.dependencies.last_mut() {
                last.1 = unquote(value);
            }
        }
    }
    manifest
}

/// `dependencies`, `build-dependencies`, `target.'cfg(unix)'.dependencies`;
/// not `dev-dependencies`.
fn is_dependency_section(section: &str) -> bool {
    let last = section.rsplit('.').next().unwrap_or(section);
    matches!(last, "dependencies" | "build-dependencies")
}

/// `foo` for a `[dependencies.foo]` section.
fn dependency_table(section: &str) -> Option<&str> {
    let (table, dep) = section.rsplit_once('.')?;
    is_dependency_section(table).then_some(dep)
}

/// `x` of `{ ..., package = "x", ... }`.
fn renamed_package(value: &str) -> Option<String> {
    let rest = value
        .split("package")
        .nth(1)?
        .trim_start()
        .strip_prefix('=')?;
    let name = rest.trim_start().strip_prefix('"')?.split('"').next()?;
    Some(name.to_string())
}

fn unquote(text: &str) -> String {
    text.trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_string()
}

/// The line without a `#` comment (a `#` inside a string is kept).
fn strip_toml_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// What in `manifests` ((path, text) of each crate's Cargo.toml) breaks the
/// layering.
fn dependency_violations(manifests: &[(String, String)]) -> Vec<String> {
    let parsed: Vec<(&String, Manifest)> = manifests
        .iter()
        .map(|(path, text)| (path, parse_manifest(text)))
        .collect();
    // Crates of the workspace, including any not yet in the table.
    let mut workspace: BTreeSet<String> = LAYERS.iter().map(|l| l.0.to_string()).collect();
    workspace.extend(OTHER_MEMBERS.iter().map(|m| m.to_string()));
    workspace.extend(parsed.iter().filter_map(|(_, m)| m.name.clone()));
    let mut violations = Vec::new();
    for (path, manifest) in &parsed {
        let Some(name) = &manifest.name else {
            violations.push(format!("{path}: no [package] name"));
            continue;
        };
        let Some((_, _, allowed)) = LAYERS.iter().find(|l| l.0 == name) else {
            violations.push(format!(
                "{path}: crate {name} is not in xtask/src/tidy.rs LAYERS: add it with \
                 its layer and the crates it may use"
            ));
            continue;
        };
        for (line, dep) in &manifest.dependencies {
            if workspace.contains(dep) && !allowed.contains(&dep.as_str()) {
                let may = if allowed.is_empty() {
                    "no workspace crate".to_string()
                } else {
                    allowed.join(", ")
                };
                violations.push(format!(
                    "{path}:{line}: {name} depends on {dep}, but may use only {may}"
                ));
            }
        }
    }
    violations
}

#[test]
fn crates_depend_only_on_the_layers_below() {
    let mut manifests = Vec::new();
    let crates = workspace_root().join("crates");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&crates)
        .expect("read crates/")
        .flatten()
        .map(|e| e.path().join("Cargo.toml"))
        .filter(|p| p.is_file())
        .collect();
    dirs.sort();
    for path in dirs {
        manifests.push((relative(&path), read(&path)));
    }
    assert!(manifests.len() >= 7, "found only {manifests:?}");
    report(
        "workspace crates that depend on what their layer may not use",
        &dependency_violations(&manifests),
    );
}

#[test]
fn the_layer_table_points_downwards() {
    for (name, layer, allowed) in LAYERS {
        for dep in *allowed {
            let (_, dep_layer, _) = LAYERS
                .iter()
                .find(|l| l.0 == *dep)
                .unwrap_or_else(|| panic!("{name} may use {dep}, which is not in LAYERS"));
            assert!(
                dep_layer < layer,
                "{name} (layer {layer}) may use {dep} (layer {dep_layer})"
            );
        }
    }
}

#[test]
fn the_dependency_check_catches_the_cli_reaching_past_the_manager() {
    let manifest = |deps: &str| {
        format!(
            "[package]\nname = \"ocm\" # the CLI\nversion.workspace = true\n\n\
             [dependencies]\n{deps}\nserde.workspace = true\n\n\
             [dev-dependencies]\nstatefile.workspace = true\n"
        )
    };
    let clean = manifest("manager.workspace = true\nopencode-api = { workspace = true }");
    let clean = [("crates/ocm/Cargo.toml".to_string(), clean)];
    assert_eq!(dependency_violations(&clean), Vec::<String>::new());

    let bad = manifest("manager.workspace = true\nstatefile.workspace = true");
    let violations = dependency_violations(&[("crates/ocm/Cargo.toml".into(), bad)]);
    assert_eq!(
        violations,
        [
            "crates/ocm/Cargo.toml:7: ocm depends on statefile, but may use only manager, \
          opencode-api, turns, sandbox"
        ]
    );

    // Other spellings of a dependency are seen too.
    for deps in [
        "portmap = { path = \"../portmap\" }",
        "[dependencies.procutil]\nworkspace = true",
        "store = { package = \"statefile\", workspace = true }",
    ] {
        let violations = dependency_violations(&[("crates/ocm/Cargo.toml".into(), manifest(deps))]);
        assert_eq!(violations.len(), 1, "{deps}: {violations:?}");
    }
    // A lower crate depending on a higher one, and an unknown crate.
    let lower = "[package]\nname = \"statefile\"\n[dependencies]\nmanager.workspace = true\n";
    let new = "[package]\nname = \"shiny\"\n";
    let violations = dependency_violations(&[
        ("crates/statefile/Cargo.toml".into(), lower.into()),
        ("crates/shiny/Cargo.toml".into(), new.into()),
    ]);
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(
        violations[0].contains("statefile depends on manager"),
        "{violations:?}"
    );
    assert!(
        violations[1].contains("not in xtask/src/tidy.rs LAYERS"),
        "{violations:?}"
    );
}

// ---------------------------------------------------------------------------
// 2. Module docs

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let offenders: Vec<String> = rust_files("crates")
        .into_iter()
        .filter(|path| {
            let text = read(path);
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            !first.starts_with("//!")
        })
        .map(|path| relative(&path))
        .collect();
    report(
        "files whose first line is not a `//!` doc saying what the file is for",
        &offenders,
    );
}

// ---------------------------------------------------------------------------
// 3. unsafe

/// Where `unsafe` may be: the crates whose job is the OS edge, and the test
/// bed's process handling. A path ending in `/` allows a folder.
const UNSAFE_ALLOWED: &[&str] = &[
    "crates/procutil/",
    "crates/statefile/",
    "crates/httpsse/src/",
    "crates/mock-llm/src/lib.rs",
    "tests/src/lib.rs",
];

/// The crate roots that must say `#![forbid(unsafe_code)]`: crates with no
/// OS edge of their own, which leave that to the ones below.
const FORBID_UNSAFE: &[&str] = &[
    "crates/opencode-api/src/lib.rs",
    "crates/portmap/src/lib.rs",
    "crates/manager/src/lib.rs",
    "crates/turns/src/lib.rs",
    "crates/sandbox/src/lib.rs",
    "crates/ocm/src/main.rs",
];

/// `text` with comments blanked (and string and char literals too when
/// `strings`), newlines kept so line numbers stay. Handles nested block
/// comments, escapes, raw strings (`r#"..."#`) and tells a char literal
/// from a lifetime.
fn blank_comments(text: &str, strings: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == '"' || (c == 'r' && raw_string_hashes(&chars, i).is_some()) {
            // A string: find where it ends, then copy or blank it.
            let start = i;
            let end = if c == 'r' {
                let hashes = raw_string_hashes(&chars, i).unwrap_or(0);
                let mut j = i + 2 + hashes;
                while j < chars.len()
                    && !(chars[j] == '"'
                        && chars[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|h| **h == '#')
                            .count()
                            == hashes)
                {
                    j += 1;
                }
                (j + 1 + hashes).min(chars.len())
            } else {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
                (j + 1).min(chars.len())
            };
            for &ch in &chars[start..end] {
                if strings {
                    blank(&mut out, ch);
                } else {
                    out.push(ch);
                }
            }
            i = end;
        } else if c == '\'' {
            // 'x' or '\n' is a char; 'a without a closing quote a lifetime.
            let len = match (next, chars.get(i + 2), chars.get(i + 3)) {
                // The quote after the escaped character ends it.
                (Some('\\'), _, _) => chars
                    .get(i + 3..)
                    .and_then(|rest| rest.iter().position(|ch| *ch == '\''))
                    .map(|p| p + 4),
                (Some(_), Some('\''), _) => Some(3),
                _ => None,
            };
            let len = len.unwrap_or(1);
            for &ch in &chars[i..(i + len).min(chars.len())] {
                if strings && len > 1 {
                    blank(&mut out, ch);
                } else {
                    out.push(ch);
                }
            }
            i += len;
        } else {
            // An identifier is copied whole, so the `r` of `for` never
            // starts a raw string.
            if c == 'b' && next == Some('r') && raw_string_hashes(&chars, i + 1).is_some() {
                // `br#"..."#`: the `r` starts the raw string.
                out.push(c);
                i += 1;
                continue;
            }
            if c.is_alphanumeric() || c == '_' {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    out.push(chars[i]);
                    i += 1;
                }
                continue;
            }
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The number of `#` of a raw string starting at `chars[i] == 'r'`.
fn raw_string_hashes(chars: &[char], i: usize) -> Option<usize> {
    let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
    (chars.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

/// Line numbers where the keyword `unsafe` is used (not in a comment, a
/// string or a longer identifier such as `unsafe_code`).
fn unsafe_lines(text: &str) -> Vec<usize> {
    blank_comments(text, true)
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            line.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == "unsafe")
        })
        .map(|(index, _)| index + 1)
        .collect()
}

#[test]
fn unsafe_is_only_where_it_is_allowed() {
    let mut offenders = Vec::new();
    for path in rust_files("crates").into_iter().chain(rust_files("tests")) {
        let path = relative(&path);
        let allowed = UNSAFE_ALLOWED.iter().any(|a| match a.strip_suffix('/') {
            Some(dir) => path.starts_with(&format!("{dir}/")),
            None => path == *a,
        });
        if !allowed {
            for line in unsafe_lines(&read(&workspace_root().join(&path))) {
                offenders.push(format!("{path}:{line}"));
            }
        }
    }
    report(
        "`unsafe` outside xtask/src/tidy.rs UNSAFE_ALLOWED (move it into procutil, \
         statefile or httpsse behind a safe function)",
        &offenders,
    );
}

#[test]
fn crates_without_unsafe_forbid_it() {
    let offenders: Vec<String> = FORBID_UNSAFE
        .iter()
        .filter(|path| {
            let code = blank_comments(&read(&workspace_root().join(path)), false);
            !code.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]")
        })
        .map(|path| path.to_string())
        .collect();
    report("crate roots without `#![forbid(unsafe_code)]`", &offenders);
}

#[test]
fn the_unsafe_scan_skips_comments_strings_and_longer_words() {
    let text = r####"//! unsafe in a doc
fn f<'a>(x: &'a str) -> char { // unsafe here is a comment
    let _ = "unsafe \" still a string"; let _ = r#"unsafe "raw""#;
    /* unsafe /* nested unsafe */ unsafe */ let c = '"'; let d = '\'';
    #![forbid(unsafe_code)] let e = b"unsafe";
    unsafe { g() }
}
let h = "a
unsafe in a string's second line";
for x in y { unsafe_op(); } unsafe fn k() {}
"####;
    assert_eq!(unsafe_lines(text), [6, 10]);
}

// ---------------------------------------------------------------------------
// 4. File size

/// The most lines of code a file may have (its trailing `mod tests` apart).
const MAX_CODE_LINES: usize = 900;

/// Lines that are neither blank nor only comments, before a trailing
/// `#[cfg(test)] mod tests { ... }`.
fn code_lines(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let is_test_module = |i: usize| {
        lines[i].trim() == "#[cfg(test)]"
            && lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim().starts_with("mod tests") && l.contains('{'))
    };
    let end = (0..lines.len())
        .rev()
        .find(|&i| is_test_module(i))
        .unwrap_or(lines.len());
    blank_comments(text, false)
        .lines()
        .take(end)
        .filter(|line| !line.trim().is_empty())
        .count()
}

#[test]
fn no_file_has_more_than_900_lines_of_code() {
    let mut offenders = Vec::new();
    for path in rust_files("crates") {
        let path = relative(&path);
        // Tests may be long: test folders, and test modules of their own.
        let segments: Vec<&str> = path.split('/').collect();
        let in_tests = segments[..segments.len() - 1].contains(&"tests");
        if in_tests || path.ends_with("/tests.rs") {
            continue;
        }
        let lines = code_lines(&read(&workspace_root().join(&path)));
        if lines > MAX_CODE_LINES {
            offenders.push(format!("{path}: {lines} lines of code"));
        }
    }
    report(
        &format!("files over {MAX_CODE_LINES} lines of code (split them by concern)"),
        &offenders,
    );
}

#[test]
fn code_lines_leave_out_blanks_comments_and_the_test_module() {
    let text = "//! doc\n\nuse a;\n// note\n/* block\n   comment */\nfn f() {\n    \
                let s = \"\n// in a string\n\";\n}\n\n#[cfg(test)]\nmod tests {\n    \
                fn t() {}\n}\n";
    // use, fn, let, the string's second line, its end, and the brace.
    assert_eq!(code_lines(text), 6);
}

// ---------------------------------------------------------------------------
// 5. JSON keys and commands in the README

/// The file that lists the keys; the README's tables must say the same.
const JSON_KEYS_RS: &str = "crates/ocm/src/json_keys.rs";
/// The file with the command table; the README must list every command
/// and alias.
const COMMAND_DEFS_RS: &str = "crates/ocm/src/cli/defs.rs";
/// The header rows of the README's key tables.
const COMMON_TABLE: &str = "| key | what it holds |";
const EXTRA_TABLE: &str = "| command | extra keys | what they hold |";
const ERROR_TABLE: &str = "| error key | what it holds |";
const ERROR_EXTRA_TABLE: &str = "| error | extra keys | what they hold |";
const SANDBOX_TABLE: &str = "| sandbox JSON | keys | what they hold |";
/// The header row of the README's command table.
const COMMANDS_TABLE: &str = "| command | aliases | what it does |";

/// The string literals in `text`, in order.
fn string_literals(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The text of `const NAME ... = [ ... ];` after its `=`.
fn const_body<'t>(source: &'t str, name: &str) -> Option<&'t str> {
    let start = source.find(&format!("const {name}:"))?;
    let body = &source[start..];
    let body = &body[body.find('=')? + 1..];
    Some(&body[..body.find("];")?])
}

/// A `[(name, &[keys...]), ...]` table's rows: (name, keys).
fn rows_in_rust(source: &str, name: &str) -> Option<Vec<(String, Vec<String>)>> {
    let body = const_body(source, name)?;
    Some(
        body.split('(')
            .skip(1)
            .filter_map(|row| {
                let mut literals = string_literals(row).into_iter();
                Some((literals.next()?, literals.collect()))
            })
            .collect(),
    )
}

/// The rows of the markdown table under the header row `header`, as cells;
/// `None` when there is no such table.
fn markdown_table(markdown: &str, header: &str) -> Option<Vec<Vec<String>>> {
    let mut lines = markdown.lines().map(str::trim);
    lines.find(|line| *line == header)?;
    lines.next()?; // | --- | --- |
    Some(
        lines
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                line.trim_matches('|')
                    .split('|')
                    .map(|cell| cell.trim().to_string())
                    .collect()
            })
            .collect(),
    )
}

/// The `code` spans of a markdown cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The text of a markdown cell outside its code spans, trimmed.
fn plain_text(cell: &str) -> String {
    cell.split('`')
        .step_by(2)
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A row's name: `ocm gc --json` is `gc`, `` `ocm gc --json` entries `` is
/// `gc entries`; a cell without `ocm` is its text.
fn row_name(cell: &str) -> String {
    match code_spans(cell)
        .first()
        .filter(|span| span.starts_with("ocm "))
    {
        Some(span) => {
            let command = span.split_whitespace().nth(1).unwrap_or_default();
            let rest = plain_text(cell);
            if rest.is_empty() {
                command.to_string()
            } else {
                format!("{command} {rest}")
            }
        }
        None => plain_text(cell),
    }
}

/// Compares a list of keys (`const NAME`) with a table's first column.
fn compare_keys(
    differences: &mut Vec<String>,
    readme: &str,
    json_keys: &str,
    name: &str,
    header: &str,
) {
    let rs = const_body(json_keys, name).map(string_literals);
    let md = markdown_table(readme, header).map(|rows| {
        rows.iter()
            .filter_map(|row| code_spans(&row[0]).into_iter().next())
            .collect::<Vec<_>>()
    });
    match (rs, md) {
        (None, _) => differences.push(format!("{JSON_KEYS_RS}: no {name}")),
        (_, None) => differences.push(format!("README.md: no table headed `{header}`")),
        (Some(rs), Some(md)) if rs != md => differences.push(format!(
            "{name}: {JSON_KEYS_RS} has {rs:?}, the README's table {md:?}"
        )),
        _ => {}
    }
}

/// Compares a table of rows (`const NAME`) with a README table whose first
/// column names the row and whose second lists its keys.
fn compare_rows(
    differences: &mut Vec<String>,
    readme: &str,
    json_keys: &str,
    name: &str,
    header: &str,
) {
    let rs = rows_in_rust(json_keys, name);
    let md = markdown_table(readme, header).map(|rows| {
        rows.iter()
            .map(|row| {
                let keys = row.get(1).map(|cell| code_spans(cell)).unwrap_or_default();
                (row_name(&row[0]), keys)
            })
            .collect::<Vec<_>>()
    });
    match (rs, md) {
        (None, _) => differences.push(format!("{JSON_KEYS_RS}: no {name}")),
        (_, None) => differences.push(format!("README.md: no table headed `{header}`")),
        (Some(rs), Some(md)) if rs != md => differences.push(format!(
            "{name}: {JSON_KEYS_RS} has {rs:?}, the README's table {md:?}"
        )),
        _ => {}
    }
}

/// How the README's tables differ from `json_keys.rs`.
fn json_key_differences(readme: &str, json_keys: &str) -> Vec<String> {
    let mut differences = Vec::new();
    compare_keys(
        &mut differences,
        readme,
        json_keys,
        "COMMON_KEYS",
        COMMON_TABLE,
    );
    compare_rows(
        &mut differences,
        readme,
        json_keys,
        "EXTRA_KEYS",
        EXTRA_TABLE,
    );
    compare_keys(
        &mut differences,
        readme,
        json_keys,
        "ERROR_KEYS",
        ERROR_TABLE,
    );
    compare_rows(
        &mut differences,
        readme,
        json_keys,
        "ERROR_EXTRA_KEYS",
        ERROR_EXTRA_TABLE,
    );
    compare_rows(
        &mut differences,
        readme,
        json_keys,
        "SANDBOX_KEYS",
        SANDBOX_TABLE,
    );
    differences
}

#[test]
fn the_readme_lists_the_json_keys_of_json_keys_rs() {
    let readme = read(&workspace_root().join("README.md"));
    let json_keys = read(&workspace_root().join(JSON_KEYS_RS));
    report(
        "JSON keys the README and crates/ocm/src/json_keys.rs disagree on",
        &json_key_differences(&readme, &json_keys),
    );
}

#[test]
fn the_json_key_check_sees_a_difference() {
    let rs = "pub const COMMON_KEYS: [&str; 2] = [\"project\", \"url\"];\n\
              pub const EXTRA_KEYS: [(&str, &[&str]); 2] = [(\"port\", &[\"projectPort\"]), \
              (\"gc entries\", &[\"recordPath\"])];\n\
              pub const ERROR_KEYS: [&str; 1] = [\"error\"];\n\
              pub const ERROR_EXTRA_KEYS: [(&str, &[&str]); 1] = [(\"a failed start\", \
              &[\"logTail\"])];\n\
              pub const SANDBOX_KEYS: [(&str, &[&str]); 1] = [(\"sandbox down\", \
              &[\"name\"])];\n";
    let readme = |url: &str, extra: &str| {
        format!(
            "text\n\n  {COMMON_TABLE}\n  | --- | --- |\n  | `project` | the folder |\n  \
             | `{url}` | the URL |\n\n{EXTRA_TABLE}\n| --- | --- | --- |\n\
             | `ocm port --json` | {extra} | the port |\n\
             | `ocm gc --json` entries | `recordPath` | the record |\n- next\n\n\
             {ERROR_TABLE}\n| --- | --- |\n| `error` | what |\n\n\
             {ERROR_EXTRA_TABLE}\n| --- | --- | --- |\n| a failed start | `logTail` | lines |\n\n\
             {SANDBOX_TABLE}\n| --- | --- | --- |\n| sandbox down | `name` | the name |\n"
        )
    };
    assert_eq!(
        json_key_differences(&readme("url", "`projectPort`"), rs),
        Vec::<String>::new()
    );
    assert_eq!(
        json_key_differences(&readme("uri", "`projectPort`"), rs).len(),
        1
    );
    assert_eq!(
        json_key_differences(&readme("url", "`projectPort`, `more`"), rs).len(),
        1
    );
    assert_eq!(json_key_differences("no tables", rs).len(), 5);
}

/// Every command of `defs.rs`' COMMANDS with its aliases: (word, aliases).
fn commands_in_defs(source: &str) -> Vec<(String, Vec<String>)> {
    let Some(start) = source.find("const COMMANDS:") else {
        return Vec::new();
    };
    let mut commands: Vec<(String, Vec<String>)> = Vec::new();
    for line in source[start..].lines().map(str::trim) {
        if let Some(word) = line.strip_prefix("word: ") {
            commands.push((
                string_literals(word).into_iter().next().unwrap_or_default(),
                Vec::new(),
            ));
        } else if let Some(aliases) = line.strip_prefix("aliases: ")
            && let Some(last) = commands.last_mut()
        {
            last.1 = string_literals(aliases);
        }
    }
    commands
}

/// How the README's command table differs from `defs.rs`.
fn command_differences(readme: &str, defs: &str) -> Vec<String> {
    let defined = commands_in_defs(defs);
    if defined.is_empty() {
        return vec![format!("{COMMAND_DEFS_RS}: no COMMANDS table")];
    }
    let Some(rows) = markdown_table(readme, COMMANDS_TABLE) else {
        return vec![format!("README.md: no table headed `{COMMANDS_TABLE}`")];
    };
    let listed: Vec<(String, Vec<String>)> = rows
        .iter()
        .map(|row| {
            let words: Vec<String> = code_spans(&row[0])
                .first()
                .map(|span| {
                    span.split_whitespace()
                        .skip(1)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            // A subcommand (`ocm session ls`) is two words.
            let two = words.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
            let word = if defined.iter().any(|(w, _)| *w == two) {
                two
            } else {
                words.first().cloned().unwrap_or_default()
            };
            let aliases = row.get(1).map(|cell| code_spans(cell)).unwrap_or_default();
            (word, aliases)
        })
        .collect();
    let mut differences = Vec::new();
    for (word, aliases) in &defined {
        match listed.iter().find(|(w, _)| w == word) {
            None => differences.push(format!("README.md: no row for `ocm {word}`")),
            Some((_, listed)) if listed != aliases => differences.push(format!(
                "README.md: `ocm {word}` lists aliases {listed:?}, {COMMAND_DEFS_RS} has \
                 {aliases:?}"
            )),
            Some(_) => {}
        }
    }
    for (word, _) in &listed {
        if !defined.iter().any(|(w, _)| w == word) {
            differences.push(format!("README.md: `ocm {word}` is not a command"));
        }
    }
    differences
}

#[test]
fn the_readme_lists_every_command_and_alias_and_how_to_install() {
    let readme = read(&workspace_root().join("README.md"));
    // `supervise_defs.rs` holds the rows of `ocm supervise` and `ocm unit`,
    // `sandbox_defs.rs` those of `ocm sandbox ...`, which COMMANDS lists by
    // name.
    let defs = read(&workspace_root().join(COMMAND_DEFS_RS))
        + &read(&workspace_root().join("crates/ocm/src/cli/supervise_defs.rs"))
        + &read(&workspace_root().join("crates/ocm/src/cli/sandbox_defs.rs"));
    let mut differences = command_differences(&readme, &defs);
    if !readme.contains("cargo install --path crates/ocm") {
        differences.push("README.md: does not say `cargo install --path crates/ocm`".into());
    }
    report(
        "the README's command table and crates/ocm/src/cli/defs.rs disagree",
        &differences,
    );
}

#[test]
fn the_command_check_sees_a_difference() {
    let defs = "pub(crate) const COMMANDS: &[CommandDef] = &[\n    CommandDef {\n        \
                word: \"up\",\n        aliases: &[\"start\"],\n    },\n    CommandDef {\n        \
                word: \"ls\",\n        aliases: &[],\n    },\n];\n";
    let readme = |up_aliases: &str| {
        format!(
            "{COMMANDS_TABLE}\n| --- | --- | --- |\n| `ocm up [DIR]` | {up_aliases} | start |\n\
             | `ocm ls` | | list |\n"
        )
    };
    assert_eq!(
        command_differences(&readme("`start`"), defs),
        Vec::<String>::new()
    );
    assert_eq!(command_differences(&readme(""), defs).len(), 1);
    assert_eq!(command_differences("nothing", defs).len(), 1);
}
