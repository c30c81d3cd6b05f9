//! End-to-end: the operator commands. `trustgate check` prints the route table and issuer
//! readiness, a bad file exits 64 with a message that says what to fix, and `trustgate explain`
//! walks a request through the pipeline without ever printing the token.

use serde_json::json;

use crate::common::{
    Config, Fixture, Gateway, Issuer, Pattern, Route, TempDir, bearer, cli, cli_with_stdin,
};

fn config(f: &Fixture) -> Config {
    f.public_and_admin()
        .route(Route::new("api", "/api/v1", "echo", Pattern::ForwardToken).host("api.example"))
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = cli(args);
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path_str(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn check_prints_routes_with_patterns_and_issuer_readiness() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let file = dir.write("gw.toml", &config(&f).to_toml());
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(
        r.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.starts_with("configuration: ok"), "{}", r.stdout);
    let issuer_line = r
        .stdout
        .lines()
        .find(|l| l.contains(&f.iss))
        .unwrap_or_else(|| panic!("no issuer line:\n{}", r.stdout));
    let words: Vec<&str> = issuer_line.split_whitespace().collect();
    assert_eq!(
        &words[..4],
        ["idp", f.iss.as_str(), "ready", "keys=1"],
        "{issuer_line}"
    );
    let routes: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .skip_while(|l| *l != "routes:")
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .filter(|w: &Vec<&str>| !w.is_empty())
        .collect();
    assert_eq!(
        routes,
        [
            vec!["public", "*", "/public", "public", "echo", "-"],
            vec!["admin", "*", "/admin", "identity-headers", "echo", "idp"],
            vec![
                "api",
                "api.example",
                "/api/v1",
                "forward-token",
                "echo",
                "idp"
            ],
        ],
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("warning"), "{}", r.stdout);
}

/// A route whose prefix ends in `/` does not match the path without it, which another route
/// (here a public catch-all) then takes: `check` warns (and still passes), `--json` lists it,
/// and `serve` logs it at start.
#[test]
fn a_prefix_ending_in_a_slash_that_leaves_its_bare_path_to_another_route_is_warned_about() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let config = f
        .config()
        .route(Route::new("site", "/", "echo", Pattern::Public))
        .route(Route::new(
            "orders",
            "/orders/",
            "echo",
            Pattern::ForwardToken,
        ));
    let file = dir.write("gw.toml", &config.to_toml());
    let warning = "route \"orders\": prefix \"/orders/\" does not match \"/orders\" itself, which route \"site\" (public) takes; a prefix without the trailing / (\"/orders\") covers both";
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("\nwarning: {warning}\n")),
        "{}",
        r.stdout
    );
    let r = run(&["check", "-c", path_str(&file), "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(summary["warnings"], json!([warning]));
    let gw = Gateway::start(&config);
    let logged = gw.log_text().lines().any(|line| {
        serde_json::from_str::<serde_json::Value>(line)
            .is_ok_and(|event| event["level"] == "WARN" && event["message"] == warning)
    });
    assert!(logged, "{}", gw.log_text());
    // What the warning is about: the bare path is the public route's.
    assert_eq!(gw.get("/orders", &[]).status, 200);
    assert_eq!(gw.get("/orders/1", &[]).status, 401);
}

/// `check` says what it found: each issuer's key source and algorithms, the internal issuer, and
/// each route's service, assertion and `require`; `--json` gives the same to tools.
#[test]
fn check_summarises_issuers_the_internal_issuer_and_route_rules_as_text_and_json() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let config = config(&f)
        .section("internal_issuer", "issuer", "https://internal.example")
        .route(
            Route::new("orders", "/orders", "echo", Pattern::InternalToken)
                .service("orders")
                .require(json!({"scopes": ["orders:read"], "roles": ["clerk"], "mode": "any"})),
        )
        .route(
            Route::new("profile", "/profile", "echo", Pattern::IdentityHeaders)
                .assertion()
                .service("profile"),
        );
    let file = dir.write("gw.toml", &config.to_toml());
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    for line in [
        "keys from discovery; algorithms RS256, ES256; audiences api",
        "internal issuer: https://internal.example (EdDSA, generated keys, rotation 21600s, max_ttl 300s)",
        "service orders; require any of: scopes orders:read; roles clerk",
        "service profile; assertion",
    ] {
        assert!(
            r.stdout.contains(line),
            "missing {line:?} in:\n{}",
            r.stdout
        );
    }
    let r = run(&["check", "-c", path_str(&file), "--json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(summary["ready"], true);
    assert_eq!(summary["issuers"][0]["id"], "idp");
    assert_eq!(summary["issuers"][0]["key_source"]["kind"], "discovery");
    assert_eq!(
        summary["issuers"][0]["algorithms"],
        json!(["RS256", "ES256"])
    );
    assert_eq!(
        summary["internal_issuer"]["issuer"],
        "https://internal.example"
    );
    let orders = summary["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "orders")
        .unwrap();
    assert_eq!(orders["pattern"], "internal-token");
    assert_eq!(orders["service"], "orders");
    assert_eq!(
        orders["require"],
        json!({"mode": "any", "scopes": ["orders:read"], "roles": ["clerk"], "claims": {}})
    );
}

/// Shell completions and a manual page, generated from the command line's own definition.
#[test]
fn completions_and_the_manual_page_cover_every_command() {
    let r = run(&["completions", "bash"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("_trustgate()"), "{}", r.stdout);
    for command in ["serve", "check", "explain", "completions", "man"] {
        assert!(
            r.stdout.contains(command),
            "{command} missing from the bash completions"
        );
    }
    assert_eq!(run(&["completions", "zsh"]).code, Some(0));
    let r = run(&["man"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains(".TH trustgate 1"), "{}", r.stdout);
    assert!(r.stdout.contains("check"), "{}", r.stdout);
}

#[test]
fn check_with_an_unreachable_issuer_is_not_ready() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let down = format!("http://{}", crate::common::refused_addr());
    let file = dir.write(
        "gw.toml",
        &config(&f)
            .edit_issuer("idp", |i| i.set("issuer", down))
            .to_toml(),
    );
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("NOT READY"), "{}", r.stdout);
    assert!(
        r.stdout.contains("not every issuer has usable keys"),
        "{}",
        r.stdout
    );
    // Its warnings go to a pipe here: plain text, no ANSI colour codes, unless forced.
    assert!(r.stderr.contains("WARN"), "{}", r.stderr);
    assert!(!r.stderr.contains('\u{1b}'), "{:?}", r.stderr);
    let forced = std::process::Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .args(["check", "-c", path_str(&file)])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&forced.stderr).contains('\u{1b}'));
}

#[test]
fn a_bad_config_exits_64_with_a_helpful_message() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let good = config(&f);

    // Unknown field: named, with its line. The misspelt text is what is under test.
    let typo = good
        .to_toml()
        .replacen("prefix = \"/admin\"", "prefx = \"/admin\"", 1);
    let line = typo.lines().position(|l| l.starts_with("prefx")).unwrap() + 1;
    let file = dir.write("typo.toml", &typo);
    for command in ["check", "serve"] {
        let r = run(&[command, "-c", path_str(&file)]);
        assert_eq!(r.code, Some(64), "{command}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("prefx"), "{command}: {}", r.stderr);
        // The file is named, with the line and column.
        assert!(
            r.stderr
                .contains(&format!("{}: TOML parse error at line", file.display())),
            "{command}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("did you mean `prefix`?"),
            "{command}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&format!("line {line}")),
            "{command}: {}",
            r.stderr
        );
    }

    // A route naming an upstream that does not exist: the defined ones are listed.
    let file = dir.write(
        "upstream.toml",
        &good
            .clone()
            .edit_route("admin", |r| r.set("upstream", "echoo"))
            .to_toml(),
    );
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(64), "{}", r.stderr);
    assert!(r.stderr.contains("\"echoo\""), "{}", r.stderr);
    assert!(r.stderr.contains("[\"echo\"]"), "{}", r.stderr);

    // A missing environment variable is named.
    let file = dir.write(
        "env.toml",
        &good
            .clone()
            .edit_issuer("idp", |i| i.audiences(&["${TRUSTGATE_TEST_UNSET_AUD}"]))
            .to_toml(),
    );
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(64), "{}", r.stderr);
    assert!(
        r.stderr.contains("TRUSTGATE_TEST_UNSET_AUD"),
        "{}",
        r.stderr
    );

    // A duration written as a bare number: the message says what to write.
    let file = dir.write(
        "duration.toml",
        &good
            .clone()
            .edit_issuer("idp", |i| i.set("leeway", 60))
            .to_toml(),
    );
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(64), "{}", r.stderr);
    assert!(r.stderr.contains(r#"write "60s""#), "{}", r.stderr);

    // An upstream ca_file without a PEM certificate (here DER bytes) would trust nothing, and
    // every request would get 502: refused at load.
    let der = dir.write("ca.der", "\u{30}\u{0}");
    let file = dir.write(
        "ca.toml",
        &good
            .clone()
            .edit_upstream("echo", |u| {
                u.set("url", "https://127.0.0.1:9443")
                    .set("ca_file", path_str(&der))
            })
            .to_toml(),
    );
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(64), "{}", r.stderr);
    assert!(
        r.stderr.contains("holds no PEM certificate"),
        "{}",
        r.stderr
    );

    // A missing file.
    let r = run(&["check", "-c", path_str(&dir.0.join("absent.toml"))]);
    assert_eq!(r.code, Some(64));
    assert!(r.stderr.contains("absent.toml"), "{}", r.stderr);
}

