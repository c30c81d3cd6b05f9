//! Registered-claim checks: `exp`, `nbf`, `iat`, `aud`, `typ`, lifetime and required claims.
//!
//! Date claims are strictly typed: a string, bool, null, array, object or out-of-range number is
//! an error, never "absent". Fractional NumericDates are accepted and kept to the millisecond.

use std::time::Duration;

use crate::error::Reason;
use crate::json::{Json, Object};

/// The latest accepted NumericDate: 9999-12-31T23:59:59Z.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// Whether `exp` must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExpiryPolicy {
    /// A token without `exp` is rejected (the default).
    #[default]
    Required,
    /// A token without `exp` never expires. Only for issuers that cannot be fixed.
    DangerOptional,
}

/// Whether `aud` must be present and match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AudiencePolicy {
    /// `aud` must name one of the configured audiences (the default).
    #[default]
    Required,
    /// `aud` is not checked. A token for any service of this issuer is accepted.
    DangerSkip,
}

/// The claim rules for one issuer.
#[derive(Debug, Clone)]
pub struct ClaimsPolicy {
    /// Accepted audiences; one of them must appear in `aud`.
    pub audiences: Vec<String>,
    /// Whether `aud` is checked.
    pub audience: AudiencePolicy,
    /// Whether `exp` is required.
    pub expiry: ExpiryPolicy,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// A required header `typ` (for example `at+jwt`, RFC 9068). Compared case-insensitively, with
    /// an optional `application/` prefix.
    pub required_typ: Option<String>,
    /// Maximum `exp - iat` (or `exp - now` when `iat` is absent).
    pub max_lifetime: Option<Duration>,
    /// Claims that must be present and not null.
    pub required_claims: Vec<String>,
}

impl ClaimsPolicy {
    /// The safe defaults for `audiences`: `exp` and `aud` required, 60 s leeway.
    pub fn new(audiences: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            audiences: audiences.into_iter().map(Into::into).collect(),
            audience: AudiencePolicy::Required,
            expiry: ExpiryPolicy::Required,
            leeway: Duration::from_secs(60),
            required_typ: None,
            max_lifetime: None,
            required_claims: Vec::new(),
        }
    }
}

/// The time claims of a verified token, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) exp_ms: Option<i64>,
    pub(crate) nbf_ms: Option<i64>,
    pub(crate) iat_ms: Option<i64>,
    pub(crate) leeway_ms: i64,
}

impl Times {
    /// Re-checks the time claims against `now_ms`; used on every cache hit as well.
    pub(crate) fn check(&self, now_ms: i64) -> Result<(), Reason> {
        if let Some(exp) = self.exp_ms
            && now_ms >= exp.saturating_add(self.leeway_ms)
        {
            return Err(Reason::Expired);
        }
        if let Some(nbf) = self.nbf_ms
            && nbf > now_ms.saturating_add(self.leeway_ms)
        {
            return Err(Reason::NotYetValid);
        }
        if let Some(iat) = self.iat_ms
            && iat > now_ms.saturating_add(self.leeway_ms)
        {
            return Err(Reason::IssuedInFuture);
        }
        Ok(())
    }
}

/// Reads a NumericDate claim. Absent is `Ok(None)`; any other non-number is an error.
pub(crate) fn numeric_date(claims: &Object<'_>, name: &str) -> Result<Option<i64>, Reason> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Json::Number(number) = value else {
        return Err(Reason::BadDateClaim);
    };
    let secs = number.as_f64().ok_or(Reason::BadDateClaim)?;
    if !secs.is_finite() || !(0.0..=MAX_NUMERIC_DATE).contains(&secs) {
        return Err(Reason::BadDateClaim);
    }
    // In range by the check above, so the cast cannot saturate.
    #[allow(clippy::cast_possible_truncation)]
    Ok(Some((secs * 1000.0).floor() as i64))
}

