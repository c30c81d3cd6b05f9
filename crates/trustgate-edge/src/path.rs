//! Request-target normalization for routing.
//!
//! The gateway routes on the path returned by [`normalize`] and forwards
//! exactly that path upstream. Routing and forwarding therefore see the same
//! bytes, and no spelling of a path (`/public/../admin`, `/%61dmin`,
//! `//admin`, `/public/%2e%2e/admin`) can reach an upstream under the rules of
//! a weaker route.
//!
//! The normal form is:
//!
//! - percent-encoded *unreserved* characters (`ALPHA / DIGIT / - . _ ~`) are
//!   decoded; every other escape keeps its encoding with upper-case hex
//!   digits, because RFC 3986 §6.2.2 only makes the unreserved set
//!   equivalent to its encoded form (`%3F` is not `?`);
//! - printable ASCII that may not appear raw in a path but that `http`
//!   accepts for compatibility (`"`, `{`, `}`, `|`, `[`, `]`, `^`, …) is
//!   percent-encoded, so `/{x}` and `/%7Bx%7D` are one path;
//! - dot segments are removed as in RFC 3986 §5.2.4, after decoding, so
//!   `%2E%2E` is treated as `..`;
//! - empty segments are merged or rejected, see [`DoubleSlash`];
//! - anything an upstream might read differently from us is rejected, see
//!   [`PathError`].
//!
//! The query is passed through untouched: it does not take part in routing,
//! and rewriting it could change its meaning for the upstream.

use std::fmt;
use trustgate_core::{hex_digit_value, is_unreserved, percent_escape, percent_escaped_byte};

/// Longest path, in bytes, that [`normalize`] accepts, both before and after
/// normalization.
///
/// Real paths are far shorter; the cap bounds the work done per request and
/// the size of what we forward. The output is checked too, because
/// percent-encoding raw characters can make a path longer, and a normal form
/// that fails to normalize again would not be idempotent.
pub const MAX_PATH_LEN: usize = 8192;

/// What [`normalize`] does with empty path segments (`//`).
#[derive(Debug, serde::Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DoubleSlash {
    /// Collapse each run of slashes into one (`/a//b` becomes `/a/b`).
    ///
    /// This is the default because it is what nginx does by default
    /// (`merge_slashes on`) and what most backends and file systems do when
    /// they resolve a path. Routing on the merged form thus matches what the
    /// upstream will resolve, and since the merged path is what we forward,
    /// the upstream never sees the `//` at all. Rejecting is stricter but
    /// breaks clients that build URLs by naive string concatenation.
    #[default]
    Merge,
    /// Refuse any path containing an empty segment, with
    /// [`PathError::DoubleSlash`]. A trailing slash (`/a/`) is still allowed.
    Reject,
}

/// Why a request target was refused. Every variant maps to `400 Bad Request`;
/// the variant itself is for logs only and must not be sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The target does not start with `/`: absolute-form, authority-form,
    /// `*`, or empty. The caller handles the legitimate ones before calling
    /// [`normalize`].
    NotOriginForm,
    /// The path is longer than [`MAX_PATH_LEN`] bytes, before or after
    /// normalization.
    TooLong,
    /// `%2F`: an upstream that decodes it would see a segment boundary that
    /// we did not route on.
    EncodedSlash,
    /// `%5C`: some servers (IIS, many Windows and Java stacks) treat a
    /// decoded backslash as `/`.
    EncodedBackslash,
    /// A raw `\`, which the same servers also treat as `/`.
    Backslash,
    /// A raw `;` or `%3B`. Tomcat, Jetty and Spring cut `;parameters` off
    /// each segment before resolving dot segments, so there
    /// `/public/..;/admin` is `/admin` and `/admin;x` escapes a route on
    /// `/admin`. Path parameters are all but unused by APIs; Spring
    /// Security's `StrictHttpFirewall` refuses them by default too.
    Semicolon,
    /// A raw or percent-encoded NUL byte, which truncates strings in C-based
    /// upstreams.
    Nul,
    /// A raw or percent-encoded control byte (`0x01`–`0x1F`, `0x7F`), such as
    /// the CR LF of a header injection.
    ControlByte,
    /// A raw byte outside ASCII. RFC 9112 requires it to be percent-encoded,
    /// and upstreams disagree on how to decode it.
    NonAscii,
    /// A `%` not followed by two hex digits (`%`, `%4`, `%zz`), which
    /// upstreams handle inconsistently (reject, pass through, or decode).
    BadPercentEncoding,
    /// An empty segment (`//`) under [`DoubleSlash::Reject`].
    DoubleSlash,
    /// `%25` followed by two hex digits that encode `.`, `/`, `\`, `;`, `%` or a control
    /// byte (`%252F`, `%252e%252e`). We route on one decoding; an upstream that decodes twice
    /// would see a `/`, a `..` or a NUL we never routed on.
    EscapedEscape,
    /// Percent-escapes that do not decode to valid UTF-8: overlong forms (`%C0%AE`, a dot to
    /// some decoders), lone continuation bytes (`%80`), truncated sequences and surrogates.
    /// Lenient decoders turn them into `.`, `/` or U+FFFD, each differently. Escaped escapes
    /// of such bytes (`%25C0%25AE`) too, which an upstream that decodes twice sees as the same.
    InvalidUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::NotOriginForm => "request target is not in origin form",
            Self::TooLong => "path is too long",
            Self::EncodedSlash => "path contains an encoded slash",
            Self::EncodedBackslash => "path contains an encoded backslash",
            Self::Backslash => "path contains a backslash",
            Self::Semicolon => "path contains a semicolon",
            Self::Nul => "request target contains a NUL byte",
            Self::ControlByte => "request target contains a control byte",
            Self::NonAscii => "request target contains a raw non-ASCII byte",
            Self::BadPercentEncoding => "path contains an invalid percent escape",
            Self::DoubleSlash => "path contains an empty segment",
            Self::EscapedEscape => "path contains an escaped escape of a separator or control byte",
            Self::InvalidUtf8 => "path escapes do not decode to valid UTF-8",
        };
        f.write_str(text)
    }
}