/// Settings that weaken a check are refused at load time with exit 64, naming the field and the
/// `danger_` switch that allows them; with the switch set, `check` passes that point.
#[test]
fn settings_that_weaken_a_check_exit_64_naming_the_field_and_the_switch() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let good = config(&f);
    let internal_route = || Route::new("int", "/int", "echo", Pattern::InternalToken);
    let issuer = |edit: fn(Issuer) -> Issuer| good.clone().edit_issuer("idp", edit);
    let internal = |settings: &[(&str, &str)]| {
        let mut config = good.clone().empty_section("internal_issuer");
        for (key, value) in settings {
            config = config.section("internal_issuer", key, *value);
        }
        config.route(internal_route())
    };
    let cases: Vec<(&str, Config, &[&str], Option<Config>)> = vec![
        (
            "leeway over 5 minutes",
            issuer(|i| i.set("leeway", "6m")),
            &["leeway", "300s", "danger_allow_long_leeway"],
            Some(issuer(|i| {
                i.set("leeway", "6m").set("danger_allow_long_leeway", true)
            })),
        ),
        (
            "plain http jwks_url to another host",
            issuer(|i| {
                i.unset("discovery")
                    .set("jwks_url", "http://idp.example.com/jwks.json")
            }),
            &[
                "jwks_url",
                "idp.example.com",
                "jwks_fetch.danger_allow_http",
            ],
            None,
        ),
        (
            "plain http discovery to another host",
            issuer(|i| i.set("issuer", "http://idp.example.com")),
            &[
                "discovery",
                "idp.example.com",
                "jwks_fetch.danger_allow_http",
            ],
            None,
        ),
        (
            "rotation_interval of 0s",
            internal(&[("rotation_interval", "0s")]),
            &["rotation_interval", "0s"],
            None,
        ),
        (
            "rotation_interval shorter than the JWKS max-age plus a margin",
            internal(&[("rotation_interval", "30s")]),
            &["rotation_interval", "90s", "danger_fast_rotation"],
            Some(internal(&[("rotation_interval", "30s")]).section(
                "internal_issuer",
                "danger_fast_rotation",
                true,
            )),
        ),
        (
            "internal_ttl under 2s",
            good.clone()
                .empty_section("internal_issuer")
                .route(internal_route().internal_ttl("500ms")),
            &["internal_ttl", "at least 2s"],
            None,
        ),
        (
            "max_ttl under 2s",
            internal(&[("max_ttl", "500ms")]),
            &["max_ttl", "at least 2s"],
            None,
        ),
    ];
    for (name, text, needles, allowed) in cases {
        let file = dir.write("weak.toml", &text.to_toml());
        for command in ["check", "serve"] {
            let r = run(&[command, "-c", path_str(&file)]);
            assert_eq!(
                r.code,
                Some(64),
                "{name} ({command}): {}\n{}",
                r.stdout,
                r.stderr
            );
            for needle in needles {
                assert!(
                    r.stderr.contains(needle),
                    "{name}: {needle:?} not in {}",
                    r.stderr
                );
            }
        }
        if let Some(allowed) = allowed {
            let file = dir.write("allowed.toml", &allowed.to_toml());
            let r = run(&["check", "-c", path_str(&file)]);
            assert_eq!(
                r.code,
                Some(0),
                "{name} with its switch: {}\n{}",
                r.stdout,
                r.stderr
            );
        }
    }
}