fn typ_matches(found: &str, required: &str) -> bool {
    let strip = |s: &str| -> String {
        let lower = s.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map(str::to_owned)
            .unwrap_or(lower)
    };
    strip(found) == strip(required)
}

impl ClaimsPolicy {
    /// Checks every claim rule. Called only after the signature has verified.
    pub(crate) fn check(
        &self,
        typ: Option<&str>,
        claims: &Object<'_>,
        now_ms: i64,
    ) -> Result<Times, Reason> {
        let leeway_ms = i64::try_from(self.leeway.as_millis()).unwrap_or(i64::MAX);
        let times = Times {
            exp_ms: numeric_date(claims, "exp")?,
            nbf_ms: numeric_date(claims, "nbf")?,
            iat_ms: numeric_date(claims, "iat")?,
            leeway_ms,
        };
        if times.exp_ms.is_none() && self.expiry == ExpiryPolicy::Required {
            return Err(Reason::MissingExpiry);
        }
        times.check(now_ms)?;
        if let Some(max) = self.max_lifetime {
            let max_ms = i64::try_from(max.as_millis()).unwrap_or(i64::MAX);
            let exp = times.exp_ms.ok_or(Reason::LifetimeTooLong)?;
            let start = times.iat_ms.unwrap_or(now_ms);
            if exp.saturating_sub(start) > max_ms.saturating_add(leeway_ms) {
                return Err(Reason::LifetimeTooLong);
            }
        }
        if let Some(sub) = claims.get("sub")
            && !matches!(sub, Json::String(_))
        {
            return Err(Reason::BadSubject);
        }
        if self.audience == AudiencePolicy::Required {
            self.check_audience(claims.get("aud"))?;
        }
        if let Some(required) = &self.required_typ {
            match typ {
                Some(found) if typ_matches(found, required) => {}
                _ => return Err(Reason::BadType),
            }
        }
        for name in &self.required_claims {
            match claims.get(name) {
                None | Some(Json::Null) => return Err(Reason::MissingClaim),
                Some(_) => {}
            }
        }
        Ok(times)
    }

