//! Finding the token in a request, and the coarse per-route authorization.
//!
//! Token sources are the `Authorization: Bearer` header (exactly RFC 6750's form; a bearer-like
//! value in any other form is a malformed request, see `trustgate_core::bearer_token`) and an
//! optional named cookie. A request carrying more than one token — two Authorization headers,
//! two cookies of that name, or a header and a cookie — is refused with 400, and so are a Cookie
//! header that is not text (on a route with a token cookie) and an `access_token` query
//! parameter, so the token checked is always the only one an upstream could see.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};
use trustgate_core::{AuthError, RequestProblem, bearer_token};

/// Where the token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer`.
    Header,
    /// The route's token cookie.
    Cookie,
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenSource::Header => "the Authorization header",
            TokenSource::Cookie => "the token cookie",
        })
    }
}

impl TokenSource {
    /// A short name, for spans and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Header => "header",
            TokenSource::Cookie => "cookie",
        }
    }
}

/// Finds the request's token, if any.
pub fn extract_token<'a>(
    headers: &'a HeaderMap,
    cookie_name: Option<&str>,
) -> Result<Option<(&'a str, TokenSource)>, AuthError> {
    let mut found: Option<(&'a str, TokenSource)> = None;
    let mut authorizations = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = authorizations.next() {
        if authorizations.next().is_some() {
            return Err(AuthError::InvalidRequest(RequestProblem::MultipleTokens));
        }
        found = bearer_token(value)?.map(|token| (token, TokenSource::Header));
    }
    if let Some(name) = cookie_name {
        for header in headers.get_all(COOKIE) {
            // A Cookie header we cannot read could hold a second token: refused, never skipped
            // (a skipped one was forwarded to the upstream unread).
            let Ok(text) = header.to_str() else {
                return Err(AuthError::InvalidRequest(RequestProblem::UnreadableCookie));
            };
            for pair in text.split(';') {
                if read_differently_as(pair, name) {
                    return Err(AuthError::InvalidRequest(RequestProblem::UnreadableCookie));
                }
                let Some((key, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                if key.trim() != name {
                    continue;
                }
                if found.is_some() {
                    return Err(AuthError::InvalidRequest(RequestProblem::MultipleTokens));
                }
                let value = value.trim().trim_matches('"');
                if value.is_empty() {
                    return Err(AuthError::InvalidRequest(
                        RequestProblem::MalformedAuthorization,
                    ));
                }
                found = Some((value, TokenSource::Cookie));
            }
        }
    }
    Ok(found)
}

/// Whether another parser could read the `;`-separated cookie `pair` as the cookie `name` where
/// this one does not: some (RFC 2109 era) also split at `,`, and some read names case-insensitively
/// or percent-decoded. Such a pair would be a token nobody checked.
fn read_differently_as(pair: &str, name: &str) -> bool {
    let mut pieces = pair.split(',');
    let first = pieces.next().unwrap_or_default();
    let look_alike = cookie_name_of(first).is_some_and(|key| key != name && reads_as(key, name));
    look_alike || pieces.any(|piece| cookie_name_of(piece).is_some_and(|key| reads_as(key, name)))
}

/// The name of a `name=value` cookie pair, trimmed.
fn cookie_name_of(pair: &str) -> Option<&str> {
    pair.split_once('=').map(|(key, _)| key.trim())
}

/// Whether an upstream could read cookie name `key` as `name`: the same once quotes and
/// surrounding white space are taken off, percent-escapes decoded and case ignored.
fn reads_as(key: &str, name: &str) -> bool {
    let key = key.trim().trim_matches('"').trim();
    if !key.contains('%') {
        // The usual name: compared as it is, without decoding into a new buffer.
        return key.eq_ignore_ascii_case(name);
    }
    trustgate_core::percent_decode_lenient(key.as_bytes()).eq_ignore_ascii_case(name.as_bytes())
}

/// Removes the token cookie from every Cookie header, keeping the other cookies in order.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(COOKIE);
    for value in values {
        let Ok(text) = value.to_str() else {
            // Not text: it cannot hold our cookie name in a form we parsed; drop it rather than
            // forward bytes we did not inspect.
            continue;
        };
        let kept: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            // A pair without `=` goes too when it is the name alone: some parsers (PHP's) read
            // `at` as the cookie `at` with an empty value, so it would still reach an upstream
            // as the token cookie. Found by the `decision` fuzz target.
            .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k).trim() != name)
            .collect();
        if kept.is_empty() {
            continue;
        }
        if let Ok(rebuilt) = HeaderValue::from_str(&kept.join("; ")) {
            headers.append(COOKIE, rebuilt);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    const TWO: AuthError = AuthError::InvalidRequest(RequestProblem::MultipleTokens);
    const BAD: AuthError = AuthError::InvalidRequest(RequestProblem::MalformedAuthorization);

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc"] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(
                extract_token(&h, None).unwrap(),
                Some(("abc", TokenSource::Header))
            );
        }
        let h = headers(&[("authorization", "Basic dXNlcjpwdw==")]);
        assert_eq!(extract_token(&h, None).unwrap(), None);
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer\tabc",
            "Basic x, Bearer abc",
        ] {
            let h = headers(&[("authorization", bad)]);
            assert_eq!(extract_token(&h, None).unwrap_err(), BAD, "{bad:?}");
        }
    }

    #[test]
    fn two_tokens_are_refused() {
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(extract_token(&h, None).unwrap_err(), TWO);
        let h = headers(&[("authorization", "Bearer a"), ("cookie", "at=b")]);
        assert_eq!(extract_token(&h, Some("at")).unwrap_err(), TWO);
        let h = headers(&[("cookie", "at=a; at=b")]);
        assert_eq!(extract_token(&h, Some("at")).unwrap_err(), TWO);
        let h = headers(&[("cookie", "at=a"), ("cookie", "at=b")]);
        assert_eq!(extract_token(&h, Some("at")).unwrap_err(), TWO);
        // Without a configured cookie, cookies are not token sources.
        let h = headers(&[("authorization", "Bearer a"), ("cookie", "at=b")]);
        assert_eq!(
            extract_token(&h, None).unwrap(),
            Some(("a", TokenSource::Header))
        );
    }

    /// A pair another parser could read as the token cookie, but this one would not, is refused.
    #[test]
    fn cookies_an_upstream_could_read_differently_are_refused() {
        const UNREADABLE: AuthError = AuthError::InvalidRequest(RequestProblem::UnreadableCookie);
        for value in [
            "AT=forged",
            "At=forged",
            "%61t=forged",
            "%41%54=forged",
            "\"at\"=forged",
            "theme=x, at=forged",
            "theme=x,AT=forged",
            "at=good; theme=x, at=forged",
        ] {
            let h = headers(&[("cookie", value)]);
            assert_eq!(
                extract_token(&h, Some("at")).unwrap_err(),
                UNREADABLE,
                "{value:?}"
            );
        }
        // Other cookies, and the exact name (white space around it is trimmed by every parser),
        // read as before.
        let h = headers(&[("cookie", "theme=dark; lang=en, fr;  at =tok")]);
        assert_eq!(
            extract_token(&h, Some("at")).unwrap(),
            Some(("tok", TokenSource::Cookie))
        );
        let h = headers(&[("cookie", "att=x; xat=y; a=t")]);
        assert_eq!(extract_token(&h, Some("at")).unwrap(), None);
    }

    #[test]
    fn cookie_source_and_removal() {
        let mut h = headers(&[("cookie", "theme=dark; at=tok; lang=en")]);
        assert_eq!(
            extract_token(&h, Some("at")).unwrap(),
            Some(("tok", TokenSource::Cookie))
        );
        remove_cookie(&mut h, "at");
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(h[COOKIE], "theme=dark; lang=en");
        let mut only = headers(&[("cookie", "at=tok")]);
        remove_cookie(&mut only, "at");
        assert!(only.get(COOKIE).is_none());
        // The name alone is a pair some parsers read as the cookie with an empty value.
        let mut bare = headers(&[("cookie", "at"), ("cookie", "theme=dark; at ; x")]);
        remove_cookie(&mut bare, "at");
        assert_eq!(
            bare.get_all(COOKIE).iter().collect::<Vec<_>>(),
            ["theme=dark; x"]
        );
    }
}