/// A port already taken is not a configuration error: `serve` exits 69 (EX_UNAVAILABLE), not 64,
/// and says which field sets the address.
#[test]
fn a_port_in_use_is_not_a_config_error_and_names_the_field() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (field, config) in [
        ("server.listen", config(&f).server("listen", addr.as_str())),
        ("admin.listen", config(&f).admin("listen", addr.as_str())),
    ] {
        let file = dir.write("taken.toml", &config.to_toml());
        let r = run(&["serve", "-c", path_str(&file)]);
        assert_eq!(r.code, Some(69), "{field}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr
                .contains(&format!("cannot listen on {addr} ({field})")),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&format!("set {field} to a free address")),
            "{}",
            r.stderr
        );
    }
}

/// A TLS certificate that cannot be read (not yet written by a certificate manager, say) exits
/// 69 like a busy port, naming the field and the file, rather than 64 like a typo.
#[test]
fn an_unreadable_tls_certificate_exits_69_naming_the_file() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let missing = dir.0.join("not-yet-issued.pem");
    let missing = path_str(&missing);
    let config = config(&f).server("tls", json!({ "cert": missing, "key": missing }));
    let file = dir.write("tls.toml", &config.to_toml());
    let r = run(&["serve", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(69), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("server.tls.cert {missing}")),
        "{}",
        r.stderr
    );
    // `check` reads the same files: not ready (exit 1), naming them, rather than passing.
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("server.tls.cert {missing}")),
        "{}",
        r.stderr
    );
}

/// A production build (no `demo` feature) carries no demo issuer: `trustgate demo` says how to
/// run the demo and exits 64.
#[cfg(not(feature = "demo"))]
#[test]
fn a_production_build_has_no_demo_and_says_how_to_get_it() {
    let r = run(&["demo"]);
    assert_eq!(r.code, Some(64), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("run `cargo run --release --features demo -- demo`"),
        "{}",
        r.stderr
    );
}

/// The demo with its port taken names the flags that change it, and does not exit like a bad
/// configuration file (there is none).
#[cfg(feature = "demo")]
#[test]
fn the_demo_with_a_port_in_use_names_its_flags() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let r = run(&["demo", "--port", &port, "--admin-port", "0"]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--port and --admin-port"), "{}", r.stderr);
}

/// The lines of `stdout` from the first that starts with `start`.
fn lines_from<'a>(stdout: &'a str, start: &str) -> impl Iterator<Item = &'a str> {
    stdout.lines().skip_while(move |l| !l.starts_with(start))
}

