//! `[[route]]`: from the file's flat table to a typed `Route`, whose trust pattern holds only the
//! settings that pattern uses. Every combination a pattern cannot honour is refused here, with a
//! message that says which setting belongs to which pattern.

use std::time::Duration;

use http::HeaderName;
use trustgate_core::IdentityField;
use trustgate_edge::Route;
use trustgate_edge::path::{self, DoubleSlash};
use trustgate_edge::router::{host_without_port, is_host_and_port};
use trustgate_edge::trust::{
    Assertion, ForwardToken, IdentityHeaders, InternalToken, Requirements, Trust, Validation,
};

use super::file::{FilePattern, FileRoute};
use super::{ConfigError, InternalIssuerConfig, IssuerEntry, UpstreamConfig, claim_path};

/// Headers that describe the request or its forwarding: never an identity header to inject.
fn reserved_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization"
            | "cookie"
            | "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "forwarded"
            | "x-real-ip"
    ) || name.as_str().starts_with("x-forwarded-")
}

fn identity_field(from: &str) -> Option<IdentityField> {
    Some(match from {
        "subject" => IdentityField::Subject,
        "roles" => IdentityField::Roles,
        "scopes" => IdentityField::Scopes,
        "tenant" => IdentityField::Tenant,
        "client" => IdentityField::Client,
        "issuer" => IdentityField::Issuer,
        other => IdentityField::Claim(other.strip_prefix("claim:")?.to_owned()),
    })
}

/// What the file says, checked against the rest of the configuration.
pub(super) fn route(
    index: usize,
    route: FileRoute,
    issuers: &[IssuerEntry],
    upstreams: &[UpstreamConfig],
    internal: Option<&InternalIssuerConfig>,
) -> Result<Route, ConfigError> {
    let name = &route.name;
    let err = |message: String| ConfigError::new(format!("route {name:?}: {message}"));
    if !upstreams.iter().any(|u| u.id == route.upstream) {
        let known: Vec<&str> = upstreams.iter().map(|u| u.id.as_str()).collect();
        return Err(err(format!(
            "upstream {:?} is not defined; defined upstreams: {known:?}",
            route.upstream
        )));
    }
    let prefix = match path::normalize(&route.prefix, DoubleSlash::Reject) {
        Ok(normalized) if normalized.query().is_none() && normalized.path() == route.prefix => {
            route.prefix.clone()
        }
        _ => {
            return Err(err(format!(
                "prefix {:?} must be a normalized path starting with '/', without '..', '//', '%2F' or a query",
                route.prefix
            )));
        }
    };
    let rewrite = match (route.strip_prefix, &route.rewrite_prefix) {
        (true, Some(_)) => return Err(err("set strip_prefix or rewrite_prefix, not both".into())),
        (true, None) => Some("/".to_owned()),
        (false, Some(rewrite)) => {
            if !rewrite.starts_with('/') || rewrite.contains("..") || rewrite.contains("//") {
                return Err(err(format!(
                    "rewrite_prefix {rewrite:?} must start with '/' and contain no '..' or '//'"
                )));
            }
            Some(rewrite.clone())
        }
        (false, None) => None,
    };
    // A host no request could carry would never match: refused, by the rule requests meet.
    if let Some(host) = route.host.as_deref()
        && !is_host_and_port(host.as_bytes())
    {
        return Err(err(format!(
            "host {host:?} is not a host name or address; write it like \"api.example.com\""
        )));
    }
    // Normalized exactly as request hosts are (lowercase, no port, no trailing dot).
    let host = route
        .host
        .as_deref()
        .map(|h| host_without_port(h).into_owned());
    let trust = trust(&route, issuers, internal)?;
    Ok(Route {
        index: u32::try_from(index).map_err(|_| err("too many routes".into()))?,
        name: route.name.clone(),
        host,
        prefix,
        upstream: route.upstream,
        rewrite,
        trust,
    })
}

