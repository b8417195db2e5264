//! Text ocm did not write itself (paths, a port holder's command line, the
//! server's log and messages), made safe to print: one function,
//! [`escape`], turns every control character into a visible escape, so
//! foreign text can neither break a table row nor drive the terminal.
//!
//! Log text goes through [`LogText`] first, which drops ANSI colour and
//! cursor sequences (`ESC [ ... m`, `ESC ] ... BEL`), then escapes the rest
//! the same way, also when it arrives in pieces (`ocm logs -f`).

use std::io::{self, Write};
use std::path::Path;

/// `text` with every control character escaped: `\n`, `\r`, `\t`, `\x1b`
/// for C0 and DEL, `\u{85}` for C1, and `\u{202e}` for the characters
/// that reorder or hide text (bidirectional overrides, zero-width marks).
/// Everything else is unchanged.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// A path for people: lossily decoded, then [`escape`]d.
pub fn escape_path(path: &Path) -> String {
    escape(&path.to_string_lossy())
}

/// One line of a log for people: ANSI sequences dropped, the rest escaped.
pub fn log_line(line: &str) -> String {
    let mut text = LogText::default();
    let mut out = String::new();
    text.push(line.as_bytes(), &mut out, false);
    text.finish(&mut out, false);
    out
}

/// One line of a log for JSON: ANSI sequences dropped, other characters
/// kept as they are (JSON escapes them).
pub fn log_line_raw(line: &str) -> String {
    let mut text = LogText::default();
    let mut out = String::new();
    text.push(line.as_bytes(), &mut out, true);
    text.finish(&mut out, true);
    out
}

/// True for the characters [`escape`] escapes.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    if !needs_escape(c) {
        out.push(c);
        return;
    }
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
    }
}

/// Where [`LogText`] is in an escape sequence.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Sequence {
    #[default]
    None,
    /// After ESC.
    Escape,
    /// In `ESC [` ... up to a final byte in `@`..`~`.
    Csi,
    /// In `ESC ]` ... up to BEL or `ESC \`.
    Osc,
    /// ESC inside an OSC (perhaps its `ESC \` end).
    OscEscape,
}

/// Log bytes to printable text, piece by piece: ANSI sequences dropped,
/// invalid UTF-8 shown as `\xNN`, control characters [`escape`]d (but
/// newlines kept when asked: they end the log's lines).
#[derive(Debug, Default)]
pub struct LogText {
    sequence: Sequence,
    /// The start of a UTF-8 character cut off at the end of a piece.
    partial: Vec<u8>,
    /// What the current sequence has consumed, written back escaped if it
    /// never ends (a lone ESC at the end of the text).
    pending: String,
}

impl LogText {
    /// Appends the printable form of `bytes` to `out`. With `raw`, control
    /// characters are kept (for JSON); newlines are always kept.
    pub fn push(&mut self, bytes: &[u8], out: &mut String, raw: bool) {
        let joined: Vec<u8>;
        let mut bytes = if self.partial.is_empty() {
            bytes
        } else {
            joined = [std::mem::take(&mut self.partial).as_slice(), bytes].concat();
            &joined[..]
        };
        loop {
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    self.chars(text, out, raw);
                    return;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    // The prefix was just checked to be UTF-8.
                    let text = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
                    self.chars(text, out, raw);
                    match error.error_len() {
                        // Cut off: wait for the rest.
                        None => {
                            self.partial = bytes[valid..].to_vec();
                            return;
                        }
                        Some(len) => {
                            for byte in &bytes[valid..valid + len] {
                                out.push_str(&format!("\\x{byte:02x}"));
                            }
                            bytes = &bytes[valid + len..];
                        }
                    }
                }
            }
        }
    }

    /// Writes out what is still held: a cut-off character, or a sequence
    /// that never ended.
    pub fn finish(&mut self, out: &mut String, raw: bool) {
        for byte in std::mem::take(&mut self.partial) {
            out.push_str(&format!("\\x{byte:02x}"));
        }
        let pending = std::mem::take(&mut self.pending);
        self.sequence = Sequence::None;
        if raw {
            out.push_str(&pending);
        } else {
            out.push_str(&escape(&pending));
        }
    }

    fn chars(&mut self, text: &str, out: &mut String, raw: bool) {
        for c in text.chars() {
            self.sequence = match (self.sequence, c) {
                (Sequence::None, '\u{1b}') => {
                    self.pending.push(c);
                    Sequence::Escape
                }
                (Sequence::None, c) => {
                    if raw || c == '\n' {
                        out.push(c);
                    } else {
                        push_escaped(out, c);
                    }
                    Sequence::None
                }
                (Sequence::Escape, '[') => {
                    self.pending.push(c);
                    Sequence::Csi
                }
                (Sequence::Escape, ']') => {
                    self.pending.push(c);
                    Sequence::Osc
                }
                // Another escape (`ESC c`, `ESC 7`...): not a colour; show it.
                (Sequence::Escape, c) => {
                    let pending = std::mem::take(&mut self.pending);
                    if raw {
                        out.push_str(&pending);
                        out.push(c);
                    } else {
                        out.push_str(&escape(&pending));
                        push_escaped(out, c);
                    }
                    Sequence::None
                }
                (Sequence::Csi, '\u{40}'..='\u{7e}') => {
                    self.pending.clear();
                    Sequence::None
                }
                (Sequence::Csi, '\u{20}'..='\u{3f}') => {
                    self.pending.push(c);
                    Sequence::Csi
                }
                // Not a CSI byte: the sequence was broken; show what it was.
                (Sequence::Csi, c) => {
                    let pending = std::mem::take(&mut self.pending);
                    out.push_str(&if raw { pending } else { escape(&pending) });
                    self.sequence = Sequence::None;
                    self.chars(c.encode_utf8(&mut [0; 4]), out, raw);
                    continue;
                }
                (Sequence::Osc, '\u{7}') => {
                    self.pending.clear();
                    Sequence::None
                }
                (Sequence::Osc | Sequence::OscEscape, '\u{1b}') => {
                    self.pending.push(c);
                    Sequence::OscEscape
                }
                (Sequence::OscEscape, '\\') => {
                    self.pending.clear();
                    Sequence::None
                }
                (Sequence::Osc | Sequence::OscEscape, '\n') => {
                    // A newline ends a runaway OSC: the log's lines matter more.
                    let pending = std::mem::take(&mut self.pending);
                    out.push_str(&if raw { pending } else { escape(&pending) });
                    out.push('\n');
                    Sequence::None
                }
                (Sequence::Osc | Sequence::OscEscape, c) => {
                    self.pending.push(c);
                    Sequence::Osc
                }
            };
        }
    }
}