/// The lines after `headers the upstream receives:`.
fn upstream_headers(stdout: &str) -> Vec<&str> {
    lines_from(stdout, "headers the upstream receives:")
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn explain_shows_the_steps_and_the_injected_identity_but_never_the_token() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let file = dir.write("gw.toml", &config(&f).to_toml());
    let t = f.token_with("alice", json!({"roles": ["ops"]}));
    let r = run(&[
        "explain",
        "-c",
        path_str(&file),
        "--path",
        "/public/../admin/x?q=1",
        "--token",
        &t,
        "--header",
        "X-User-Id: evil",
        "-H",
        "x_user_roles: root",
    ]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let out = &r.stdout;
    assert!(out.contains("\nsteps:\n"), "{out}");
    for step in [
        "framing: ok",
        "sanitize: removed 2 client identity header value(s)",
        r#"path: "/public/../admin/x?q=1" normalized to "/admin/x""#,
        r#"route: "admin" (prefix "/admin", pattern identity-headers, upstream "echo")"#,
        "authorize: ok",
        "identity: removed the token; injected 3 identity header(s)",
        "token: found in the Authorization header (",
        r#"kid "k1", ES256); claims ok"#,
    ] {
        assert!(out.contains(step), "missing step {step:?} in:\n{out}");
    }
    // Values, not Rust debug forms.
    for debug in ["Some(", "None", "Header (", "Cookie ("] {
        assert!(!out.contains(debug), "{debug:?} in:\n{out}");
    }
    let decision = format!(
        "decision: forward to http://{}/admin/x?q=1",
        f.upstream.addr
    );
    assert!(out.contains(&decision), "{out}");
    let headers = upstream_headers(out);
    assert!(headers.contains(&"x-user-id: alice"), "{headers:?}");
    assert!(headers.contains(&"x-user-roles: ops"), "{headers:?}");
    assert!(
        !headers
            .iter()
            .any(|h| h.contains("evil") || h.contains("root")),
        "{headers:?}"
    );
    assert!(
        !headers.iter().any(|h| h.starts_with("authorization")),
        "{headers:?}"
    );
    assert!(!out.contains(&t), "the token was printed");
    assert!(!r.stderr.contains(&t), "the token was printed on stderr");
    assert!(out.contains("authorization: <redacted,"), "{out}");
}

#[test]
fn explain_an_expired_token_shows_the_refusal() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let file = dir.write("gw.toml", &config(&f).to_toml());
    let expired = f.expired_token("alice");
    let r = run(&[
        "explain",
        "-c",
        path_str(&file),
        "--path",
        "/admin/x",
        "--token",
        &expired,
    ]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let out = &r.stdout;
    assert!(out.contains("validate: failed (expired)"), "{out}");
    assert!(
        out.contains("decision: refuse with 401 Unauthorized"),
        "{out}"
    );
    assert!(
        out.contains(r#"www-authenticate: Bearer error="invalid_token""#),
        "{out}"
    );
    assert!(!out.contains("forward to"), "{out}");
    assert!(!out.contains(&expired) && !r.stderr.contains(&expired));

    // No route, and a path trick refused before routing.
    let r = run(&["explain", "-c", path_str(&file), "--path", "/nowhere"]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("decision: refuse with 404 Not Found"),
        "{}",
        r.stdout
    );
    let r = run(&[
        "explain",
        "-c",
        path_str(&file),
        "--path",
        "/public/..%2Fadmin",
    ]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("decision: refuse with 400 Bad Request"),
        "{}",
        r.stdout
    );
}

/// A token sent in the query (`?access_token=`, under any spelling the gateway recognises) is
/// printed only as its length, in the request line, the trace's `path:` and `forward:` steps
/// and the decision, whether the route refuses it (a validating route) or forwards it (public).
#[test]
fn explain_never_prints_a_token_from_the_query() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let file = dir.write("gw.toml", &config(&f).to_toml());
    let t = f.token("alice");
    let signature = t.rsplit('.').next().unwrap();
    let redacted = format!("<redacted, {} bytes>", t.len());
    for (target, code) in [
        (format!("/admin/x?access_token={t}"), 1),
        (format!("/public/x?access_token={t}"), 0),
        (format!("/public/x?a=1&ACCESS%5Ftoken={t};b=2"), 0),
        (format!("/public/../public/x?access.token={t}&b=2"), 0),
    ] {
        let r = run(&["explain", "-c", path_str(&file), "--path", &target]);
        assert_eq!(r.code, Some(code), "{target}\n{}\n{}", r.stdout, r.stderr);
        assert!(
            !r.stdout.contains(signature),
            "the token was printed:\n{}",
            r.stdout
        );
        assert!(
            !r.stderr.contains(signature),
            "the token was printed on stderr:\n{}",
            r.stderr
        );
        assert!(
            r.stdout.lines().next().unwrap().contains(&redacted),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout
                .lines()
                .any(|l| l.contains("path: ") && l.contains(&redacted)),
            "{}",
            r.stdout
        );
        if code == 0 {
            for prefix in ["forward: GET ", "decision: forward to "] {
                assert!(
                    r.stdout
                        .lines()
                        .any(|l| l.contains(prefix) && l.contains(&redacted)),
                    "{prefix}\n{}",
                    r.stdout
                );
            }
        }
    }
    // Other parameters are shown as they are.
    let r = run(&[
        "explain",
        "-c",
        path_str(&file),
        "--path",
        "/public/x?a=1&access_tokens=visible",
    ]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("decision: forward to http://127.0.0.1:")
            && r.stdout.contains("/public/x?a=1&access_tokens=visible\n"),
        "{}",
        r.stdout
    );
}

/// `explain` does not run the route's rate limiter: with a Redis store that would spend a real
/// caller's budget on every replica. It says so instead.
#[test]
fn explain_does_not_spend_the_rate_limit() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let config = config(&f).route(Route::new("rl", "/rl", "echo", Pattern::ForwardToken).set(
        "rate_limit",
        json!({"by": "sub", "requests": 1, "per": "1h", "burst": 1}),
    ));
    let file = dir.write("gw.toml", &config.to_toml());
    let t = f.token("alice");
    for _ in 0..2 {
        let r = run(&[
            "explain",
            "-c",
            path_str(&file),
            "--path",
            "/rl/x",
            "--token",
            &t,
        ]);
        assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains("rate limit: not evaluated by explain"),
            "{}",
            r.stdout
        );
        assert!(!r.stdout.contains("rate limit: allowed"), "{}", r.stdout);
    }
    // A route without a limit has no such line.
    let r = run(&[
        "explain",
        "-c",
        path_str(&file),
        "--path",
        "/admin/x",
        "--token",
        &t,
    ]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("rate limit"), "{}", r.stdout);
}