/// The route's trust pattern, with only its own settings.
fn trust(
    route: &FileRoute,
    issuers: &[IssuerEntry],
    internal: Option<&InternalIssuerConfig>,
) -> Result<Trust, ConfigError> {
    let name = &route.name;
    let err = |message: &str| ConfigError::new(format!("route {name:?}: {message}"));
    let validates = matches!(
        route.pattern,
        FilePattern::ForwardToken | FilePattern::IdentityHeaders | FilePattern::InternalToken
    );
    if !validates && (route.allow_anonymous || !route.require.is_empty()) {
        return Err(err(
            "require/allow_anonymous only apply to patterns where the gateway validates (forward-token, identity-headers, internal-token)",
        ));
    }
    if route.assertion
        && !matches!(
            route.pattern,
            FilePattern::IdentityHeaders | FilePattern::ForwardToken
        )
    {
        return Err(err(
            "assertion = true applies to identity-headers and forward-token routes",
        ));
    }
    if route.pattern != FilePattern::InternalToken
        && (route.internal_ttl.is_some() || route.internal_claims.is_some())
    {
        return Err(err(
            "internal_ttl and internal_claims only apply to pattern \"internal-token\"",
        ));
    }
    if route.pattern != FilePattern::IdentityHeaders && route.headers.is_some() {
        return Err(err("headers only apply to pattern \"identity-headers\""));
    }
    if route.pattern == FilePattern::InternalToken && route.allow_anonymous {
        return Err(err(
            "internal-token routes always need a token (allow_anonymous cannot be set)",
        ));
    }
    let needs_signer = route.pattern == FilePattern::InternalToken || route.assertion;
    if needs_signer && internal.is_none() {
        return Err(err(
            "internal tokens and assertions are signed by the gateway; add an [internal_issuer] section",
        ));
    }
    // The audience of internal tokens and assertions: the service behind the route.
    let service = route
        .service
        .clone()
        .unwrap_or_else(|| route.upstream.clone());
    let assertion = route.assertion.then(|| Assertion {
        service: service.clone(),
    });
    Ok(match route.pattern {
        FilePattern::Public => Trust::Public,
        FilePattern::ServiceValidates => Trust::ServiceValidates,
        FilePattern::ForwardToken => Trust::ForwardToken(ForwardToken {
            validation: validation(route, issuers)?,
            allow_anonymous: route.allow_anonymous,
            assertion,
        }),
        FilePattern::IdentityHeaders => {
            let validation = validation(route, issuers)?;
            let headers = identity_headers(route, issuers, &validation.issuers)?;
            Trust::IdentityHeaders(IdentityHeaders {
                validation,
                allow_anonymous: route.allow_anonymous,
                headers,
                assertion,
            })
        }
        FilePattern::InternalToken => {
            let ttl = internal_ttl(route, internal)?;
            Trust::InternalToken(InternalToken {
                validation: validation(route, issuers)?,
                service,
                ttl,
                claims: route
                    .internal_claims
                    .clone()
                    .unwrap_or_else(InternalToken::default_claims),
            })
        }
    })
}

