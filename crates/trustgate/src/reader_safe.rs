//! Text from outside the configuration (a `kid` from a JWKS, a token's `sub`) made safe for
//! whoever reads it: the operator tools' output and the audit log both go to terminals, and to
//! viewers that honour bidirectional controls.
//!
//! JSON encoders escape only U+0000 to U+001F. DEL and the C1 controls (U+0080 to U+009F:
//! `\u{9b}` is a CSI, which starts an escape sequence as `ESC [` does), the bidirectional
//! embeddings, overrides and isolates (which reorder what is shown) and the line and paragraph
//! separators (a line break to some viewers) pass raw; these functions escape them too.

use std::fmt::Write as _;

/// Whether `c` acts on the reader rather than being read: a control character, a bidirectional
/// embedding, override or isolate, or a line or paragraph separator.
fn acts_on_the_reader(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Which of those characters [`escaped`] leaves as they are.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    LineFeeds,
    Nothing,
}

/// `text` with each character that [`acts_on_the_reader`] (but the line feeds `keep` names)
/// written by `escape`.
pub(crate) fn escaped(text: &str, keep: Keep, escape: impl Fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if acts_on_the_reader(c) && !(keep == Keep::LineFeeds && c == '\n') {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    out
}

/// Serialized JSON (compact or pretty) with those characters as `\u` escapes: the same strings
/// to a JSON reader. Outside strings a JSON encoder writes only spaces and line feeds, which are
/// kept, and inside them it has already escaped the line feeds; so this is exact on its output.
pub(crate) fn json(serialized: &str) -> String {
    escaped(serialized, Keep::LineFeeds, |c, out| {
        let _ = write!(out, "\\u{:04x}", u32::from(c));
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_escapes_what_encoders_leave_raw_and_reads_back_the_same() {
        let value = serde_json::Value::String(
            "a\u{1b}[2J\u{7f}\u{9b}31m\u{202e}txt.exe\u{2066}\u{2028}\u{2029}\né".to_owned(),
        );
        let written = json(&value.to_string());
        assert_eq!(
            written,
            r#""a\u001b[2J\u007f\u009b31m\u202etxt.exe\u2066\u2028\u2029\né""#
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&written).unwrap(),
            value
        );
    }
}
