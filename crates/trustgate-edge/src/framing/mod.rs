//! Request framing: one unambiguous message length, or the request is refused.

pub mod h1;

use std::fmt;

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, HeaderValue};

use crate::headers::{folded_eq, trim_ows};

// === framing ===

/// Why a request's message framing was refused. Every variant maps to
/// `400 Bad Request` and closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramingError {
    /// Both `Content-Length` and `Transfer-Encoding`: the classic CL.TE /
    /// TE.CL smuggling set-up (RFC 9112 §6.3 allows a server to reject it).
    BothContentLengthAndTransferEncoding,
    /// More than one `Content-Length` field or value, even if identical.
    DuplicateContentLength,
    /// A `Content-Length` that is not 1 to 19 ASCII digits (no sign, no
    /// spaces, no hex, no list).
    InvalidContentLength,
    /// More than one `Transfer-Encoding` field.
    DuplicateTransferEncoding,
    /// A `Transfer-Encoding` other than exactly `chunked` (any case): this
    /// covers smuggling spellings such as `xchunked`, `chunked, identity`,
    /// `chunked;x`, ` chunked` or a vertical tab, as well as legitimate but
    /// unsupported codings such as `gzip, chunked`, which no client of an
    /// API gateway needs.
    ObfuscatedTransferEncoding,
    /// A header name that differs from `Content-Length` or
    /// `Transfer-Encoding` only by `_` for `-`, which CGI-style upstreams
    /// read as the real thing.
    AmbiguousFramingHeader,
    /// A chunked body whose framing is malformed (a bad size line, a bare LF, no CRLF after the
    /// data): hyper fails on it too, but only once the body is read, after the request was sent
    /// on. Seen by `h1_framing` when it arrives with the head.
    MalformedChunkedBody,
    /// The raw bytes of this HTTP/1 request were not checked: the raw-head check has no verdict
    /// for it, a verdict for another request, or a poisoned lock. Refused, never passed.
    Unchecked,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::BothContentLengthAndTransferEncoding => {
                "both content-length and transfer-encoding"
            }
            Self::DuplicateContentLength => "duplicate content-length",
            Self::InvalidContentLength => "invalid content-length",
            Self::DuplicateTransferEncoding => "duplicate transfer-encoding",
            Self::ObfuscatedTransferEncoding => "unsupported transfer-encoding",
            Self::AmbiguousFramingHeader => "ambiguous framing header name",
            Self::MalformedChunkedBody => "malformed chunked body",
            Self::Unchecked => "request bytes not checked",
        };
        f.write_str(text)
    }
}

impl std::error::Error for FramingError {}

/// Longest accepted `Content-Length`, in digits: 19 digits always fit in a
/// `u64`, so no upstream can overflow while parsing it.
const MAX_CONTENT_LENGTH_DIGITS: usize = 19;

/// Request smuggling defence: run on the request headers as parsed, before
/// anything else reads them or the body.
///
/// hyper already refuses or drops some of these cases itself; this check
/// does not depend on that, holds the same rules for HTTP/2, and makes sure
/// that whatever we forward has one unambiguous framing.
///
/// # Errors
///
/// Returns the first [`FramingError`] found.
pub fn check_framing(headers: &HeaderMap) -> Result<(), FramingError> {
    check_framing_fields(
        headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
    )
}

/// [`check_framing`] on header fields as `(name, value)` bytes, names in any case, values without
/// surrounding whitespace. The raw-head check (`h1_framing`) runs it on a head's fields as
/// `httparse` gives them, without building a `HeaderMap`. Other fields are ignored.
///
/// # Errors
///
/// Returns the first [`FramingError`] found, in the order of [`check_framing`]'s rules.
pub fn check_framing_fields<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), FramingError> {
    const CONTENT_LENGTH: &[u8] = b"content-length";
    const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";
    let mut look_alike = false;
    let (mut lengths, mut length) = (0usize, None);
    let (mut codings, mut coding) = (0usize, None);
    for (name, value) in fields {
        if name.len() != CONTENT_LENGTH.len() && name.len() != TRANSFER_ENCODING.len() {
            continue;
        }
        if name.eq_ignore_ascii_case(CONTENT_LENGTH) {
            lengths += 1;
            length.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(TRANSFER_ENCODING) {
            codings += 1;
            coding.get_or_insert(value);
        } else if folded_eq(name, CONTENT_LENGTH) || folded_eq(name, TRANSFER_ENCODING) {
            // Equal once `_` is read as `-`, not as written: a look-alike.
            look_alike = true;
        }
    }
    if look_alike {
        return Err(FramingError::AmbiguousFramingHeader);
    }
    if length.is_some() && coding.is_some() {
        return Err(FramingError::BothContentLengthAndTransferEncoding);
    }
    if let Some(digits) = length {
        if lengths > 1 {
            return Err(FramingError::DuplicateContentLength);
        }
        if digits.is_empty()
            || digits.len() > MAX_CONTENT_LENGTH_DIGITS
            || !digits.iter().all(u8::is_ascii_digit)
        {
            return Err(FramingError::InvalidContentLength);
        }
    }
    if let Some(value) = coding {
        if codings > 1 {
            return Err(FramingError::DuplicateTransferEncoding);
        }
        // Exact match only: no OWS, no list, no parameters. Anything else
        // is a coding some hop may parse differently.
        if !value.eq_ignore_ascii_case(b"chunked") {
            return Err(FramingError::ObfuscatedTransferEncoding);
        }
    }
    Ok(())
}

/// Makes an upstream response's `Content-Length` one field with one value.
///
/// hyper reads a response whose `Content-Length` fields or list elements all agree (`2, 2`, or
/// the field twice) and keeps them as they came. Forwarded like that, an HTTP/1 client gets a
/// field it may read differently from the gateway, and an HTTP/2 client's stack refuses the
/// response as malformed. So equal values become one, as RFC 9110 §8.6 allows a recipient to
/// do. The common case, one field without a comma, is left untouched.
///
/// # Errors
///
/// [`FramingError::DuplicateContentLength`] for values that disagree and
/// [`FramingError::InvalidContentLength`] for one that is not 1 to 19 digits. hyper refuses such
/// a response itself, so this is the fail-closed end of a case it already handles.
pub fn single_content_length(headers: &mut HeaderMap) -> Result<(), FramingError> {
    let mut fields = headers.get_all(CONTENT_LENGTH).iter();
    match (fields.next(), fields.next()) {
        (None, _) => return Ok(()),
        (Some(only), None) if !only.as_bytes().contains(&b',') => return Ok(()),
        _ => {}
    }
    let mut agreed: Option<u64> = None;
    for field in headers.get_all(CONTENT_LENGTH) {
        for element in field.as_bytes().split(|&b| b == b',').map(trim_ows) {
            if element.is_empty()
                || element.len() > MAX_CONTENT_LENGTH_DIGITS
                || !element.iter().all(u8::is_ascii_digit)
            {
                return Err(FramingError::InvalidContentLength);
            }
            // Digits only and at most 19 of them: always a `u64`.
            let length = element
                .iter()
                .fold(0u64, |n, &digit| n * 10 + u64::from(digit - b'0'));
            if agreed.is_some_and(|agreed| agreed != length) {
                return Err(FramingError::DuplicateContentLength);
            }
            agreed = Some(length);
        }
    }
    let Some(length) = agreed else {
        return Err(FramingError::InvalidContentLength);
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    Ok(())
}