/// The issuers, token cookie and requirements of a validating route.
fn validation(route: &FileRoute, issuers: &[IssuerEntry]) -> Result<Validation, ConfigError> {
    let name = &route.name;
    let route_issuers: Vec<String> = match &route.issuers {
        Some(ids) => ids
            .iter()
            .map(|id| {
                issuers
                    .iter()
                    .find(|i| &i.id == id)
                    .map(|i| i.config.issuer.clone())
                    .ok_or_else(|| {
                        let known: Vec<&str> = issuers.iter().map(|i| i.id.as_str()).collect();
                        ConfigError::new(format!(
                            "route {name:?}: issuer {id:?} is not defined; defined issuer ids: {known:?}"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
        None => issuers.iter().map(|i| i.config.issuer.clone()).collect(),
    };
    if route_issuers.is_empty() {
        return Err(ConfigError::new(format!(
            "route {name:?}: pattern {:?} validates tokens but no [[issuer]] is configured",
            route.pattern.name()
        )));
    }
    if route.token_cookie.as_ref().is_some_and(|c| {
        c.is_empty()
            || !c
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    }) {
        return Err(ConfigError::new(format!(
            "route {name:?}: token_cookie must be a valid cookie name"
        )));
    }
    let require = Requirements {
        scopes: route.require.scopes.clone(),
        roles: route.require.roles.clone(),
        claims: route
            .require
            .claims
            .iter()
            .map(|(path, values)| {
                Ok((
                    claim_path(path, &format!("route {name:?} require.claims"))?,
                    values.clone(),
                ))
            })
            .collect::<Result<_, ConfigError>>()?,
        mode: route.require.mode,
    };
    Ok(Validation {
        issuers: route_issuers,
        token_cookie: route.token_cookie.clone(),
        require,
    })
}

/// The headers an identity-headers route injects.
fn identity_headers(
    route: &FileRoute,
    issuers: &[IssuerEntry],
    route_issuers: &[String],
) -> Result<Vec<(HeaderName, IdentityField)>, ConfigError> {
    let name = &route.name;
    let Some(bindings) = &route.headers else {
        return Ok(IdentityHeaders::default_headers());
    };
    let mut out = Vec::new();
    for binding in bindings {
        let header = HeaderName::from_bytes(binding.name.as_bytes()).map_err(|_| {
            ConfigError::new(format!(
                "route {name:?}: {:?} is not a valid header name",
                binding.name
            ))
        })?;
        let field = identity_field(&binding.from).ok_or_else(|| {
            ConfigError::new(format!(
                "route {name:?}: header {:?} from {:?}: use subject, roles, scopes, tenant, client, issuer or claim:<name> (a name from the issuer's [claims.extra])",
                binding.name, binding.from
            ))
        })?;
        if let IdentityField::Claim(claim) = &field {
            let known = issuers
                .iter()
                .filter(|i| route_issuers.contains(&i.config.issuer))
                .any(|i| i.config.mapping.extra.iter().any(|(n, _)| n == claim));
            if !known {
                return Err(ConfigError::new(format!(
                    "route {name:?}: header {:?} uses claim:{claim} but no issuer of this route maps it; add it under [issuer.claims.extra]",
                    binding.name
                )));
            }
        }
        if reserved_header(&header) {
            return Err(ConfigError::new(format!(
                "route {name:?}: {:?} cannot be used as an identity header",
                binding.name
            )));
        }
        out.push((header, field));
    }
    Ok(out)
}

/// An internal-token route's token lifetime: configured, or 60 s, or the issuer's maximum if
/// that is shorter.
fn internal_ttl(
    route: &FileRoute,
    internal: Option<&InternalIssuerConfig>,
) -> Result<Duration, ConfigError> {
    let name = &route.name;
    if let Some(ttl) = route.internal_ttl
        && ttl.0 < super::MIN_INTERNAL_TTL
    {
        return Err(ConfigError::new(format!(
            "route {name:?}: internal_ttl must be at least 2s"
        )));
    }
    let ttl = route.internal_ttl.map_or_else(
        || {
            internal.map_or(Duration::from_secs(60), |i| {
                i.max_ttl.min(Duration::from_secs(60))
            })
        },
        |d| d.0,
    );
    if let Some(internal) = internal
        && ttl > internal.max_ttl
    {
        return Err(ConfigError::new(format!(
            "route {name:?}: internal_ttl {ttl:?} exceeds internal_issuer.max_ttl {:?}",
            internal.max_ttl
        )));
    }
    Ok(ttl)
}

/// What `check` reports and `serve` logs at load (and on reload): settings that are allowed but
/// are likely not what was meant. One sentence per finding.
pub(crate) fn warnings(routes: &[Route]) -> Vec<String> {
    let mut warnings = bare_path_warnings(routes);
    warnings.extend(subject_without_issuer_warnings(routes));
    warnings
}

/// Identity-headers routes that accept tokens of several issuers and inject the subject (or the
/// client id) without the issuer: `sub` is unique only within its issuer, so two people, one at
/// each issuer, who share a `sub` reach the service as one user (one account, one set of
/// records). Not an error: issuers may share one namespace of subjects (two realms of one
/// directory), which only the operator knows.
fn subject_without_issuer_warnings(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .filter_map(|route| {
            let Trust::IdentityHeaders(pattern) = &route.trust else {
                return None;
            };
            if pattern.validation.issuers.len() < 2
                || pattern
                    .headers
                    .iter()
                    .any(|(_, field)| *field == IdentityField::Issuer)
            {
                return None;
            }
            let (header, field) = pattern.headers.iter().find(|(_, field)| {
                matches!(field, IdentityField::Subject | IdentityField::Client)
            })?;
            Some(format!(
                "route {:?}: accepts tokens of {} issuers ({}) and injects {header} from the {} without the issuer: one {} at two issuers is one caller to the service; add {{ name = \"X-User-Issuer\", from = \"issuer\" }} and key callers by both, or keep the issuers on separate routes",
                route.name,
                pattern.validation.issuers.len(),
                pattern.validation.issuers.join(", "),
                if *field == IdentityField::Subject { "subject" } else { "client id" },
                if *field == IdentityField::Subject { "sub" } else { "client id" },
            ))
        })
        .collect()
}

/// Routes whose prefix ends in `/` leave the path without it to another route: `/admin/`
/// matches `/admin/x` but not `/admin`, which goes to the next best route (often a catch-all
/// with a weaker pattern), while many upstreams serve `/admin` and `/admin/` alike. Not an
/// error (it is how such a prefix is documented to match), but worth saying at load: one
/// sentence per such route, naming the route that takes the bare path. A bare path no route
/// takes gets 404, which needs no warning.
fn bare_path_warnings(routes: &[Route]) -> Vec<String> {
    let router = trustgate_edge::router::Router::new(routes.iter().map(|route| {
        (
            route.host.clone(),
            route.prefix.clone(),
            std::sync::Arc::new(route.index),
        )
    }));
    routes
        .iter()
        .filter_map(|route| {
            let bare = route.prefix.strip_suffix('/').filter(|bare| !bare.is_empty())?;
            let (_, other) = router.select(route.host.as_deref(), bare)?;
            let other = routes.iter().find(|r| r.index == **other && r.index != route.index)?;
            Some(format!(
                "route {:?}: prefix {:?} does not match {bare:?} itself, which route {:?} ({}) takes; a prefix without the trailing / ({bare:?}) covers both",
                route.name,
                route.prefix,
                other.name,
                other.trust.name(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod warning_tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::*;

    fn routes(table: &str) -> Vec<Route> {
        let text = format!(
            "[[issuer]]\nid = \"idp\"\nissuer = \"https://idp.example\"\njwks_url = \"https://idp.example/jwks\"\naudiences = [\"api\"]\n\n[[upstream]]\nid = \"app\"\nurl = \"http://127.0.0.1:9001\"\n{table}"
        );
        crate::config::parse(&text, Path::new("/etc/trustgate"), &|_| None)
            .unwrap()
            .routes
    }

    /// Two issuers, and a route that takes both; `extra` is added to the route.
    fn two_issuer_routes(extra: &str) -> Vec<Route> {
        let text = format!(
            "[[issuer]]\nid = \"a\"\nissuer = \"https://a.example\"\njwks_url = \"https://a.example/jwks\"\naudiences = [\"api\"]\n\n[[issuer]]\nid = \"b\"\nissuer = \"https://b.example\"\njwks_url = \"https://b.example/jwks\"\naudiences = [\"api\"]\n\n[[upstream]]\nid = \"app\"\nurl = \"http://127.0.0.1:9001\"\n\n[[route]]\nname = \"users\"\nprefix = \"/users\"\nupstream = \"app\"\npattern = \"identity-headers\"\n{extra}"
        );
        crate::config::parse(&text, Path::new("/etc/trustgate"), &|_| None)
            .unwrap()
            .routes
    }

    #[test]
    fn a_subject_from_several_issuers_without_the_issuer_is_warned_about() {
        // The default headers inject the subject and not the issuer.
        assert_eq!(
            warnings(&two_issuer_routes("")),
            [
                "route \"users\": accepts tokens of 2 issuers (https://a.example, https://b.example) and injects x-user-id from the subject without the issuer: one sub at two issuers is one caller to the service; add { name = \"X-User-Issuer\", from = \"issuer\" } and key callers by both, or keep the issuers on separate routes"
            ]
        );
        let client = "headers = [{ name = \"X-Client\", from = \"client\" }]\n";
        assert_eq!(
            warnings(&two_issuer_routes(client)),
            [
                "route \"users\": accepts tokens of 2 issuers (https://a.example, https://b.example) and injects x-client from the client id without the issuer: one client id at two issuers is one caller to the service; add { name = \"X-User-Issuer\", from = \"issuer\" } and key callers by both, or keep the issuers on separate routes"
            ]
        );
        // The issuer injected too, one issuer only, or no caller injected: nothing to say.
        for extra in [
            "headers = [{ name = \"X-User-Id\", from = \"subject\" }, { name = \"X-User-Issuer\", from = \"issuer\" }]\n",
            "issuers = [\"a\"]\n",
            "headers = [{ name = \"X-Tenant-Id\", from = \"tenant\" }]\n",
        ] {
            assert_eq!(
                warnings(&two_issuer_routes(extra)),
                Vec::<String>::new(),
                "{extra}"
            );
        }
    }

    #[test]
    fn a_prefix_ending_in_a_slash_is_warned_about_when_another_route_takes_the_bare_path() {
        let warnings = bare_path_warnings(&routes(
            "[[route]]\nname = \"admin\"\nprefix = \"/admin/\"\nupstream = \"app\"\npattern = \"forward-token\"\n\n[[route]]\nname = \"site\"\nprefix = \"/\"\nupstream = \"app\"\npattern = \"public\"\n",
        ));
        assert_eq!(
            warnings,
            [
                "route \"admin\": prefix \"/admin/\" does not match \"/admin\" itself, which route \"site\" (public) takes; a prefix without the trailing / (\"/admin\") covers both"
            ]
        );
        // Without the trailing `/`, or with no route for the bare path (404): nothing to say.
        assert!(
            bare_path_warnings(&routes(
                "[[route]]\nname = \"admin\"\nprefix = \"/admin\"\nupstream = \"app\"\npattern = \"forward-token\"\n\n[[route]]\nname = \"site\"\nprefix = \"/\"\nupstream = \"app\"\npattern = \"public\"\n",
            ))
            .is_empty()
        );
        assert!(
            bare_path_warnings(&routes(
                "[[route]]\nname = \"admin\"\nprefix = \"/admin/\"\nupstream = \"app\"\npattern = \"forward-token\"\n",
            ))
            .is_empty()
        );
    }
}
