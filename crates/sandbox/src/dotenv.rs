//! The dotenv format people write: `KEY=value`, blank lines, `# comments`,
//! `export KEY=value`, single quotes (literal), double quotes (escapes),
//! unquoted values with a trailing ` # comment`. Nothing is evaluated: no
//! `$VAR` expansion, no command substitution. Errors carry the line and the
//! key, never the value.

use std::fmt;

/// One `KEY=value` of a file, in file order.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value, unquoted and unescaped.
    pub value: String,
    /// The line the entry starts on (1-based).
    pub line: usize,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are secrets.
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("value", &"<redacted>")
            .field("line", &self.line)
            .finish()
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The line is not `KEY=value` (the text is not repeated: it may be a
    /// secret).
    NotAnAssignment,
    /// The key is not letters, digits and `_` (not starting with a digit).
    BadKey,
    /// A quoted value has no closing quote.
    Unterminated(char),
    /// Something other than a comment follows a quoted value.
    TextAfterQuote,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotAnAssignment => f.write_str("expected KEY=value"),
            Problem::BadKey => {
                f.write_str("a key is letters, digits and '_', not starting with a digit")
            }
            Problem::Unterminated(q) => write!(f, "the value's opening {q} is never closed"),
            Problem::TextAfterQuote => {
                f.write_str("only a # comment may follow a quoted value on its line")
            }
        }
    }
}

/// A parse failure: where, which key if it got that far, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line.
    pub line: usize,
    /// The key of the entry, when it was read.
    pub key: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(key) = &self.key {
            write!(f, " ({key})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ParseError {}

/// Whether `key` is a valid key.
pub fn is_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a dotenv text into its entries, in order (a key given twice
/// appears twice; the last one counts, see [`get`]).
pub fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Cursor {
        chars: &chars,
        at: 0,
        line: 1,
    };
    let mut entries = Vec::new();
    loop {
        p.skip_blank();
        let Some(c) = p.peek() else { break };
        if c == '#' {
            p.skip_line();
            continue;
        }
        let line = p.line;
        let err = |key: Option<&str>, problem| ParseError {
            line,
            key: key.map(str::to_string),
            problem,
        };
        let key_char = |c: char| !c.is_whitespace() && c != '=';
        let mut word = p.take_while(key_char);
        if word == "export" && matches!(p.peek(), Some(' ' | '\t')) {
            p.skip_spaces();
            word = p.take_while(key_char);
        }
        p.skip_spaces();
        if p.peek() != Some('=') {
            return Err(err(None, Problem::NotAnAssignment));
        }
        if !is_key(&word) {
            return Err(err(None, Problem::BadKey));
        }
        p.at += 1;
        p.skip_spaces();
        let value = match p.peek() {
            Some(q @ ('\'' | '"')) => {
                p.at += 1;
                let value = p
                    .quoted(q)
                    .ok_or_else(|| err(Some(&word), Problem::Unterminated(q)))?;
                p.skip_spaces();
                match p.peek() {
                    None | Some('\n') => {}
                    Some('#') => p.skip_line(),
                    Some('\r') if p.chars.get(p.at + 1).is_none_or(|c| *c == '\n') => {
                        p.at += 1;
                    }
                    Some(_) => return Err(err(Some(&word), Problem::TextAfterQuote)),
                }
                value
            }
            _ => p.unquoted(),
        };
        entries.push(Entry {
            key: word,
            value,
            line,
        });
    }
    Ok(entries)
}

/// The value of the last entry for `key`.
pub fn get<'a>(entries: &'a [Entry], key: &str) -> Option<&'a str> {
    entries
        .iter()
        .rev()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}