    fn check_audience(&self, aud: Option<&Json<'_>>) -> Result<(), Reason> {
        let accepted = |candidate: &str| self.audiences.iter().any(|a| a == candidate);
        match aud {
            Some(Json::String(aud)) if accepted(aud) => Ok(()),
            Some(Json::Array(list)) => {
                // Every member must be a string, so a malformed list is not half-accepted.
                let mut found = false;
                for item in list {
                    let Json::String(aud) = item else {
                        return Err(Reason::BadAudience);
                    };
                    found |= accepted(aud);
                }
                if found {
                    Ok(())
                } else {
                    Err(Reason::BadAudience)
                }
            }
            _ => Err(Reason::BadAudience),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: i64 = 1_700_000_000;

    fn check(policy: &ClaimsPolicy, claims: Value) -> Result<Times, Reason> {
        let text = claims.to_string();
        let object = crate::json::parse_borrowed(text.as_bytes())?;
        policy.check(None, &object, NOW * 1000)
    }

    fn policy() -> ClaimsPolicy {
        ClaimsPolicy::new(["api"])
    }

    #[test]
    fn exp_is_required_and_checked_with_leeway() {
        let p = policy();
        assert_eq!(check(&p, json!({"aud":"api"})), Err(Reason::MissingExpiry));
        assert!(check(&p, json!({"aud":"api","exp":NOW + 10})).is_ok());
        assert!(check(&p, json!({"aud":"api","exp":NOW - 59})).is_ok());
        assert_eq!(
            check(&p, json!({"aud":"api","exp":NOW - 60})),
            Err(Reason::Expired)
        );
        let mut optional = policy();
        optional.expiry = ExpiryPolicy::DangerOptional;
        assert!(check(&optional, json!({"aud":"api"})).is_ok());
    }

    #[test]
    fn nbf_and_iat() {
        let p = policy();
        assert!(check(&p, json!({"aud":"api","exp":NOW+100,"nbf":NOW+60})).is_ok());
        assert_eq!(
            check(&p, json!({"aud":"api","exp":NOW+100,"nbf":NOW+61})),
            Err(Reason::NotYetValid)
        );
        assert_eq!(
            check(&p, json!({"aud":"api","exp":NOW+100,"iat":NOW+61})),
            Err(Reason::IssuedInFuture)
        );
    }

    #[test]
    fn date_claims_are_strictly_typed() {
        let p = policy();
        for bad in [
            json!("1700000100"),
            json!(true),
            json!(null),
            json!([NOW + 100]),
            json!({"t": NOW}),
            json!(-1),
            json!(1e300),
            json!(253_402_300_800_u64),
            json!(u64::MAX),
        ] {
            for claim in ["exp", "nbf", "iat"] {
                let mut claims = json!({"aud":"api","exp":NOW + 100});
                claims[claim] = bad.clone();
                assert_eq!(
                    check(&p, claims),
                    Err(Reason::BadDateClaim),
                    "{claim}={bad}"
                );
            }
        }
        let times = check(&p, json!({"aud":"api","exp":(NOW as f64) + 100.5})).unwrap();
        assert_eq!(times.exp_ms, Some(NOW * 1000 + 100_500));
    }

    #[test]
    fn audience_forms() {
        let p = ClaimsPolicy::new(["api", "other"]);
        let exp = NOW + 100;
        assert!(check(&p, json!({"exp":exp,"aud":"api"})).is_ok());
        assert!(check(&p, json!({"exp":exp,"aud":["x","other"]})).is_ok());
        for bad in [
            json!({"exp":exp}),
            json!({"exp":exp,"aud":"API"}),
            json!({"exp":exp,"aud":"api "}),
            json!({"exp":exp,"aud":"ap"}),
            json!({"exp":exp,"aud":[]}),
            json!({"exp":exp,"aud":["x"]}),
            json!({"exp":exp,"aud":["api", 1]}),
            json!({"exp":exp,"aud":null}),
            json!({"exp":exp,"aud":{"api":true}}),
        ] {
            assert_eq!(check(&p, bad.clone()), Err(Reason::BadAudience), "{bad}");
        }
        let mut skip = p.clone();
        skip.audience = AudiencePolicy::DangerSkip;
        assert!(check(&skip, json!({"exp":exp})).is_ok());
    }

    #[test]
    fn typ_lifetime_and_required_claims() {
        let mut p = policy();
        p.required_typ = Some("at+jwt".into());
        p.max_lifetime = Some(Duration::from_secs(3600));
        p.required_claims = vec!["client_id".into()];
        let ok = json!({"aud":"api","exp":NOW+100,"iat":NOW,"client_id":"c"}).to_string();
        let ok = crate::json::parse_borrowed(ok.as_bytes()).unwrap();
        assert!(p.check(Some("at+jwt"), &ok, NOW * 1000).is_ok());
        assert!(p.check(Some("application/AT+JWT"), &ok, NOW * 1000).is_ok());
        assert_eq!(p.check(Some("JWT"), &ok, NOW * 1000), Err(Reason::BadType));
        assert_eq!(p.check(None, &ok, NOW * 1000), Err(Reason::BadType));
        let long = json!({"aud":"api","exp":NOW+7200,"iat":NOW,"client_id":"c"}).to_string();
        let long = crate::json::parse_borrowed(long.as_bytes()).unwrap();
        assert_eq!(
            p.check(Some("at+jwt"), &long, NOW * 1000),
            Err(Reason::LifetimeTooLong)
        );
        let missing = json!({"aud":"api","exp":NOW+100,"client_id":null}).to_string();
        let missing = crate::json::parse_borrowed(missing.as_bytes()).unwrap();
        assert_eq!(
            p.check(Some("at+jwt"), &missing, NOW * 1000),
            Err(Reason::MissingClaim)
        );
    }
}