/// `-H 'Host: …'` is the request's one Host header, as `--host` is; the two given with
/// different values are a usage error rather than a request with two Host headers.
#[test]
fn explain_takes_the_host_from_a_host_header() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let file = dir.write("gw.toml", &config(&f).to_toml());
    let t = f.token("alice");
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "-c",
            path_str(&file),
            "--path",
            "/api/v1/x",
            "--token",
            &t,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    for extra in [
        &["--host", "api.example"][..],
        &["-H", "Host: api.example"],
        &["--header", "host:api.example"],
        &["--host", "api.example", "-H", "HOST: API.example"],
    ] {
        let r = explain(extra);
        assert_eq!(r.code, Some(0), "{extra:?}\n{}\n{}", r.stdout, r.stderr);
        let request: Vec<&str> = r
            .stdout
            .lines()
            .take_while(|l| !l.is_empty())
            .filter(|l| l.trim_start().to_ascii_lowercase().starts_with("host:"))
            .collect();
        assert_eq!(request.len(), 1, "{extra:?}\n{}", r.stdout);
        assert!(r.stdout.contains("route: \"api\""), "{}", r.stdout);
    }
    let r = explain(&["--host", "other.example", "-H", "Host: api.example"]);
    assert_eq!(r.code, Some(64), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--host"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

/// The upstream's `X-Forwarded-Proto` is the listener's scheme: with `server.tls`, the gateway
/// sends `https`, and explain must show that, not the `http` of its synthetic request. (Explain
/// loads no certificate, so missing files do not matter here.)
#[test]
fn explain_shows_https_as_the_forwarded_proto_behind_server_tls() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let missing = dir.0.join("not-yet-issued.pem");
    let missing = path_str(&missing);
    for (config, proto) in [
        (config(&f), "http"),
        (
            config(&f).server("tls", json!({ "cert": missing, "key": missing })),
            "https",
        ),
    ] {
        let file = dir.write("gw.toml", &config.to_toml());
        let r = run(&["explain", "-c", path_str(&file), "--path", "/public/x"]);
        assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
        let forwarded: Vec<&str> = upstream_headers(&r.stdout)
            .into_iter()
            .filter(|h| h.starts_with("x-forwarded-proto:"))
            .collect();
        assert_eq!(
            forwarded,
            [format!("x-forwarded-proto: {proto}")],
            "{}",
            r.stdout
        );
    }
}

/// HTTP parsers strip spaces and tabs around a header value, so `--token "$TOKEN "` is the
/// token the gateway would see, not a malformed Authorization header.
#[test]
fn explain_ignores_spaces_and_tabs_around_the_token() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let file = dir.write("gw.toml", &config(&f).to_toml());
    let t = f.token("alice");
    for token in [format!("{t} "), format!("\t {t}\t"), format!("{t}\t\t")] {
        let r = run(&[
            "explain",
            "-c",
            path_str(&file),
            "--path",
            "/admin/x",
            "--token",
            &token,
        ]);
        assert_eq!(r.code, Some(0), "{token:?}\n{}\n{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("claims ok"), "{}", r.stdout);
    }
}