/// `KEY=value` with the value written so that [`parse`] reads it back
/// exactly: bare when it is plain, in single quotes when it has no `'`,
/// else in double quotes with `\\`, `\"`, `\n`, `\r` and `\t` escaped.
/// `key` must be a valid key ([`is_key`]).
pub fn render(key: &str, value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,:/@+%~^=".contains(c);
    if value.chars().all(plain) {
        format!("{key}={value}")
    } else if !value.contains('\'') {
        format!("{key}='{value}'")
    } else {
        let mut out = format!("{key}=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

struct Cursor<'a> {
    chars: &'a [char],
    at: usize,
    line: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.bump();
        }
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.at += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.at;
        while matches!(self.peek(), Some(c) if f(c)) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    /// The rest of a quoted value (after the opening quote), or `None`
    /// when it is never closed.
    fn quoted(&mut self, quote: char) -> Option<String> {
        let mut out = String::new();
        loop {
            let c = self.bump()?;
            if c == quote {
                return Some(out);
            }
            if c == '\\' && quote == '"' {
                let next = self.bump()?;
                match next {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            } else {
                out.push(c);
            }
        }
    }

    /// An unquoted value: to the end of the line, without a ` # comment`,
    /// trimmed.
    fn unquoted(&mut self) -> String {
        let start = self.at;
        self.skip_line();
        let line = &self.chars[start..self.at];
        let mut end = line.len();
        for (i, c) in line.iter().enumerate() {
            if *c == '#' && i > 0 && line[i - 1].is_whitespace() {
                end = i;
                break;
            }
        }
        let value: String = line[..end].iter().collect();
        value.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn one(text: &str) -> String {
        let all = pairs(text);
        assert_eq!(all.len(), 1, "{text:?}: {all:?}");
        all[0].1.clone()
    }

    #[test]
    fn the_forms_people_write() {
        let text = "# a comment\n\nA=1\nexport B=two words  # trailing\n  C = spaced  \nD='lit $X \\n'\nE=\"tab\\tnl\\nq\\\"bs\\\\\"\nF=\nG=a#b\nH=$(rm -rf /) `id` $HOME\nI=\"multi\nline\" # c\nexport=x\n";
        let got = pairs(text);
        let want: Vec<(String, String)> = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "spaced"),
            ("D", "lit $X \\n"),
            ("E", "tab\tnl\nq\"bs\\"),
            ("F", ""),
            ("G", "a#b"),
            ("H", "$(rm -rf /) `id` $HOME"),
            ("I", "multi\nline"),
            ("export", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        assert_eq!(one("K='a'\r\n"), "a");
        assert_eq!(one("K=\"a\\$b\""), "a\\$b");
    }

    #[test]
    fn last_entry_wins() {
        let entries = parse("K=1\nK=2\n").unwrap();
        assert_eq!(get(&entries, "K"), Some("2"));
        assert_eq!(get(&entries, "L"), None);
    }

    #[test]
    fn errors_name_line_and_key_never_the_value() {
        let cases = [
            ("A=1\nhunter2secret\n", 2, None, Problem::NotAnAssignment),
            ("A=1\n\n1BAD=hunter2secret\n", 3, None, Problem::BadKey),
            (
                "K='hunter2secret\n",
                1,
                Some("K"),
                Problem::Unterminated('\''),
            ),
            (
                "X=1\nK=\"hunter2secret",
                2,
                Some("K"),
                Problem::Unterminated('"'),
            ),
            ("K='hunter2' secret", 1, Some("K"), Problem::TextAfterQuote),
            ("my-key=hunter2secret", 1, None, Problem::BadKey),
        ];
        for (text, line, key, problem) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(
                err,
                ParseError {
                    line,
                    key: key.map(str::to_string),
                    problem
                },
                "{text:?}"
            );
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(err.to_string().contains(&format!("line {line}")), "{err}");
        }
    }

    #[test]
    fn entries_do_not_debug_their_values() {
        let entries = parse("K=hunter2secret").unwrap();
        assert!(!format!("{entries:?}").contains("hunter2"));
    }

    /// A small deterministic generator (xorshift): the property test needs
    /// no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn render_round_trips_awkward_values() {
        let alphabet: Vec<char> = "ab Z09'\"#$\\\n\r\t =`(){}!;&|*é-_.%".chars().collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut fixed = vec![
            String::new(),
            " lead".into(),
            "trail ".into(),
            "#start".into(),
            "a #b".into(),
            "'".into(),
            "\"".into(),
            "\\".into(),
            "\\n".into(),
            "$(x)".into(),
            "\n".into(),
            "'\"\\".into(),
        ];
        for _ in 0..3000 {
            let len = (rng.next() % 12) as usize;
            fixed.push(
                (0..len)
                    .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                    .collect(),
            );
        }
        for value in fixed {
            let text = format!("# head\n{}\nNEXT=1\n", render("KEY", &value));
            let entries = parse(&text).unwrap_or_else(|e| panic!("{value:?}: {text:?}: {e}"));
            assert_eq!(get(&entries, "KEY"), Some(value.as_str()), "{text:?}");
            assert_eq!(get(&entries, "NEXT"), Some("1"), "{text:?}");
        }
    }
}
