#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::text::{edit_distance, substitute_str};
use super::*;
use http::HeaderName;
use trustgate_core::{AudiencePolicy, ExpiryPolicy};
use trustgate_edge::Trust;

fn identity_headers(route: &Route) -> &trustgate_edge::trust::IdentityHeaders {
    match &route.trust {
        Trust::IdentityHeaders(pattern) => pattern,
        other => panic!("not identity-headers: {other:?}"),
    }
}

const BASE: &str = r#"
[[issuer]]
id = "corp"
issuer = "https://idp.example"
audiences = ["api"]
jwks_url = "https://idp.example/jwks"

[[upstream]]
id = "users"
url = "http://127.0.0.1:9001"

[[route]]
name = "users"
prefix = "/users"
upstream = "users"
pattern = "identity-headers"
"#;

fn parse_text(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("/etc/trustgate"), &|name| match name {
        "UPSTREAM_PORT" => Some("9001".into()),
        "QUOTE" => Some("\"]\nx = 1".into()),
        "TIMEOUT" => Some("5s".into()),
        "PATTERN" => Some("forward-token".into()),
        _ => None,
    })
}

fn error(text: &str) -> String {
    parse_text(text).unwrap_err().0
}

#[test]
fn minimal_config_has_safe_defaults() {
    let config = parse_text(BASE).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9901");
    let route = &config.routes[0];
    let pattern = identity_headers(route);
    assert_eq!(
        pattern.validation.issuers,
        vec!["https://idp.example".to_string()]
    );
    let names: Vec<&HeaderName> = pattern.headers.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["x-user-id", "x-user-roles", "x-tenant-id"]);
    // Injected names are always sanitized.
    for name in names {
        assert!(config.sanitize.policy.is_identity_header(name));
    }
    let issuer = &config.issuers[0].config;
    assert_eq!(issuer.claims.audience, AudiencePolicy::Required);
    assert_eq!(issuer.claims.expiry, ExpiryPolicy::Required);
    assert_eq!(issuer.claims.leeway, Duration::from_secs(60));
}