/// A key id is the IdP's (or whoever answers at its JWKS URL): its control characters are
/// printed escaped, so they cannot retitle or clear the operator's terminal or fake a line.
#[test]
fn check_escapes_control_characters_from_a_jwks() {
    let f = Fixture::new();
    let kid = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[32mall good\r\u{85}";
    let key = test_support::TestKey::es256(kid);
    f.issuer.set_keys(&[&key]);
    let dir = TempDir::new();
    let file = dir.write("gw.toml", &config(&f).to_toml());
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(
        !r.stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{:?}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(r"\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[32mall good\r\u{85}"),
        "{}",
        r.stdout
    );
    // JSON escapes them itself, and a tool reads the kid as it is.
    let r = run(&["check", "-c", path_str(&file), "--json"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains('\u{1b}'), "{:?}", r.stdout);
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(summary["issuers"][0]["kids"], json!([kid]));
}

/// Issuers ready but `server.tls` unusable: `check` names the certificate, not the issuers, and
/// `--json` tells the two apart.
#[test]
fn check_with_only_an_unusable_tls_certificate_says_so() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let missing = dir.0.join("not-yet-issued.pem");
    let missing = path_str(&missing);
    let tls = config(&f).server("tls", json!({ "cert": missing, "key": missing }));
    let file = dir.write("tls.toml", &tls.to_toml());
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("warning: the TLS certificate or key (server.tls) cannot be loaded"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("not every issuer has usable keys"),
        "{}",
        r.stdout
    );
    let r = run(&["check", "-c", path_str(&file), "--json"]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(summary["ready"], json!(false));
    assert_eq!(summary["issuers_ready"], json!(true));
    assert_eq!(summary["tls_usable"], json!(false));

    // And the other way round.
    let down = format!("http://{}", crate::common::refused_addr());
    let file = dir.write(
        "down.toml",
        &config(&f)
            .edit_issuer("idp", |i| i.set("issuer", down))
            .to_toml(),
    );
    let r = run(&["check", "-c", path_str(&file), "--json"]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(summary["issuers_ready"], json!(false));
    assert_eq!(summary["tls_usable"], json!(true));
}

/// `revoke` tells a usage error (64) from an admin API it cannot reach (69, which a script may
/// retry).
#[test]
fn revoke_exits_69_when_the_admin_api_cannot_be_reached() {
    let dir = TempDir::new();
    let token_file = dir.write(
        "admin-token",
        "0123456789abcdef0123456789abcdef-admin-token",
    );
    let down = format!("http://{}", crate::common::refused_addr());
    let r = run(&[
        "revoke",
        "--admin",
        &down,
        "--token-file",
        path_str(&token_file),
        "list",
    ]);
    assert_eq!(r.code, Some(69), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("cannot reach"), "{}", r.stderr);
    let r = run(&[
        "revoke",
        "--admin",
        "https://x",
        "--token-file",
        path_str(&token_file),
        "list",
    ]);
    assert_eq!(r.code, Some(64), "{}\n{}", r.stdout, r.stderr);
    let missing = dir.0.join("no-such-token");
    let r = run(&[
        "revoke",
        "--admin",
        &down,
        "--token-file",
        path_str(&missing),
        "list",
    ]);
    assert_eq!(r.code, Some(64), "{}\n{}", r.stdout, r.stderr);
}

/// `revoke internal-token` reads the token from standard input when it is not on the command
/// line (or is `-`): on the command line it would be in `ps` and the shell's history. It is
/// never printed, and an empty one is a usage error.
#[test]
fn revoke_internal_token_reads_the_token_from_standard_input() {
    const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef-admin-token";
    let f = Fixture::new();
    let dir = TempDir::new();
    let token_file = dir.write("admin-token", ADMIN_TOKEN);
    let config = f
        .config()
        .admin("token_file", path_str(&token_file))
        .empty_section("revocation")
        .section("internal_issuer", "issuer", "https://internal.example")
        .route(
            Route::new("int", "/int", "echo", Pattern::InternalToken)
                .service("svc")
                .set("check_revocation", true),
        );
    let gateway = Gateway::start(&config);
    let admin = format!("http://{}", gateway.admin);
    let revoke = |given: &[&str], stdin: &str| {
        let mut args = vec![
            "revoke",
            "--admin",
            &admin,
            "--token-file",
            path_str(&token_file),
            "internal-token",
        ];
        args.extend_from_slice(given);
        let out = cli_with_stdin(&args, stdin.as_bytes());
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let internal_token_of = |sub: &str| {
        let external = f.token_with(sub, json!({"iat": test_support::now_secs() - 2}));
        let get = |token: &str| gateway.get("/int/x", &[("Authorization", &bearer(token))]);
        assert_eq!(get(&external).status, 200);
        let seen = f.upstream.last().unwrap();
        let internal = seen.header("authorization").unwrap();
        let internal = internal.strip_prefix("Bearer ").unwrap().to_owned();
        (external, internal)
    };

    // Omitted, and `-`: from standard input, whitespace and a final newline around it ignored.
    for (sub, given) in [("carol", &[][..]), ("dave", &["-"])] {
        let (external, internal) = internal_token_of(sub);
        let r = revoke(given, &format!(" \t{internal}\r\n\n"));
        assert_eq!(r.code, Some(0), "{given:?}\n{}\n{}", r.stdout, r.stderr);
        let answer: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(answer["revoked"]["value"], sub, "{}", r.stdout);
        for printed in [&r.stdout, &r.stderr] {
            assert!(!printed.contains(&internal), "the token was printed");
        }
        assert_eq!(
            gateway
                .get("/int/x", &[("Authorization", &bearer(&external))])
                .status,
            401
        );
    }

    // Still accepted as an argument.
    let (external, internal) = internal_token_of("erin");
    let r = revoke(&[&internal], "");
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains(&internal), "the token was printed");
    assert_eq!(
        gateway
            .get("/int/x", &[("Authorization", &bearer(&external))])
            .status,
        401
    );

    // Nothing but whitespace: a usage error, and no request is made.
    for (given, stdin) in [(&[][..], ""), (&["-"][..], " \n\t\n")] {
        let r = revoke(given, stdin);
        assert_eq!(r.code, Some(64), "{given:?}\n{}\n{}", r.stdout, r.stderr);
        assert_eq!(
            r.stderr,
            "trustgate revoke: internal-token: the token is empty; give it on standard input: trustgate revoke … internal-token < token.txt\n"
        );
        assert_eq!(r.stdout, "");
    }

    // `--help` says why standard input is preferred.
    let help = run(&["revoke", "internal-token", "--help"]).stdout;
    assert!(help.contains("Give the token on standard input"), "{help}");
    assert!(
        help.contains("omitted or `-`, it is read from standard input (preferred)"),
        "{help}"
    );
}

/// A Redis store that cannot be reached is not a configuration error: `explain` (which reads
/// the revocation list from it) exits 69 (EX_UNAVAILABLE) naming the store, as `serve` does when
/// a cluster's nodes refuse its first connection. The file is fine and a retry may pass.
#[test]
fn an_unreachable_store_exits_69_naming_it() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let store = |config: Config, key: &str, value: serde_json::Value| {
        config
            .section("store", "backend", "redis")
            .section("store", "namespace", "t")
            .section("store", key, value)
            .empty_section("revocation")
    };
    let standalone = dir.write(
        "standalone.toml",
        &store(config(&f), "url", json!("redis://127.0.0.1:1")).to_toml(),
    );
    let cluster = dir.write(
        "cluster.toml",
        &store(
            config(&f),
            "cluster_nodes",
            json!(["redis://127.0.0.1:1", "redis://127.0.0.1:2"]),
        )
        .to_toml(),
    );
    let refused = "Connection refused (os error 111)";
    for (file, message) in [
        (
            &standalone,
            format!(
                "trustgate: [store] Redis at redis://127.0.0.1:1 is unavailable: cannot read the revocation list (store: {refused})"
            ),
        ),
        (
            &cluster,
            format!(
                "trustgate: [store] Redis Cluster at redis://127.0.0.1:1, redis://127.0.0.1:2 is unavailable: cannot connect (store: Failed to create initial connections - Io: {refused})"
            ),
        ),
    ] {
        let r = run(&["explain", "-c", path_str(file), "--path", "/public/x"]);
        assert_eq!(r.code, Some(69), "{}\n{}", r.stdout, r.stderr);
        assert_eq!(
            r.stderr.lines().last(),
            Some(message.as_str()),
            "{}",
            r.stderr
        );
        assert_eq!(r.stdout, "");
    }
    // `serve` connects to a cluster at start (a standalone server is connected to lazily).
    let r = run(&["serve", "-c", path_str(&cluster)]);
    assert_eq!(r.code, Some(69), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.lines().last().is_some_and(|l| l.ends_with(
            "is unavailable: cannot connect (store: Failed to create initial connections - Io: Connection refused (os error 111))"
        )),
        "{}",
        r.stderr
    );
    // `check` does not contact the store.
    let r = run(&["check", "-c", path_str(&standalone)]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
}

/// The lines from `decision:` (the decision and the headers of the answer).
fn decision_lines(stdout: &str) -> Vec<&str> {
    lines_from(stdout, "decision: ").collect()
}

/// A gRPC call is refused as the gateway refuses it: HTTP 200 with `grpc-status`, not the HTTP
/// status a plain request gets.
#[test]
fn explain_shows_a_grpc_refusal_as_grpc_status() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let file = dir.write("gw.toml", &config(&f).to_toml());
    let expired = f.expired_token("alice");
    let explain = |path: &str, extra: &[&str]| {
        let mut args = vec!["explain", "-c", path_str(&file), "--path", path];
        args.extend_from_slice(extra);
        run(&args)
    };
    let grpc = [
        "--method",
        "POST",
        "-H",
        "Content-Type: application/grpc+proto",
    ];
    let r = explain("/admin/x", &[&grpc[..], &["--token", &expired]].concat());
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        decision_lines(&r.stdout),
        [
            "decision: refuse with 200 OK, grpc-status 16",
            r#"  www-authenticate: Bearer error="invalid_token""#,
            "  content-type: application/grpc",
            "  cache-control: no-store",
            "  grpc-status: 16",
            "  grpc-message: invalid_token",
        ],
        "{}",
        r.stdout
    );
    let r = explain("/nowhere", &grpc);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        decision_lines(&r.stdout)[0],
        "decision: refuse with 200 OK, grpc-status 12",
        "{}",
        r.stdout
    );
    // Not gRPC: the HTTP status, as before.
    let r = explain(
        "/admin/x",
        &[
            "-H",
            "Content-Type: application/grpc-web",
            "--token",
            &expired,
        ],
    );
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        decision_lines(&r.stdout)[0],
        "decision: refuse with 401 Unauthorized",
        "{}",
        r.stdout
    );
}

