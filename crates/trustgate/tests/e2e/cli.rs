//! End-to-end: the operator commands. `trustgate check` prints the route table and issuer
//! readiness, a bad file exits 64 with a message that says what to fix, and `trustgate explain`
//! walks a request through the pipeline without ever printing the token.

use serde_json::json;

use crate::common::{Fixture, TempDir, cli};

fn config(f: &Fixture) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
{base}
[[route]]
name = "public"
prefix = "/public"
upstream = "echo"
pattern = "public"

[[route]]
name = "admin"
prefix = "/admin"
upstream = "echo"
pattern = "identity-headers"

[[route]]
name = "api"
host = "api.example"
prefix = "/api/v1"
upstream = "echo"
pattern = "forward-token"
"#,
        base = f.base_toml()
    )
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
    let file = dir.write("gw.toml", &config(&f));
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

/// `check` says what it found: each issuer's key source and algorithms, the internal issuer, and
/// each route's service, assertion and `require`; `--json` gives the same to tools.
#[test]
fn check_summarises_issuers_the_internal_issuer_and_route_rules_as_text_and_json() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let text = format!(
        "[internal_issuer]\nissuer = \"https://internal.example\"\n{}\n[[route]]\nname = \"orders\"\n\
         prefix = \"/orders\"\nupstream = \"echo\"\npattern = \"internal-token\"\nservice = \"orders\"\n\
         require = {{ scopes = [\"orders:read\"], roles = [\"clerk\"], mode = \"any\" }}\n\
         [[route]]\nname = \"profile\"\nprefix = \"/profile\"\nupstream = \"echo\"\n\
         pattern = \"identity-headers\"\nassertion = true\nservice = \"profile\"\n",
        config(&f)
    );
    let file = dir.write("gw.toml", &text);
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
    let down = format!("http://{}", crate::common::closed_port());
    // The whole `issuer = "…"` line: the issuer's URL alone can be a prefix of the upstream's.
    let file = dir.write(
        "gw.toml",
        &config(&f).replace(
            &format!("issuer = \"{}\"", f.iss),
            &format!("issuer = \"{down}\""),
        ),
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

    // Unknown field: named, with its line.
    let typo = good.replacen("prefix = \"/admin\"", "prefx = \"/admin\"", 1);
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
        &good.replacen(
            "upstream = \"echo\"\npattern = \"identity-headers\"",
            "upstream = \"echoo\"\npattern = \"identity-headers\"",
            1,
        ),
    );
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(64), "{}", r.stderr);
    assert!(r.stderr.contains("\"echoo\""), "{}", r.stderr);
    assert!(r.stderr.contains("[\"echo\"]"), "{}", r.stderr);

    // A missing environment variable is named.
    let file = dir.write(
        "env.toml",
        &good.replacen(
            "audiences = [\"api\"]",
            "audiences = [\"${TRUSTGATE_TEST_UNSET_AUD}\"]",
            1,
        ),
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
        &good.replacen("discovery = true", "discovery = true\nleeway = 60", 1),
    );
    let r = run(&["check", "-c", path_str(&file)]);
    assert_eq!(r.code, Some(64), "{}", r.stderr);
    assert!(r.stderr.contains(r#"write "60s""#), "{}", r.stderr);

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
    let issuer_line = "discovery = true";
    let internal_route = "\n[[route]]\nname = \"int\"\nprefix = \"/int\"\nupstream = \"echo\"\npattern = \"internal-token\"\n";
    let cases: Vec<(&str, String, &[&str], Option<String>)> = vec![
        (
            "leeway over 5 minutes",
            good.replacen(issuer_line, "discovery = true\nleeway = \"6m\"", 1),
            &["leeway", "300s", "danger_allow_long_leeway"],
            Some(good.replacen(
                issuer_line,
                "discovery = true\nleeway = \"6m\"\ndanger_allow_long_leeway = true",
                1,
            )),
        ),
        (
            "plain http jwks_url to another host",
            good.replacen(
                issuer_line,
                "jwks_url = \"http://idp.example.com/jwks.json\"",
                1,
            ),
            &[
                "jwks_url",
                "idp.example.com",
                "jwks_fetch.danger_allow_http",
            ],
            None,
        ),
        (
            "plain http discovery to another host",
            good.replacen(
                &format!("issuer = \"{}\"", f.iss),
                "issuer = \"http://idp.example.com\"",
                1,
            ),
            &[
                "discovery",
                "idp.example.com",
                "jwks_fetch.danger_allow_http",
            ],
            None,
        ),
        (
            "rotation_interval of 0s",
            format!("[internal_issuer]\nrotation_interval = \"0s\"\n{good}{internal_route}"),
            &["rotation_interval", "0s"],
            None,
        ),
        (
            "rotation_interval shorter than the JWKS max-age plus a margin",
            format!("[internal_issuer]\nrotation_interval = \"30s\"\n{good}{internal_route}"),
            &["rotation_interval", "90s", "danger_fast_rotation"],
            Some(format!(
                "[internal_issuer]\nrotation_interval = \"30s\"\ndanger_fast_rotation = true\n{good}{internal_route}"
            )),
        ),
        (
            "internal_ttl under 1s",
            format!("[internal_issuer]\n{good}{internal_route}internal_ttl = \"500ms\"\n"),
            &["internal_ttl", "at least 1s"],
            None,
        ),
        (
            "max_ttl under 1s",
            format!("[internal_issuer]\nmax_ttl = \"500ms\"\n{good}{internal_route}"),
            &["max_ttl", "at least 1s"],
            None,
        ),
    ];
    for (name, text, needles, allowed) in cases {
        let file = dir.write("weak.toml", &text);
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
            let file = dir.write("allowed.toml", &allowed);
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
    for (field, from) in [
        ("server.listen", "[server]\nlisten = \"127.0.0.1:0\""),
        ("admin.listen", "[admin]\nlisten = \"127.0.0.1:0\""),
    ] {
        let to = from.replace("127.0.0.1:0", &addr);
        let file = dir.write("taken.toml", &config(&f).replacen(from, &to, 1));
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

/// The demo with its port taken names the flags that change it, and does not exit like a bad
/// configuration file (there is none).
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

/// The lines after `headers the upstream receives:`.
fn upstream_headers(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("headers the upstream receives:"))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn explain_shows_the_steps_and_the_injected_identity_but_never_the_token() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let file = dir.write("gw.toml", &config(&f));
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
    let file = dir.write("gw.toml", &config(&f));
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