#[test]
fn unknown_fields_are_errors_with_a_location() {
    let err = error(&format!("{BASE}\n[server]\nlisten_addr = \"1.2.3.4:1\"\n"));
    assert!(err.contains("unknown field `listen_addr`"), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn http2_connections_is_one_by_default_and_only_for_http2_upstreams() {
    let config = parse_text(BASE).unwrap();
    assert_eq!(config.upstreams[0].http2_connections, 1);
    let h2 = |extra: &str| {
        BASE.replace(
            "url = \"http://127.0.0.1:9001\"",
            &format!("url = \"http://127.0.0.1:9001\"\nprotocol = \"http2\"\n{extra}"),
        )
    };
    let config = parse_text(&h2("http2_connections = 4")).unwrap();
    assert_eq!(config.upstreams[0].http2_connections, 4);
    for bad in ["http2_connections = 0", "http2_connections = 65"] {
        let err = error(&h2(bad));
        assert!(
            err.contains("upstream \"users\": http2_connections must be from 1 to 64"),
            "{bad}: {err}"
        );
    }
    let err = error(&BASE.replace(
        "url = \"http://127.0.0.1:9001\"",
        "url = \"http://127.0.0.1:9001\"\nhttp2_connections = 2",
    ));
    assert!(
        err.contains("upstream \"users\": http2_connections needs protocol = \"http2\""),
        "{err}"
    );
}

#[test]
fn env_substitution_is_by_value_and_strict() {
    let text = BASE.replace("127.0.0.1:9001", "127.0.0.1:${UPSTREAM_PORT}");
    let config = parse_text(&text).unwrap();
    assert_eq!(config.upstreams[0].authority.as_str(), "127.0.0.1:9001");
    let err = error(&BASE.replace("127.0.0.1:9001", "${MISSING_VAR}"));
    assert!(
        err.contains("MISSING_VAR") && err.contains("not set"),
        "{err}"
    );
    // A variable's content cannot change the file's structure: it stays one string value.
    let config = parse_text(&BASE.replace("[\"api\"]", "[\"${QUOTE}\"]")).unwrap();
    assert_eq!(config.issuers[0].config.claims.audiences, ["\"]\nx = 1"]);
    // Typed fields (durations, enums) take variables too.
    let typed = format!(
        "[jwks_fetch]\ntimeout = \"${{TIMEOUT}}\"\n{}",
        BASE.replace("pattern = \"identity-headers\"", "pattern = \"${PATTERN}\"")
    );
    let config = parse_text(&typed).unwrap();
    assert_eq!(config.validator.fetch.timeout, Duration::from_secs(5));
    assert!(matches!(config.routes[0].trust, Trust::ForwardToken(_)));
    assert_eq!(substitute_str("a$${b}c", &|_| None).unwrap(), "a${b}c");
}

#[test]
fn cross_references_are_checked() {
    let err = error(&BASE.replace("upstream = \"users\"", "upstream = \"userz\""));
    assert!(
        err.contains("\"userz\" is not defined") && err.contains("users"),
        "{err}"
    );
    let err = error(&format!("{BASE}issuers = [\"nobody\"]\n"));
    assert!(err.contains("\"nobody\" is not defined"), "{err}");
    let err = error(&BASE.replace("jwks_url = \"https://idp.example/jwks\"", ""));
    assert!(err.contains("no key source"), "{err}");
    let err = error(&BASE.replace("audiences = [\"api\"]", ""));
    assert!(err.contains("no audiences"), "{err}");
    for blank in ["\"\"", "\" \"", "\"api\", \"\""] {
        let err = error(&BASE.replace("audiences = [\"api\"]", &format!("audiences = [{blank}]")));
        assert!(err.contains("has an empty audience"), "{blank}: {err}");
    }
}

#[test]
fn route_prefixes_must_be_normalized() {
    for bad in ["users", "/a/../b", "//a", "/a%2Fb", "/a?x"] {
        let err = error(&BASE.replace("prefix = \"/users\"", &format!("prefix = {bad:?}")));
        assert!(err.contains("must be a normalized path"), "{bad}: {err}");
    }
}

#[test]
fn header_bindings() {
    let text = format!("{BASE}headers = [{{ name = \"X-User-Email\", from = \"claim:email\" }}]\n");
    let err = error(&text);
    assert!(
        err.contains("claim:email") && err.contains("claims.extra"),
        "{err}"
    );
    let text = text.replace(
        "jwks_url = \"https://idp.example/jwks\"",
        "jwks_url = \"https://idp.example/jwks\"\nclaims.extra = { email = \"email\" }",
    );
    let config = parse_text(&text).unwrap();
    assert_eq!(
        identity_headers(&config.routes[0]).headers[0].0.as_str(),
        "x-user-email"
    );
    let err = error(&format!(
        "{BASE}headers = [{{ name = \"Authorization\", from = \"subject\" }}]\n"
    ));
    assert!(
        err.contains("cannot be used as an identity header"),
        "{err}"
    );
}

#[test]
fn durations_and_addresses() {
    let err = error(&format!("[server]\nidle_timeout = \"10\"\n{BASE}"));
    assert!(err.contains("no unit"), "{err}");
    let err = error(&format!("[server]\nlisten = \"localhost\"\n{BASE}"));
    assert!(err.contains("is not an address"), "{err}");
}

#[test]
fn route_names_are_unique_and_internal_issuer_needs_a_reachable_url() {
    let twice = format!(
        "{BASE}\n[[route]]\nname = \"users\"\nprefix = \"/other\"\nupstream = \"users\"\npattern = \"public\"\n"
    );
    assert!(error(&twice).contains("route name \"users\" is used twice"));
    let unreachable = format!("[admin]\nlisten = \"0.0.0.0:9901\"\n[internal_issuer]\n{BASE}");
    let err = error(&unreachable);
    assert!(err.contains("set internal_issuer.issuer"), "{err}");
    let short = format!("[internal_issuer]\nmax_ttl = \"30s\"\n{BASE}")
        .replace("identity-headers", "internal-token");
    let config = parse_text(&short).unwrap();
    let Trust::InternalToken(pattern) = &config.routes[0].trust else {
        panic!("not internal-token");
    };
    assert_eq!(
        pattern.ttl,
        Duration::from_secs(30),
        "default TTL capped at max_ttl"
    );
}

#[test]
fn key_urls_with_credentials_are_refused_without_echoing_them() {
    for (url, field) in [
        ("https://keys:s3cret@idp.example/jwks", "jwks_url"),
        ("https://keys@idp.example/jwks", "jwks_url"),
    ] {
        let err = error(&BASE.replace("https://idp.example/jwks", url));
        assert_eq!(
            err,
            format!(
                "issuer \"corp\": {field} carries credentials (user@ or user:password@); remove them (keys are fetched without credentials)"
            )
        );
    }
    let discovery = BASE
        .replace(
            "jwks_url = \"https://idp.example/jwks\"",
            "discovery = true",
        )
        .replace(
            "\"https://idp.example\"",
            "\"https://u:s3cret@idp.example\"",
        );
    let err = error(&discovery);
    assert!(
        err.contains("issuer (discovery = true) carries credentials") && !err.contains("s3cret"),
        "{err}"
    );
}

#[test]
fn plain_http_key_urls_need_loopback_or_the_danger_switch() {
    let http = BASE.replace("https://idp.example/jwks", "http://idp.example/jwks");
    let err = error(&http);
    assert!(
        err.contains("jwks_url") && err.contains("jwks_fetch.danger_allow_http"),
        "{err}"
    );
    assert!(parse_text(&format!("{http}\n[jwks_fetch]\ndanger_allow_http = true\n")).is_ok());
    for loopback in [
        "http://127.0.0.1:9/jwks",
        "http://localhost/jwks",
        "http://[::1]:9/jwks",
    ] {
        let text = BASE.replace("https://idp.example/jwks", loopback);
        assert!(parse_text(&text).is_ok(), "{loopback}");
    }
    let discovery = BASE
        .replace(
            "jwks_url = \"https://idp.example/jwks\"",
            "discovery = true",
        )
        .replace("https://idp.example", "http://idp.example");
    assert!(error(&discovery).contains("discovery"));
}

#[test]
fn leeway_has_a_ceiling_without_the_danger_switch() {
    let with = |lines: &str| {
        BASE.replace(
            "audiences = [\"api\"]",
            &format!("audiences = [\"api\"]\n{lines}"),
        )
    };
    assert!(parse_text(&with("leeway = \"5m\"")).is_ok());
    let err = error(&with("leeway = \"301s\""));
    assert!(err.contains("danger_allow_long_leeway"), "{err}");
    let config = parse_text(&with("leeway = \"10m\"\ndanger_allow_long_leeway = true")).unwrap();
    assert_eq!(
        config.issuers[0].config.claims.leeway,
        Duration::from_secs(600)
    );
}

#[test]
fn internal_lifetimes_and_rotation_have_floors() {
    let internal = |lines: &str| format!("[internal_issuer]\n{lines}\n{BASE}");
    assert!(error(&internal("rotation_interval = \"0s\"")).contains("rotation_interval"));
    let err = error(&internal("rotation_interval = \"89s\""));
    assert!(
        err.contains("danger_fast_rotation") && err.contains("90s"),
        "{err}"
    );
    assert!(parse_text(&internal("rotation_interval = \"90s\"")).is_ok());
    assert!(
        parse_text(&internal(
            "rotation_interval = \"1s\"\ndanger_fast_rotation = true"
        ))
        .is_ok()
    );
    assert!(error(&internal("max_ttl = \"1999ms\"")).contains("max_ttl must be at least 2s"));
    let route = BASE.replace(
        "pattern = \"identity-headers\"",
        "pattern = \"internal-token\"\ninternal_ttl = \"1s\"",
    );
    assert!(
        error(&format!("[internal_issuer]\n{route}")).contains("internal_ttl must be at least 2s")
    );
}

#[test]
fn near_misses_of_field_names_get_a_suggestion_and_bare_durations_say_what_to_write() {
    let err = error(&BASE.replace("audiences = [\"api\"]", "audience = [\"api\"]"));
    assert!(err.contains("did you mean `audiences`?"), "{err}");
    let err = error(&BASE.replace("prefix = \"/users\"", "prefx = \"/users\""));
    assert!(err.contains("did you mean `prefix`?"), "{err}");
    // Nothing close: no guess.
    let err = error(&BASE.replace("prefix = \"/users\"", "prefix = \"/users\"\nzzzzzz = 1"));
    assert!(
        err.contains("unknown field `zzzzzz`") && !err.contains("did you mean"),
        "{err}"
    );
    let with = |line: &str| {
        BASE.replace(
            "audiences = [\"api\"]",
            &format!("audiences = [\"api\"]\n{line}"),
        )
    };
    let err = error(&with("leeway = 60"));
    assert!(err.contains(r#"write "60s""#), "{err}");
    let err = error(&with("leeway = 1.5"));
    assert!(err.contains(r#""1500ms""#), "{err}");
    assert_eq!(edit_distance("audience", "audiences"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

#[test]
fn a_route_host_must_be_a_host_a_request_could_carry() {
    let with = |host: &str| {
        BASE.replace(
            "prefix = \"/users\"",
            &format!("prefix = \"/users\"\nhost = \"{host}\""),
        )
    };
    for bad in ["a..b", "x@api.example", "api example", ".", "api.example/x"] {
        let err = error(&with(bad));
        assert!(
            err.contains("is not a host name or address"),
            "{bad}: {err}"
        );
    }
    for good in ["api.example", "API.Example.", "127.0.0.1", "[::1]"] {
        assert!(parse_text(&with(good)).is_ok(), "{good}");
    }
}

#[test]
fn forward_auth_grpc_listen_is_optional_and_an_address() {
    let section = "\n[forward_auth]\nlisten = \"127.0.0.1:9902\"\nconvention = \"envoy\"\ntrusted_proxies = [\"127.0.0.1\"]\n";
    let config = parse_text(&format!("{BASE}{section}")).unwrap();
    let forward_auth = config.forward_auth.unwrap();
    assert_eq!(forward_auth.grpc_listen, None);
    assert_eq!(forward_auth.convention, Convention::Envoy);
    // The convention is stated, never guessed: leaving it out is an error.
    let unstated = section.replace("convention = \"envoy\"\n", "");
    let err = error(&format!("{BASE}{unstated}"));
    assert!(err.contains("missing field `convention`"), "{err}");
    let config = parse_text(&format!(
        "{BASE}{section}grpc_listen = \"127.0.0.1:9903\"\n"
    ))
    .unwrap();
    assert_eq!(
        config.forward_auth.unwrap().grpc_listen,
        Some("127.0.0.1:9903".parse().unwrap())
    );
    let err = error(&format!("{BASE}{section}grpc_listen = \"9903\"\n"));
    assert!(err.contains("forward_auth.grpc_listen"), "{err}");
}

/// The fleet's settings: the default is memory; Redis needs a namespace, one topology and no
/// credentials in the URL; a shared ring needs a key-encryption key; limits and revocation
/// checks only on validating routes.
#[test]
fn fleet_settings_are_checked_before_anything_connects() {
    let config = parse_text(BASE).unwrap();
    assert!(!config.store.is_redis());
    assert!(config.revocation.is_none());
    assert!(!config.route_fleet[0].check_revocation);

    let err = |extra: &str| parse_text(&format!("{extra}\n{BASE}")).unwrap_err().0;
    assert!(err("[store]\nbackend = \"redis\"\nurl = \"redis://r:6379\"").contains("namespace"));
    assert!(
        err("[store]\nbackend = \"redis\"\nnamespace = \"a\"\nurl = \"redis://u:p@r:6379\"")
            .contains("password_env")
    );
    assert!(
        err("[store]\nbackend = \"redis\"\nnamespace = \"a\"\nurl = \"redis://r\"\ncluster_nodes = [\"redis://r\"]")
            .contains("exactly one")
    );
    assert!(err("[store]\nurl = \"redis://r:6379\"").contains("only apply"));
    assert!(
        err("[store]\nbackend = \"redis\"\nnamespace = \"a\"\nurl = \"redis://r\"\n[internal_issuer]\nissuer = \"https://i\"")
            .contains("kek_file")
    );
    assert!(
        err("[store]\npoll_interval = \"1s\"\n[revocation]\nstaleness_bound = \"1s\"")
            .contains("twice")
    );

    let redis = "[store]\nbackend = \"redis\"\nnamespace = \"prod-eu\"\nurl = \"redis://r:6379\"\n[revocation]\n";
    let config = parse_text(&format!("{redis}{BASE}")).unwrap();
    assert!(config.store.is_redis());
    assert!(config.route_fleet[0].check_revocation);

    let route = |extra: &str| {
        format!(
            "{BASE}\n[[route]]\nname = \"pub\"\nprefix = \"/pub\"\nupstream = \"users\"\npattern = \"public\"\n{extra}"
        )
    };
    let public_limited =
        parse_text(&route("rate_limit = { requests = 10, per = \"1s\" }")).unwrap_err();
    assert!(public_limited.0.contains("validates"), "{public_limited}");
    let limited = parse_text(&format!(
        "{BASE}rate_limit = {{ by = \"client\", requests = 10, per = \"1s\" }}\n"
    ))
    .unwrap();
    let limit = limited.route_fleet[0].rate_limit.as_ref().unwrap();
    assert_eq!((limit.by.clone(), limit.burst), (RateKey::Client, 10));
    let unknown_claim = parse_text(&format!(
        "{BASE}rate_limit = {{ by = \"claim:team\", requests = 10, per = \"1s\" }}\n"
    ))
    .unwrap_err();
    assert!(unknown_claim.0.contains("claims.extra"), "{unknown_claim}");
}

fn parse_with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    parse(text, Path::new("/etc/trustgate"), &move |name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

#[test]
fn telemetry_and_audit_are_off_by_default() {
    let config = parse_with_env(BASE, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap();
    assert_eq!(config.telemetry, None);
    assert_eq!(config.audit, None);
}

#[test]
fn telemetry_defaults_and_the_otel_variables() {
    let on = format!("{BASE}\n[telemetry]\nenabled = true\n");
    let config = parse_with_env(&on, &[]).unwrap();
    assert_eq!(
        config.telemetry,
        Some(TelemetryConfig {
            endpoint: "http://localhost:4317".into(),
            protocol: OtlpProtocol::Grpc,
            sample_ratio: 1.0,
            trust_incoming: TrustIncoming::TrustedProxies,
            service_name: "trustgate".into(),
            span_claims: Vec::new(),
        })
    );
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ("OTEL_SERVICE_NAME", "edge"),
    ];
    let telemetry = parse_with_env(&on, &env).unwrap().telemetry.unwrap();
    assert_eq!(telemetry.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(telemetry.protocol, OtlpProtocol::Http);
    assert_eq!(telemetry.sample_ratio, 0.25);
    assert_eq!(telemetry.service_name, "edge");
    // The signal's own variable is used as it is.
    let traces = [(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "https://c.example/otlp/traces",
    )];
    let telemetry = parse_with_env(&on, &traces).unwrap().telemetry.unwrap();
    assert_eq!(telemetry.endpoint, "https://c.example/otlp/traces");
    // The file wins over the environment.
    let file = format!(
        "{BASE}\n[telemetry]\nenabled = true\nprotocol = \"grpc\"\nendpoint = \"http://file:4317\"\nsample_ratio = 0.01\nservice_name = \"gw\"\ntrust_incoming = \"never\"\n"
    );
    let telemetry = parse_with_env(&file, &env).unwrap().telemetry.unwrap();
    assert_eq!(telemetry.endpoint, "http://file:4317");
    assert_eq!(telemetry.protocol, OtlpProtocol::Grpc);
    assert_eq!(telemetry.sample_ratio, 0.01);
    assert_eq!(telemetry.service_name, "gw");
    assert_eq!(telemetry.trust_incoming, TrustIncoming::Never);
    // OTEL_SDK_DISABLED turns it off.
    let off = parse_with_env(&on, &[("OTEL_SDK_DISABLED", "true")]).unwrap();
    assert_eq!(off.telemetry, None);
}

#[test]
fn otel_traces_sampler_is_read_as_its_parent_based_form() {
    let on = format!("{BASE}\n[telemetry]\nenabled = true\n");
    let ratio = |env: &[(&str, &str)]| {
        parse_with_env(&on, env)
            .map(|config| config.telemetry.map(|t| t.sample_ratio))
            .map_err(|e| e.to_string())
    };
    let arg = ("OTEL_TRACES_SAMPLER_ARG", "0.25");
    for (sampler, expected) in [
        ("always_off", 0.0),
        ("parentbased_always_off", 0.0),
        (" ALWAYS_OFF ", 0.0),
        // always_on and always_off take no argument: it is ignored, as the specification says.
        ("always_on", 1.0),
        ("parentbased_always_on", 1.0),
        ("traceidratio", 0.25),
        ("parentbased_traceidratio", 0.25),
    ] {
        assert_eq!(
            ratio(&[("OTEL_TRACES_SAMPLER", sampler), arg]),
            Ok(Some(expected)),
            "{sampler:?}"
        );
    }
    assert_eq!(
        ratio(&[("OTEL_TRACES_SAMPLER", "traceidratio")]),
        Ok(Some(1.0))
    );
    assert_eq!(ratio(&[arg]), Ok(Some(0.25)));
    // The file's ratio wins over the environment.
    let file = format!("{on}sample_ratio = 0.5\n");
    let telemetry = parse_with_env(&file, &[("OTEL_TRACES_SAMPLER", "always_off")])
        .unwrap()
        .telemetry
        .unwrap();
    assert_eq!(telemetry.sample_ratio, 0.5);
    // A sampler the gateway does not have is refused, not read as another.
    let refused = ratio(&[("OTEL_TRACES_SAMPLER", "jaeger_remote"), arg]).unwrap_err();
    assert!(
        refused.contains("OTEL_TRACES_SAMPLER = \"jaeger_remote\" is not supported"),
        "{refused}"
    );
}

#[test]
fn otel_sdk_disabled_is_true_in_any_case() {
    // The specification's booleans: "true" without regard to case is true, anything else false.
    let on = format!("{BASE}\n[telemetry]\nenabled = true\n");
    for value in ["true", "TRUE", "True", " tRuE "] {
        let off = parse_with_env(&on, &[("OTEL_SDK_DISABLED", value)]).unwrap();
        assert_eq!(off.telemetry, None, "{value:?}");
    }
    for value in ["false", "1", "yes", "truee"] {
        let config = parse_with_env(&on, &[("OTEL_SDK_DISABLED", value)]).unwrap();
        assert!(config.telemetry.is_some(), "{value:?}");
    }
}

#[test]
fn telemetry_errors_say_what_to_write() {
    let on = format!("{BASE}\n[telemetry]\nenabled = true\n");
    for (text, env, expected) in [
        (
            format!("{on}sample_ratio = 1.5\n"),
            vec![],
            "telemetry.sample_ratio = 1.5 must be between 0 and 1",
        ),
        (
            on.clone(),
            vec![("OTEL_TRACES_SAMPLER_ARG", "lots")],
            "OTEL_TRACES_SAMPLER_ARG = \"lots\" is not a number",
        ),
        (
            on.clone(),
            vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
            "\"http/json\" is not supported",
        ),
        (
            format!("{on}endpoint = \"ftp://c\"\n"),
            vec![],
            "must be an http:// or https:// URL",
        ),
        (
            format!("{on}spans = true\n"),
            vec![],
            "unknown field `spans`",
        ),
    ] {
        let err = parse_with_env(&text, &env).unwrap_err().0;
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn audit_defaults_paths_and_errors() {
    let on = format!("{BASE}\n[audit]\nenabled = true\n");
    assert_eq!(
        parse_with_env(&on, &[]).unwrap().audit,
        Some(AuditConfig {
            path: AuditPath::Stdout,
            subject: SubjectMode::Hash,
            chain: true,
            queue: 8192,
        })
    );
    let file = format!("{on}path = \"log/audit.jsonl\"\nsubject = \"clear\"\nchain = false\n");
    let audit = parse_with_env(&file, &[]).unwrap().audit.unwrap();
    assert_eq!(
        audit.path,
        AuditPath::File(PathBuf::from("/etc/trustgate/log/audit.jsonl"))
    );
    assert_eq!(audit.subject, SubjectMode::Clear);
    assert!(!audit.chain);
    let err = parse_with_env(&format!("{on}queue = 0\n"), &[])
        .unwrap_err()
        .0;
    assert!(err.contains("audit.queue must be between 1 and"), "{err}");
    // A count a channel cannot hold is refused at load, not a panic at start.
    let err = parse_with_env(&format!("{on}queue = 4611686018427387904\n"), &[])
        .unwrap_err()
        .0;
    assert!(err.contains("audit.queue must be between 1 and"), "{err}");
    let err = parse_with_env(&format!("{on}subject = \"hidden\"\n"), &[])
        .unwrap_err()
        .0;
    assert!(err.contains("unknown variant `hidden`"), "{err}");
}

/// A refresh step of zero would turn off what bounds the fetches of an issuer: the unknown-kid
/// flood limit, the back-off from a failing issuer, the floor under `max-age=0`.
#[test]
fn refresh_steps_are_at_least_100ms() {
    for name in [
        "default_interval",
        "min_interval",
        "unknown_kid_cooldown",
        "retry_base",
    ] {
        let config = BASE.replace(
            "jwks_url = \"https://idp.example/jwks\"",
            &format!("jwks_url = \"https://idp.example/jwks\"\nrefresh = {{ {name} = \"0s\" }}"),
        );
        let err = error(&config);
        assert!(
            err.contains(&format!("refresh.{name} must be at least 100ms")),
            "{name}: {err}"
        );
        let config = config.replace("\"0s\"", "\"100ms\"");
        assert!(parse_text(&config).is_ok(), "{name}");
    }
}

/// A private key whose line breaks were lost makes the PEM parser quote the line, key included;
/// the error the operator sees names the problem only.
#[test]
fn a_malformed_key_file_error_never_quotes_the_key() {
    let dir = std::env::temp_dir().join(format!("trustgate-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("one-line.key");
    let secret = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSECRETSECRET";
    std::fs::write(
        &path,
        format!("-----BEGIN PRIVATE KEY----- {secret} -----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let err = rustls_pki_types::PrivateKeyDer::from_pem_file(&path).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    let raw = err.to_string();
    // What the parser says quotes the key's bytes (in decimal)...
    let quoted = secret
        .bytes()
        .take(8)
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    assert!(raw.contains(&quoted), "{raw}");
    // ...and what the operator sees does not.
    let shown = pem_key_error(&err);
    assert_eq!(
        shown,
        "not a well-formed PEM private key (are its line breaks intact?)"
    );
}

/// Counts a semaphore cannot hold are refused at load: `serve` would panic at start with them.
#[test]
fn counts_beyond_what_a_semaphore_holds_are_refused() {
    let huge = "4611686018427387904";
    let err = error(&format!("[server]\nmax_connections = {huge}\n{BASE}"));
    assert!(
        err.contains("server.max_connections must be between 1 and 1000000000"),
        "{err}"
    );
    let err = error(&BASE.replace(
        "url = \"http://127.0.0.1:9001\"",
        &format!(
            "url = \"http://127.0.0.1:9001\"\nprotocol = \"http2\"\nmax_concurrent_streams = {huge}"
        ),
    ));
    assert!(
        err.contains("max_concurrent_streams must be between 1 and 1000000000"),
        "{err}"
    );
}

/// Credentials in an upstream URL would be sent as its Host and printed in logs: refused.
#[test]
fn upstream_urls_never_carry_credentials() {
    let err = error(&BASE.replace(
        "url = \"http://127.0.0.1:9001\"",
        "url = \"https://svc:s3cret@127.0.0.1:9443\"",
    ));
    assert!(err.contains("url carries credentials"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn max_connections_per_client_is_between_one_and_max_connections() {
    for value in ["0", "11", "4611686018427387904"] {
        let err = error(&format!(
            "[server]\nmax_connections = 10\nmax_connections_per_client = {value}\n{BASE}"
        ));
        assert!(
            err.contains(
                "server.max_connections_per_client must be between 1 and server.max_connections"
            ),
            "{value}: {err}"
        );
    }
    let config = parse_text(&format!(
        "[server]\nmax_connections = 10\nmax_connections_per_client = 10\n{BASE}"
    ))
    .unwrap();
    assert_eq!(config.server.max_connections_per_client, Some(10));
    let config = parse_text(BASE).unwrap();
    assert_eq!(config.server.max_connections_per_client, None);
}