impl std::error::Error for PathError {}

/// A request target in normal form. Only [`normalize`] builds one, so holding
/// a `NormalizedPath` proves the path was normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    path: String,
    query: Option<String>,
}

// === impl NormalizedPath ===

impl NormalizedPath {
    /// The normalized path: starts with `/`, has no dot segments, no empty
    /// segments except a possible trailing slash, and no encoded `/`, `\` or
    /// control bytes.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query exactly as the client sent it, without the `?`. `Some("")`
    /// for a target ending in `?`, `None` when there was no `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Path and query as they are forwarded upstream.
    #[cfg(test)]
    pub fn path_and_query(&self) -> String {
        match &self.query {
            None => self.path.clone(),
            Some(query) => {
                let mut out = String::with_capacity(self.path.len() + 1 + query.len());
                out.push_str(&self.path);
                out.push('?');
                out.push_str(query);
                out
            }
        }
    }
}

// === normalize ===

/// Normalizes an origin-form request target (`/a/b?x=1`).
///
/// # Errors
///
/// Returns a [`PathError`] when the target is not origin-form, is longer than
/// [`MAX_PATH_LEN`], or contains anything that upstreams could read
/// differently from the gateway. See the variants for the exact rules.
pub fn normalize(
    path_and_query: &str,
    double_slash: DoubleSlash,
) -> Result<NormalizedPath, PathError> {
    if !path_and_query.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let (raw_path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    // Checked before decoding so a huge target costs us nothing; decoding
    // never makes a path longer, only the encoding of raw characters does.
    if raw_path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if let Some(query) = query {
        check_query(query)?;
    }

    let decoded = decode_path(raw_path)?;
    let path = remove_dot_segments(&decoded, double_slash)?;
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    Ok(NormalizedPath {
        path,
        query: query.map(str::to_owned),
    })
}

/// The query is forwarded as is, so only bytes that no upstream should ever
/// see raw are refused. Escapes such as `%00` are left alone: decoding the
/// query is the application's business, and rejecting them would break
/// binary-safe query encodings.
fn check_query(query: &str) -> Result<(), PathError> {
    for &byte in query.as_bytes() {
        match byte {
            0 => return Err(PathError::Nul),
            0x01..=0x1F | 0x7F => return Err(PathError::ControlByte),
            0x80.. => return Err(PathError::NonAscii),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `byte` may appear raw in a path segment (RFC 3986 `pchar` minus
/// `%` and `;`, plus the `/` separator).
fn is_raw_path_char(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

/// Decodes unreserved escapes, canonicalizes the others and refuses the
/// dangerous ones. The output is pure ASCII.
fn decode_path(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut suspicious_escapes = false;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' => {
                let value = percent_escaped_byte(bytes, i).ok_or(PathError::BadPercentEncoding)?;
                match value {
                    // Checked on the whole output below, once unreserved escapes are decoded:
                    // `%25%32%46` is `%252F` after one decoding.
                    b'%' | 0x80.. => {
                        suspicious_escapes = true;
                        percent_escape(&mut out, value);
                    }
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    b';' => return Err(PathError::Semicolon),
                    0 => return Err(PathError::Nul),
                    0x01..=0x1F | 0x7F => return Err(PathError::ControlByte),
                    v if is_unreserved(v) => out.push(char::from(v)),
                    // Encoded non-ASCII (UTF-8) and encoded reserved
                    // characters stay encoded: they are legitimate and not
                    // equivalent to their decoded form.
                    v => percent_escape(&mut out, v),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            0 => return Err(PathError::Nul),
            0x01..=0x1F | 0x7F => return Err(PathError::ControlByte),
            0x80.. => return Err(PathError::NonAscii),
            b if is_raw_path_char(b) => {
                out.push(char::from(b));
                i += 1;
            }
            // Remaining printable ASCII (space, `"`, `#`, `<`, `>`, `[`,
            // `]`, `^`, backtick, `{`, `|`, `}`) must be encoded in a URI;
            // `http` lets some through raw for compatibility. Encoding them
            // keeps one spelling per path.
            b => {
                percent_escape(&mut out, b);
                i += 1;
            }
        }
    }
    if suspicious_escapes {
        check_escapes(&out)?;
    }
    Ok(out)
}

/// The byte that the two hex digits at `bytes[at..at + 2]` spell, if they are hex digits.
fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let high = bytes.get(at).copied().and_then(hex_digit_value)?;
    let low = bytes.get(at + 1).copied().and_then(hex_digit_value)?;
    Some((high << 4) | low)
}

/// Two rules on the canonical path `out`, where every remaining escape is `%` and two upper-case
/// hex digits, and the hex digits after an escaped `%` are raw (they are unreserved):
/// - an escaped `%` followed by two hex digits must not encode `.`, `/`, `\`, `;`, `%` or a
///   control byte, which a second decoding would turn into a separator or a NUL;
/// - each run of escapes of bytes at or above 0x80 must decode to valid UTF-8 on its own, and so
///   must each run of escaped escapes of such bytes (`%25C3%25A9`): a second decoding must not
///   produce the overlong dot of `%25C0%25AE`. Runs end at any other character, so a sequence
///   cannot be completed by an unescaped byte or by an escape of the other level.
fn check_escapes(out: &str) -> Result<(), PathError> {
    let bytes = out.as_bytes();
    // Non-ASCII bytes after one decoding, and after a second one.
    let mut once = Vec::new();
    let mut twice = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (step, in_once, in_twice) = match percent_escaped_byte(bytes, i) {
            Some(value) if value >= 0x80 => {
                once.push(value);
                (3, true, false)
            }
            Some(b'%') => match hex_pair(bytes, i + 3) {
                Some(b'.' | b'/' | b'\\' | b';' | b'%' | 0..=0x1F | 0x7F) => {
                    return Err(PathError::EscapedEscape);
                }
                Some(inner) if inner >= 0x80 => {
                    twice.push(inner);
                    (5, false, true)
                }
                _ => (3, false, false),
            },
            Some(_) => (3, false, false),
            None => (1, false, false),
        };
        if !in_once {
            end_utf8_run(&mut once)?;
        }
        if !in_twice {
            end_utf8_run(&mut twice)?;
        }
        i += step;
    }
    end_utf8_run(&mut once)?;
    end_utf8_run(&mut twice)
}

/// Checks that a finished run of decoded non-ASCII bytes is valid UTF-8, and empties it.
fn end_utf8_run(run: &mut Vec<u8>) -> Result<(), PathError> {
    if !run.is_empty() {
        std::str::from_utf8(run).map_err(|_| PathError::InvalidUtf8)?;
        run.clear();
    }
    Ok(())
}

/// RFC 3986 §5.2.4 on an absolute path, with empty segments handled first
/// according to `double_slash`.
///
/// Merging before resolving matches nginx (`/a//../b` is `/b`, where a pure
/// RFC resolver would say `/a/b`); either is fine for safety because the
/// reverse proxy's upstream receives our result, never the original. Behind a
/// forward-auth proxy the upstream receives the original, so there a target
/// this function would change is refused (`forward_auth::describe`).
fn remove_dot_segments(decoded: &str, double_slash: DoubleSlash) -> Result<String, PathError> {
    // `decoded` starts with '/', so the first item of the split is the empty
    // string before it.
    let mut segments = decoded.split('/').skip(1).peekable();
    let mut kept: Vec<&str> = Vec::new();
    // Whether the resolved path ends with '/': true after a final empty,
    // `.` or `..` segment (`/a/b/..` is `/a/`).
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        match segment {
            "" if is_last => trailing_slash = true,
            "" => match double_slash {
                DoubleSlash::Merge => {}
                DoubleSlash::Reject => return Err(PathError::DoubleSlash),
            },
            "." => trailing_slash = true,
            ".." => {
                // Above the root stays at the root: `/../a` is `/a`.
                kept.pop();
                trailing_slash = true;
            }
            name => {
                kept.push(name);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for segment in &kept {
        path.push('/');
        path.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        path.push('/');
    }
    Ok(path)
}

// === routing helpers ===

/// Segment-aware prefix match on a normalized path.
///
/// `/api` matches `/api`, `/api/` and `/api/x` but not `/apix`. A prefix that
/// ends with `/` (including `/` itself) matches by plain `starts_with`, so
/// `/api/` does not match `/api`. Matching is case-sensitive, as paths are.
pub fn prefix_matches(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Replaces `matched_prefix` at the start of `normalized` by `replacement`.
/// Prefix stripping is `replacement = "/"`.
///
/// The result always starts with `/` and has exactly one `/` at the join, so
/// `/api/x` with prefix `/api` becomes `/x` under `/` and `/v2/x` under
/// `/v2` or `/v2/`. The replacement comes from validated configuration and
/// is used as given otherwise.
///
/// The router only calls this with the prefix that matched; if
/// `matched_prefix` does not match (see [`prefix_matches`]), `normalized` is
/// returned unchanged rather than cut at an arbitrary byte.
pub fn rewrite(normalized: &str, matched_prefix: &str, replacement: &str) -> String {
    if !prefix_matches(normalized, matched_prefix) {
        return normalized.to_owned();
    }
    let rest = normalized.get(matched_prefix.len()..).unwrap_or_default();
    let mut out = String::with_capacity(1 + replacement.len() + rest.len());
    if !replacement.starts_with('/') {
        out.push('/');
    }
    out.push_str(replacement);
    if out.ends_with('/') {
        // `rest` comes from a normalized path, so it starts with at most
        // one '/'.
        out.push_str(rest.strip_prefix('/').unwrap_or(rest));
    } else if rest.is_empty() || rest.starts_with('/') {
        out.push_str(rest);
    } else {
        // The prefix ended with '/', e.g. `/api/` + `x` under `/v2`.
        out.push('/');
        out.push_str(rest);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn merge(input: &str) -> Result<String, PathError> {
        normalize(input, DoubleSlash::Merge).map(|n| n.path().to_owned())
    }

    fn reject(input: &str) -> Result<String, PathError> {
        normalize(input, DoubleSlash::Reject).map(|n| n.path().to_owned())
    }

    /// (input, expected path under `Merge`).
    const CASES: &[(&str, Result<&str, PathError>)] = &[
        // Plain paths.
        ("/", Ok("/")),
        ("/a", Ok("/a")),
        ("/a/", Ok("/a/")),
        ("/a/b/c", Ok("/a/b/c")),
        ("/admin", Ok("/admin")),
        // Dot segments.
        ("/public/../admin", Ok("/admin")),
        ("/a/./b", Ok("/a/b")),
        ("/a/b/../../../c", Ok("/c")),
        ("/../a", Ok("/a")),
        ("/..", Ok("/")),
        ("/.", Ok("/")),
        ("/a/b/..", Ok("/a/")),
        ("/a/b/.", Ok("/a/b/")),
        ("/a/..", Ok("/")),
        ("/a/../", Ok("/")),
        ("/a/.b/..c/...", Ok("/a/.b/..c/...")),
        ("/a/b/../c/./d", Ok("/a/c/d")),
        // Encoded dot segments are decoded before removal.
        ("/public/%2e%2e/admin", Ok("/admin")),
        ("/public/%2E%2E/admin", Ok("/admin")),
        ("/public/.%2e/admin", Ok("/admin")),
        ("/public/%2e./admin", Ok("/admin")),
        ("/%2e%2e/%2e%2e/admin", Ok("/admin")),
        ("/a/%2e/b", Ok("/a/b")),
        ("/a/%2e%2e", Ok("/")),
        ("/a/%2e%2e%2e", Ok("/a/...")),
        // Unreserved escapes are decoded, in either hex case.
        ("/%61dmin", Ok("/admin")),
        ("/%41%42", Ok("/AB")),
        ("/%7Euser", Ok("/~user")),
        ("/%7euser", Ok("/~user")),
        ("/a%2Db%5fc", Ok("/a-b_c")),
        ("/%30%39", Ok("/09")),
        // Reserved and non-ASCII escapes stay encoded, upper-cased.
        ("/a%3fb", Ok("/a%3Fb")),
        ("/a%3Fb", Ok("/a%3Fb")),
        ("/a%40b", Ok("/a%40b")),
        ("/a%25b", Ok("/a%25b")),
        ("/a%252e%252e/x", Err(PathError::EscapedEscape)),
        // Escaped escapes of separators, dots, `%` and control bytes: a second decoding would
        // make them real.
        ("/a%252F..%252Fadmin", Err(PathError::EscapedEscape)),
        ("/a%252f", Err(PathError::EscapedEscape)),
        ("/a%255C", Err(PathError::EscapedEscape)),
        ("/a%253B", Err(PathError::EscapedEscape)),
        ("/a%2525", Err(PathError::EscapedEscape)),
        ("/a%2500", Err(PathError::EscapedEscape)),
        ("/a%250d%250a", Err(PathError::EscapedEscape)),
        ("/a%257F", Err(PathError::EscapedEscape)),
        // The escaped `%` spelled with its own escapes decoded first: `%25%32%46` is `%252F`.
        ("/a%25%32%46", Err(PathError::EscapedEscape)),
        ("/a%25%32%65", Err(PathError::EscapedEscape)),
        // Harmless escaped escapes stay: `%2541` is `%41` after one decoding.
        ("/a%2541", Ok("/a%2541")),
        ("/a%25zz", Ok("/a%25zz")),
        // Escapes that are not valid UTF-8.
        ("/%C0%AE%C0%AE/admin", Err(PathError::InvalidUtf8)),
        ("/a%C0%AF", Err(PathError::InvalidUtf8)),
        ("/a%80", Err(PathError::InvalidUtf8)),
        ("/a%C3", Err(PathError::InvalidUtf8)),
        ("/a%C3/b", Err(PathError::InvalidUtf8)),
        ("/a%C3%A9%A9", Err(PathError::InvalidUtf8)),
        ("/a%E0%80%AF", Err(PathError::InvalidUtf8)),
        ("/a%ED%A0%80", Err(PathError::InvalidUtf8)),
        ("/a%F4%90%80%80", Err(PathError::InvalidUtf8)),
        ("/a%FF", Err(PathError::InvalidUtf8)),
        // A sequence is not completed across another character.
        ("/a%C3a%A9", Err(PathError::InvalidUtf8)),
        // The same one level down, for an upstream that decodes twice.
        ("/%25C0%25AE%25C0%25AE/admin", Err(PathError::InvalidUtf8)),
        ("/a%25c0%25af", Err(PathError::InvalidUtf8)),
        ("/a%2580", Err(PathError::InvalidUtf8)),
        ("/a%25C3", Err(PathError::InvalidUtf8)),
        ("/a%25E0%2580%25AF", Err(PathError::InvalidUtf8)),
        ("/a%25ED%25A0%2580", Err(PathError::InvalidUtf8)),
        // Nor across the two levels.
        ("/a%25C3%A9", Err(PathError::InvalidUtf8)),
        ("/a%C3%25A9", Err(PathError::InvalidUtf8)),
        ("/a%25C3a%25A9", Err(PathError::InvalidUtf8)),
        ("/caf%25C3%25A9", Ok("/caf%25C3%25A9")),
        ("/caf%25c3%25a9/%C3%A9", Ok("/caf%25c3%25a9/%C3%A9")),
        ("/caf%C3%A9/%E2%82%AC", Ok("/caf%C3%A9/%E2%82%AC")),
        ("/%F0%9F%98%80", Ok("/%F0%9F%98%80")),
        ("/caf%c3%a9", Ok("/caf%C3%A9")),
        ("/a%20b", Ok("/a%20b")),
        // Sub-delims other than ';', and ':' and '@', stay raw.
        ("/a:b@c!$&'()*+,=", Ok("/a:b@c!$&'()*+,=")),
        // Printable characters not allowed raw are encoded.
        ("/a{b}", Ok("/a%7Bb%7D")),
        ("/a\"b", Ok("/a%22b")),
        ("/a|b^c[d]", Ok("/a%7Cb%5Ec%5Bd%5D")),
        ("/a b", Ok("/a%20b")),
        ("/a#b", Ok("/a%23b")),
        // Empty segments are merged.
        ("//admin", Ok("/admin")),
        ("///", Ok("/")),
        ("/a//b", Ok("/a/b")),
        ("/a//", Ok("/a/")),
        ("/a//../b", Ok("/b")),
        ("/./", Ok("/")),
        ("/.//admin", Ok("/admin")),
        // Refused.
        ("", Err(PathError::NotOriginForm)),
        ("*", Err(PathError::NotOriginForm)),
        ("a/b", Err(PathError::NotOriginForm)),
        ("http://x/a", Err(PathError::NotOriginForm)),
        ("?x=1", Err(PathError::NotOriginForm)),
        ("/a%2fb", Err(PathError::EncodedSlash)),
        ("/a%2Fb", Err(PathError::EncodedSlash)),
        ("/public/..%2fadmin", Err(PathError::EncodedSlash)),
        ("/public/..;/admin", Err(PathError::Semicolon)),
        ("/public/%2e%2e;/admin", Err(PathError::Semicolon)),
        ("/;x/admin", Err(PathError::Semicolon)),
        ("/admin;jsessionid=1", Err(PathError::Semicolon)),
        ("/a%3bb", Err(PathError::Semicolon)),
        ("/a%3Bb", Err(PathError::Semicolon)),
        ("/a%5cb", Err(PathError::EncodedBackslash)),
        ("/a%5Cb", Err(PathError::EncodedBackslash)),
        ("/a\\b", Err(PathError::Backslash)),
        ("/public\\..\\admin", Err(PathError::Backslash)),
        ("/a%00b", Err(PathError::Nul)),
        ("/a\0b", Err(PathError::Nul)),
        ("/a%0d%0ab", Err(PathError::ControlByte)),
        ("/a%0D%0Ab", Err(PathError::ControlByte)),
        ("/a%01", Err(PathError::ControlByte)),
        ("/a%1f", Err(PathError::ControlByte)),
        ("/a%7f", Err(PathError::ControlByte)),
        ("/a\rb", Err(PathError::ControlByte)),
        ("/a\tb", Err(PathError::ControlByte)),
        ("/a\x7fb", Err(PathError::ControlByte)),
        ("/a%zz", Err(PathError::BadPercentEncoding)),
        ("/a%", Err(PathError::BadPercentEncoding)),
        ("/a%4", Err(PathError::BadPercentEncoding)),
        ("/a%4g", Err(PathError::BadPercentEncoding)),
        ("/a%%41", Err(PathError::BadPercentEncoding)),
        ("/a%\u{e9}", Err(PathError::BadPercentEncoding)),
        ("/caf\u{e9}", Err(PathError::NonAscii)),
    ];

    #[test]
    fn normalization_table() {
        assert!(CASES.len() >= 40);
        for (input, expected) in CASES {
            let got = merge(input);
            assert_eq!(
                got.as_deref(),
                expected.as_ref().map(|s| *s),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn table_outputs_are_fixed_points() {
        for (input, _) in CASES {
            if let Ok(once) = merge(input) {
                assert_eq!(merge(&once), Ok(once.clone()), "input {input:?}");
            }
        }
    }

    #[test]
    fn reject_mode_refuses_empty_segments() {
        assert_eq!(reject("//admin"), Err(PathError::DoubleSlash));
        assert_eq!(reject("/a//b"), Err(PathError::DoubleSlash));
        assert_eq!(reject("/a//"), Err(PathError::DoubleSlash));
        assert_eq!(reject("///"), Err(PathError::DoubleSlash));
        assert_eq!(reject("/.//admin"), Err(PathError::DoubleSlash));
    }

    #[test]
    fn reject_mode_allows_single_slashes() {
        assert_eq!(reject("/"), Ok("/".to_owned()));
        assert_eq!(reject("/a/"), Ok("/a/".to_owned()));
        assert_eq!(reject("/a/b/../c"), Ok("/a/c".to_owned()));
        assert_eq!(reject("/a?x=//y"), Ok("/a".to_owned()));
    }

    #[test]
    fn default_is_merge() {
        assert_eq!(DoubleSlash::default(), DoubleSlash::Merge);
    }

    #[test]
    fn query_is_passed_through() {
        let n = normalize("/a/../b?x=/../y", DoubleSlash::Merge).unwrap();
        assert_eq!(n.path(), "/b");
        assert_eq!(n.query(), Some("x=/../y"));
        assert_eq!(n.path_and_query(), "/b?x=/../y");

        let n = normalize("/a?b=%2f%00%zz&c=d?e\\", DoubleSlash::Merge).unwrap();
        assert_eq!(n.path(), "/a");
        assert_eq!(n.query(), Some("b=%2f%00%zz&c=d?e\\"));
    }

    #[test]
    fn query_presence_is_preserved() {
        let n = normalize("/a", DoubleSlash::Merge).unwrap();
        assert_eq!(n.query(), None);
        assert_eq!(n.path_and_query(), "/a");
        let n = normalize("/a?", DoubleSlash::Merge).unwrap();
        assert_eq!(n.query(), Some(""));
        assert_eq!(n.path_and_query(), "/a?");
    }

    #[test]
    fn query_raw_control_bytes_are_refused() {
        let norm = |s| normalize(s, DoubleSlash::Merge).map(|_| ());
        assert_eq!(norm("/a?x=\r\nSet-Cookie:1"), Err(PathError::ControlByte));
        assert_eq!(norm("/a?x=\0"), Err(PathError::Nul));
        assert_eq!(norm("/a?x=\x7f"), Err(PathError::ControlByte));
        assert_eq!(norm("/a?x=\u{e9}"), Err(PathError::NonAscii));
    }

    #[test]
    fn length_cap() {
        let ok = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert_eq!(merge(&ok).map(|p| p.len()), Ok(MAX_PATH_LEN));
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(merge(&long), Err(PathError::TooLong));
        // The query does not count.
        let query = format!("/a?{}", "q".repeat(2 * MAX_PATH_LEN));
        assert!(normalize(&query, DoubleSlash::Merge).is_ok());
        // Growth through encoding is caught on the output.
        let grows = format!("/{}", "{".repeat(MAX_PATH_LEN / 2));
        assert_eq!(merge(&grows), Err(PathError::TooLong));
        // Dot segments can shrink a long input, but it is refused first.
        let shrinks = format!("/{}/../a", "b".repeat(MAX_PATH_LEN));
        assert_eq!(merge(&shrinks), Err(PathError::TooLong));
    }

    #[test]
    fn prefix_matching() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api/", "/api"));
        assert!(prefix_matches("/api/x", "/api"));
        assert!(!prefix_matches("/apix", "/api"));
        assert!(!prefix_matches("/ap", "/api"));
        assert!(!prefix_matches("/API", "/api"));
        assert!(prefix_matches("/", "/"));
        assert!(prefix_matches("/anything/at/all", "/"));
        assert!(prefix_matches("/api/x", "/api/"));
        assert!(prefix_matches("/api/", "/api/"));
        assert!(!prefix_matches("/api", "/api/"));
        assert!(prefix_matches("/a/b/c", "/a/b"));
        assert!(!prefix_matches("/a/bc", "/a/b"));
    }

    #[test]
    fn routing_on_normalized_paths_cannot_be_fooled() {
        for attack in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/.%2e/admin",
            "//admin",
            "/%61dmin",
            "/./admin",
            "/public/./../admin/",
        ] {
            let path = merge(attack).unwrap();
            assert!(prefix_matches(&path, "/admin"), "{attack:?} -> {path:?}");
            assert!(!prefix_matches(&path, "/public"), "{attack:?} -> {path:?}");
        }
    }

    #[test]
    fn rewrite_strips_and_replaces_prefixes() {
        let cases = [
            // (path, prefix, replacement, expected)
            ("/api", "/api", "/", "/"),
            ("/api/", "/api", "/", "/"),
            ("/api/x", "/api", "/", "/x"),
            ("/api/x/", "/api", "/", "/x/"),
            ("/api/x", "/api", "/v2", "/v2/x"),
            ("/api/x", "/api", "/v2/", "/v2/x"),
            ("/api", "/api", "/v2", "/v2"),
            ("/api/", "/api", "/v2", "/v2/"),
            ("/api/x", "/api/", "/", "/x"),
            ("/api/x", "/api/", "/v2", "/v2/x"),
            ("/api/x", "/api/", "/v2/", "/v2/x"),
            ("/api/", "/api/", "/", "/"),
            ("/api/", "/api/", "/v2", "/v2"),
            ("/x", "/", "/", "/x"),
            ("/", "/", "/", "/"),
            ("/x", "/", "/v2", "/v2/x"),
            ("/x", "/", "/v2/", "/v2/x"),
            ("/api/x", "/api", "", "/x"),
            ("/api/x", "/api", "v2", "/v2/x"),
            // Not a segment match: left alone.
            ("/apix", "/api", "/", "/apix"),
            ("/other", "/api", "/v2", "/other"),
        ];
        for (path, prefix, replacement, expected) in cases {
            assert_eq!(
                rewrite(path, prefix, replacement),
                expected,
                "rewrite({path:?}, {prefix:?}, {replacement:?})"
            );
        }
    }

    #[test]
    fn error_display_is_coarse() {
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "path contains an encoded slash"
        );
    }

    // === property tests ===

    /// Pieces that exercise every branch of the normalizer.
    fn tricky_target() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "/",
            "//",
            ".",
            "..",
            "%2e",
            "%2E",
            "%2e%2e",
            ".%2E",
            "a",
            "admin",
            "public",
            "%61",
            "%41",
            "%7e",
            "%3f",
            "%3F",
            "%25",
            "%2f",
            "%5c",
            "%00",
            "%0d",
            "%7f",
            "%",
            "%4",
            "%zz",
            "%c3%a9",
            "\\",
            "?",
            "#",
            ";",
            "%3b",
            "{",
            " ",
            "~",
            "-",
            "_",
            ":",
            "@",
            "\t",
            "\0",
            "\u{e9}",
            "=",
            "&",
            "%252F",
            "%252e",
            "%2541",
            "%25%32%46",
            "%C0%AE",
            "%80",
            "%C3",
            "%A9",
            "%E2%82%AC",
            "%25C0%25AE",
            "%25C3%25A9",
            "%25C3",
            "%25E2%2582%25AC",
        ]);
        prop::collection::vec(pieces, 0..24).prop_map(|v| format!("/{}", v.concat()))
    }

    fn any_target() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            any::<String>().prop_map(|s| format!("/{s}")),
            "/[ -~]{0,64}",
            tricky_target(),
        ]
    }

    fn check_normal_form(path: &str) {
        assert!(path.starts_with('/'), "{path:?}");
        assert!(path.is_ascii(), "{path:?}");
        assert!(path.len() <= MAX_PATH_LEN);
        assert!(!path.contains("//"), "{path:?}");
        assert!(!path.contains('?'), "{path:?}");
        assert!(!path.contains('\\'), "{path:?}");
        assert!(!path.bytes().any(|b| b.is_ascii_control()), "{path:?}");
        for segment in path.split('/') {
            assert!(segment != "." && segment != "..", "{path:?}");
        }
        let upper = path.to_ascii_uppercase();
        assert!(!path.contains(';'), "{path:?}");
        for bad in ["%2F", "%5C", "%00", "%3B"] {
            assert!(!upper.contains(bad), "{path:?}");
        }
        // A second decoding, as a careless upstream does it, gives no separator, `%`, `.`
        // or control byte that was not there already: every `%25` is followed by something
        // harmless, and the escapes of non-ASCII bytes are valid UTF-8.
        let once = percent_decode(path.as_bytes());
        for (i, _) in path.match_indices("%25") {
            if let Some(pair) = path.get(i + 3..i + 5)
                && let Ok(inner) = u8::from_str_radix(pair, 16)
            {
                assert!(
                    !matches!(inner, b'.' | b'/' | b'\\' | b';' | b'%' | 0..=0x1F | 0x7F),
                    "{path:?}"
                );
            }
        }
        assert!(std::str::from_utf8(&once).is_ok(), "{path:?}");
        // Nor does a second decoding give bytes that are not UTF-8, such as an overlong dot.
        assert!(
            std::str::from_utf8(&percent_decode(&once)).is_ok(),
            "{path:?}"
        );
        // Every escape is well-formed, upper-case, and not of an
        // unreserved character.
        let bytes = path.as_bytes();
        for (i, _) in path.match_indices('%') {
            let (high, low) = (bytes[i + 1], bytes[i + 2]);
            assert!(matches!(high, b'0'..=b'9' | b'A'..=b'F'), "{path:?}");
            assert!(matches!(low, b'0'..=b'9' | b'A'..=b'F'), "{path:?}");
            let value = (hex_digit_value(high).unwrap() << 4) | hex_digit_value(low).unwrap();
            assert!(!is_unreserved(value), "{path:?}");
        }
    }

    /// One plain percent-decoding, as any upstream does it.
    fn percent_decode(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match percent_escaped_byte(bytes, i) {
                Some(value) => {
                    out.push(value);
                    i += 3;
                }
                None => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        out
    }

    /// What an upstream that fully decodes and then resolves the path would
    /// route on: a segment list, with the percent-encoding the test added
    /// undone.
    fn resolve_reference(segments: &[String]) -> String {
        let mut stack: Vec<&str> = Vec::new();
        for segment in segments {
            match segment.as_str() {
                "" | "." => {}
                ".." => {
                    stack.pop();
                }
                name => stack.push(name),
            }
        }
        format!("/{}", stack.join("/"))
    }

    /// Percent-encodes every character of `segment` with probability given
    /// by the bits of `mask`, in random hex case.
    fn encode_some(segment: &str, mask: u64, lower: bool) -> String {
        let mut out = String::new();
        for (i, byte) in segment.bytes().enumerate() {
            if mask >> (i % 64) & 1 == 1 {
                let hex = format!("%{byte:02X}");
                out.push_str(&if lower { hex.to_ascii_lowercase() } else { hex });
            } else {
                out.push(char::from(byte));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics(input in any_target()) {
            let _ = normalize(&input, DoubleSlash::Merge);
            let _ = normalize(&input, DoubleSlash::Reject);
        }

        #[test]
        fn output_is_in_normal_form_and_idempotent(input in any_target()) {
            if let Ok(once) = normalize(&input, DoubleSlash::Merge) {
                check_normal_form(once.path());
                let again = normalize(&once.path_and_query(), DoubleSlash::Merge);
                prop_assert_eq!(again.as_ref(), Ok(&once));
                let strict = normalize(&once.path_and_query(), DoubleSlash::Reject);
                prop_assert_eq!(strict.as_ref(), Ok(&once));
            }
        }

        #[test]
        fn reject_mode_agrees_with_merge_when_it_accepts(input in any_target()) {
            if let Ok(strict) = normalize(&input, DoubleSlash::Reject) {
                prop_assert_eq!(normalize(&input, DoubleSlash::Merge), Ok(strict));
            }
        }

        #[test]
        fn routing_agrees_with_resolved_path(
            segments in prop::collection::vec(
                prop::sample::select(vec!["api", "admin", "public", "apix", "a", ".", "..", ""]),
                0..10,
            ),
            masks in prop::collection::vec(any::<u64>(), 10),
            lower in any::<bool>(),
            prefix in prop::sample::select(vec!["/", "/api", "/admin", "/public", "/api/admin", "/a"]),
        ) {
            let segments: Vec<String> = segments.into_iter().map(str::to_owned).collect();
            let raw = format!(
                "/{}",
                segments
                    .iter()
                    .zip(&masks)
                    .map(|(s, m)| encode_some(s, *m, lower))
                    .collect::<Vec<_>>()
                    .join("/")
            );
            let normalized = normalize(&raw, DoubleSlash::Merge).unwrap();
            let resolved = resolve_reference(&segments);
            prop_assert_eq!(
                prefix_matches(normalized.path(), prefix),
                prefix_matches(&resolved, prefix),
                "raw {:?} normalized {:?} resolved {:?}", raw, normalized.path(), resolved
            );
            prop_assert_eq!(normalized.path().trim_end_matches('/'), resolved.trim_end_matches('/'));
        }

        #[test]
        fn rewrite_output_is_well_formed(
            input in tricky_target(),
            replacement in prop::sample::select(vec!["", "/", "/v2", "/v2/", "v2", "/a/b"]),
            cut in any::<prop::sample::Index>(),
        ) {
            if let Ok(normalized) = normalize(&input, DoubleSlash::Merge) {
                let path = normalized.path();
                // Use a segment boundary of the path as the prefix.
                let boundaries: Vec<usize> =
                    path.match_indices('/').map(|(i, _)| i).chain([path.len()]).collect();
                let end = boundaries[cut.index(boundaries.len())];
                let prefix = if end == 0 { "/" } else { &path[..end] };
                prop_assert!(prefix_matches(path, prefix));
                let out = rewrite(path, prefix, replacement);
                prop_assert!(out.starts_with('/'), "{:?}", out);
                prop_assert!(!out.contains("//"), "{:?}", out);
                prop_assert!(out.ends_with(path.get(end..).unwrap_or_default().trim_start_matches('/')));
            }
        }
    }
}