/// With `internal_issuer.serve_on_edge`, the gateway answers `GET /.well-known/jwks.json` and
/// `/.well-known/openid-configuration` itself, before routing: explain says so rather than
/// showing the route that would otherwise match.
#[test]
fn explain_shows_the_internal_issuers_documents_answered_on_the_edge() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let base = f
        .config()
        .route(Route::new("root", "/", "echo", Pattern::Public))
        .section("internal_issuer", "issuer", "https://internal.example");
    let on_edge = dir.write(
        "edge.toml",
        &base
            .clone()
            .section("internal_issuer", "serve_on_edge", true)
            .to_toml(),
    );
    let off = dir.write("off.toml", &base.to_toml());
    let explain = |file: &std::path::Path, path: &str, method: &str| {
        run(&[
            "explain",
            "-c",
            path_str(file),
            "--path",
            path,
            "--method",
            method,
        ])
    };
    for document in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let r = explain(&on_edge, document, "GET");
        assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
        let steps: Vec<&str> = lines_from(&r.stdout, "steps:").collect();
        assert_eq!(
            steps,
            [
                "steps:",
                &format!(
                    "  1. internal issuer: GET {document} is served on the public listener (internal_issuer.serve_on_edge), before routing"
                ),
                "",
                "decision: answer itself with 200 OK, the internal issuer's document",
                "  content-type: application/json",
                "  cache-control: public, max-age=60",
            ],
            "{}",
            r.stdout
        );
        // Another method, or the setting off: routed and forwarded as any path.
        for (file, method) in [(&on_edge, "POST"), (&off, "GET")] {
            let r = explain(file, document, method);
            assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
            assert!(r.stdout.contains(r#"route: "root""#), "{}", r.stdout);
            assert_eq!(
                decision_lines(&r.stdout)[0],
                format!("decision: forward to http://{}{document}", f.upstream.addr),
                "{}",
                r.stdout
            );
        }
    }
    // Any other path: routed.
    let r = explain(&on_edge, "/.well-known/other", "GET");
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("decision: forward to"), "{}", r.stdout);
}