/// A writer that passes log bytes on as [`LogText`] makes them printable.
pub struct LogWriter<W: Write> {
    inner: W,
    text: LogText,
}

impl<W: Write> LogWriter<W> {
    pub fn new(inner: W) -> Self {
        LogWriter {
            inner,
            text: LogText::default(),
        }
    }
}

impl<W: Write> Write for LogWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut out = String::new();
        self.text.push(bytes, &mut out, false);
        self.inner.write_all(out.as_bytes())?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for LogWriter<W> {
    fn drop(&mut self) {
        let mut out = String::new();
        self.text.finish(&mut out, false);
        let _ = self.inner.write_all(out.as_bytes());
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain /path ü"), "plain /path ü");
        assert_eq!(escape("a\nb\tc\rd"), r"a\nb\tc\rd");
        assert_eq!(escape("\u{1b}[31mred"), r"\x1b[31mred");
        assert_eq!(escape("del\u{7f} c1\u{85}"), r"del\x7f c1\u{85}");
        assert_eq!(escape("abc\u{202e}fed"), r"abc\u{202e}fed");
        assert_eq!(escape_path(Path::new("/tmp/new\nline")), r"/tmp/new\nline");
    }

    #[test]
    fn log_lines_lose_their_colours_and_escape_the_rest() {
        assert_eq!(log_line("\u{1b}[1;31mfatal:\u{1b}[0m bad"), "fatal: bad");
        assert_eq!(log_line("bell\u{7} here"), r"bell\x07 here");
        assert_eq!(log_line("title\u{1b}]0;hi\u{7}done"), "titledone");
        assert_eq!(log_line("lone \u{1b}"), r"lone \x1b");
        assert_eq!(log_line("reset \u{1b}c!"), r"reset \x1bc!");
        assert_eq!(log_line_raw("\u{1b}[2mdim\u{1b}[0m\u{7}"), "dim\u{7}");
    }

    #[test]
    fn pieces_give_what_the_whole_gives() {
        let log = "ok \u{1b}[31mred\u{1b}[0m ü\u{7}\nnext \u{1b}]0;t\u{1b}\\x\n";
        let bytes: Vec<u8> = log
            .as_bytes()
            .iter()
            .copied()
            .chain([0xff, b'\n'])
            .collect();
        let mut whole = String::new();
        let mut text = LogText::default();
        text.push(&bytes, &mut whole, false);
        text.finish(&mut whole, false);
        assert_eq!(whole, "ok red ü\\x07\nnext x\n\\xff\n");
        for cut in 0..bytes.len() {
            let mut pieces = String::new();
            let mut text = LogText::default();
            text.push(&bytes[..cut], &mut pieces, false);
            text.push(&bytes[cut..], &mut pieces, false);
            text.finish(&mut pieces, false);
            assert_eq!(pieces, whole, "cut at {cut}");
        }
    }

    #[test]
    fn the_writer_escapes_what_passes() {
        let mut out = Vec::new();
        {
            let mut writer = LogWriter::new(&mut out);
            writer.write_all(b"a\x1b[3").unwrap();
            writer.write_all(b"1mb\x07\n").unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "ab\\x07\n");
    }
}