/// With `[telemetry]`, a client's `traceparent`, `tracestate` and `baggage` reach the upstream
/// only when `trust_incoming` believes them; otherwise the gateway's own `traceparent` goes.
/// Explain shows the headers the gateway would actually forward (its peer is 127.0.0.1).
#[test]
fn explain_shows_the_trace_context_the_gateway_forwards() {
    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
    let f = Fixture::new();
    let dir = TempDir::new();
    let with_telemetry = |name: &str, trust: &str, ratio: f64| {
        let config = config(&f)
            .section("telemetry", "enabled", true)
            .section("telemetry", "endpoint", "http://127.0.0.1:4317")
            .section("telemetry", "sample_ratio", ratio)
            .section("telemetry", "trust_incoming", trust);
        dir.write(name, &config.to_toml())
    };
    let explain = |file: &std::path::Path, flags: &str| {
        let traceparent = format!("traceparent: {CLIENT}-{flags}");
        run(&[
            "explain",
            "-c",
            path_str(file),
            "--path",
            "/public/x",
            "-H",
            &traceparent,
            "-H",
            "tracestate: vendor=client",
            "-H",
            "baggage: user=mallory",
        ])
    };
    let trace_headers = |stdout: &str| -> Vec<String> {
        upstream_headers(stdout)
            .into_iter()
            .filter(|h| {
                ["traceparent", "tracestate", "baggage"]
                    .iter()
                    .any(|n| h.starts_with(n))
            })
            .map(str::to_owned)
            .collect()
    };
    let step = |stdout: &str| {
        stdout
            .lines()
            .find(|l| l.contains(". trace: "))
            .map(str::to_owned)
    };

    // Not believed (the default: only from server.trusted_proxies, here none), not sampled:
    // the client's three are gone and a new trace's traceparent goes.
    let file = with_telemetry("default.toml", "trusted-proxies", 0.0);
    let r = explain(&file, "01");
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let sent = trace_headers(&r.stdout);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let ours = sent[0].strip_prefix("traceparent: 00-").unwrap();
    assert!(
        ours.ends_with("-00") && ours.len() == 16 * 2 + 1 + 8 * 2 + 3,
        "{ours}"
    );
    assert!(!ours.starts_with(&CLIENT[3..35]), "{ours}");
    assert_eq!(
        step(&r.stdout).as_deref(),
        Some(
            "  1. trace: the client's trace context is not believed from 127.0.0.1 (telemetry.trust_incoming): its traceparent, tracestate and baggage are removed; a new trace, not sampled"
        ),
        "{}",
        r.stdout
    );

    // Not believed, sampled: the gateway's upstream span.
    let file = with_telemetry("never.toml", "never", 1.0);
    let r = explain(&file, "01");
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(
        step(&r.stdout).is_some_and(|s| s.ends_with("; a new trace, sampled")),
        "{}",
        r.stdout
    );
    assert_eq!(
        trace_headers(&r.stdout),
        ["traceparent: <the gateway's upstream span, sampled>"]
    );

    // Believed and sampled: the client's trace continues in the gateway's span, its tracestate
    // and baggage go on.
    let file = with_telemetry("always.toml", "always", 0.0);
    let r = explain(&file, "01");
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        step(&r.stdout).as_deref(),
        Some("  1. trace: continues the client's traceparent (telemetry.trust_incoming); sampled"),
        "{}",
        r.stdout
    );
    assert_eq!(
        trace_headers(&r.stdout),
        [
            "tracestate: vendor=client",
            "baggage: user=mallory",
            "traceparent: <the gateway's upstream span, sampled>",
        ]
    );
    // Believed, not sampled: passed on as it came.
    let r = explain(&file, "00");
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        trace_headers(&r.stdout),
        [
            format!("traceparent: {CLIENT}-00"),
            "tracestate: vendor=client".to_owned(),
            "baggage: user=mallory".to_owned(),
        ]
    );

    // Without [telemetry] the gateway forwards them untouched, and there is no trace step.
    let file = dir.write("none.toml", &config(&f).to_toml());
    let r = explain(&file, "01");
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(step(&r.stdout), None, "{}", r.stdout);
    assert_eq!(
        trace_headers(&r.stdout),
        [
            format!("traceparent: {CLIENT}-01"),
            "tracestate: vendor=client".to_owned(),
            "baggage: user=mallory".to_owned(),
        ]
    );
}
