//! End-to-end: the adversarial token suite through the real binary. Every attack is a token (or a
//! request carrying one) sent to an `identity-headers` route backed by a real issuer on 127.0.0.1;
//! each must be answered 401 `Bearer error="invalid_token"` (or 400 `invalid_request` where the
//! request itself is malformed), and the echo upstream must receive nothing. Each test ends with
//! a valid control token answered 200, so a broken setup cannot make the attacks pass.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use test_support::{TestKey, b64, claims, now_secs};

use crate::common::{Config, Gateway, Issuer, Pattern, RawResponse, Route, Upstream, echo, issuer};

const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;
const INVALID_REQUEST: &str = r#"Bearer error="invalid_request""#;

struct Setup {
    gateway: Gateway,
    upstream: test_support::EchoUpstream,
    issuer: test_support::TestIssuer,
    /// RS256 key `r1`.
    rsa: TestKey,
    /// ES256 key `e1`.
    ec: TestKey,
    iss: String,
}

/// An issuer publishing `r1` (RS256) and `e1` (ES256), an echo upstream, and an
/// `identity-headers` route at `/ids`, with `edit` applied to the config.
fn setup_with(edit: impl FnOnce(Config) -> Config) -> Setup {
    let issuer = issuer();
    let rsa = TestKey::rsa("r1", "RS256");
    let ec = TestKey::es256("e1");
    issuer.set_keys(&[&rsa, &ec]);
    let upstream = echo();
    let config = Config::new()
        .issuer(
            Issuer::discovery("idp", &issuer.url())
                .audiences(&["api"])
                .algorithms(&["RS256", "ES256"]),
        )
        .upstream(Upstream::new("echo", &upstream.url()))
        .route(
            Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders).headers(&[
                ("X-User-Id", "subject"),
                ("X-User-Roles", "roles"),
                ("X-Tenant-Id", "tenant"),
            ]),
        );
    let gateway = Gateway::start(&edit(config));
    Setup {
        gateway,
        upstream,
        iss: issuer.url(),
        issuer,
        rsa,
        ec,
    }
}

fn setup() -> Setup {
    setup_with(|c| c)
}

impl Setup {
    fn claims(&self, sub: &str) -> Value {
        let mut c = claims(&self.iss, "api", sub);
        c["roles"] = json!(["user"]);
        c["tenant_id"] = json!("t1");
        c
    }

    /// `Bearer <token>` to `/ids/x`.
    fn send(&self, token: &str) -> RawResponse {
        let auth = format!("Bearer {token}");
        self.gateway.get("/ids/x", &[("Authorization", &auth)])
    }

    /// Asserts 401 invalid_token and an untouched upstream.
    fn refused(&self, variant: &str, token: &str) {
        let r = self.send(token);
        assert_eq!(
            r.status,
            401,
            "{variant}: expected 401, got {} {}",
            r.status,
            r.body_text()
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some(INVALID_TOKEN),
            "{variant}: WWW-Authenticate"
        );
        assert_eq!(self.upstream.count(), 0, "{variant}: reached the upstream");
    }

    /// Asserts 400 invalid_request and an untouched upstream.
    fn bad_request(&self, variant: &str, token: &str) {
        let r = self.send(token);
        assert_eq!(
            r.status,
            400,
            "{variant}: expected 400, got {} {}",
            r.status,
            r.body_text()
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some(INVALID_REQUEST),
            "{variant}: WWW-Authenticate"
        );
        assert_eq!(self.upstream.count(), 0, "{variant}: reached the upstream");
    }

    /// A valid token from each key is answered 200 and the upstream sees the verified subject.
    fn control(&self) {
        for key in [&self.ec, &self.rsa] {
            let token = key.sign(&self.claims("control"));
            let before = self.upstream.count();
            let r = self.send(&token);
            assert_eq!(r.status, 200, "control {}: {}", key.alg, r.body_text());
            assert_eq!(self.upstream.count(), before + 1);
            let got = self.upstream.last().unwrap();
            assert_eq!(got.header_values("x-user-id"), ["control"]);
            assert_eq!(got.header_values("x-user-roles"), ["user"]);
            assert_eq!(got.header_values("x-tenant-id"), ["t1"]);
        }
    }
}

/// `header.payload.signature` with `signature` given as raw bytes.
fn assemble(header: &str, payload: &str, sig: &[u8]) -> String {
    format!("{}.{}.{}", b64(header), b64(payload), b64(sig))
}

fn header(alg: &str, kid: &str) -> String {
    json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string()
}

#[test]
fn alg_none_in_every_spelling() {
    let s = setup();
    let payload = s.claims("admin").to_string();
    for alg in ["none", "None", "NONE", "nOnE", "none ", ""] {
        for with_kid in [false, true] {
            let h = if with_kid {
                json!({"alg": alg, "kid": "e1", "typ": "JWT"}).to_string()
            } else {
                json!({"alg": alg}).to_string()
            };
            let body = format!("{}.{}", b64(&h), b64(&payload));
            // A valid ES256 signature over this exact input must not help either.
            let real_sig = b64(s.ec.sign_raw("ES256", body.as_bytes()));
            for (form, token) in [
                ("two segments", body.clone()),
                ("empty signature", format!("{body}.")),
                ("junk signature", format!("{body}.{}", b64(b"sig"))),
                ("real ES256 signature", format!("{body}.{real_sig}")),
            ] {
                s.refused(&format!("alg={alg:?} kid={with_kid} {form}"), &token);
            }
        }
    }
    s.control();
}

/// Minimal DER walk: returns (tag, content, rest).
fn der_next(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, start) = if input[1] < 0x80 {
        (input[1] as usize, 2)
    } else {
        let n = (input[1] & 0x7f) as usize;
        let mut len = 0usize;
        for b in &input[2..2 + n] {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    (tag, &input[start..start + len], &input[start + len..])
}

#[test]
fn hmac_signed_with_the_public_key_in_every_encoding() {
    let s = setup();
    let pem = s.rsa.public_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let spki = STANDARD.decode(body).unwrap();
    // SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier, BIT STRING (RSAPublicKey) }
    let (_, spki_seq, _) = der_next(&spki);
    let (_, _, after_alg) = der_next(spki_seq);
    let (bit_tag, bits, _) = der_next(after_alg);
    assert_eq!(bit_tag, 0x03);
    let pkcs1 = bits[1..].to_vec();
    assert_eq!(pkcs1[0], 0x30, "PKCS#1 RSAPublicKey is a SEQUENCE");
    let jwk = s.rsa.jwk();
    let modulus = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("PEM with trailing newline", pem.clone().into_bytes()),
        (
            "PEM without trailing newline",
            pem.trim_end().as_bytes().to_vec(),
        ),
        ("PEM with CRLF", pem.replace('\n', "\r\n").into_bytes()),
        ("PKCS#1 DER", pkcs1),
        ("SPKI DER", spki.clone()),
        ("JWK JSON text", jwk.to_string().into_bytes()),
        (
            "JWK JSON text without alg",
            s.rsa.jwk_without_alg().to_string().into_bytes(),
        ),
        ("raw modulus", modulus),
        ("ES256 key PEM", s.ec.public_pem().into_bytes()),
    ];
    let payload = s.claims("admin").to_string();
    for (alg, hmac_alg) in [
        ("HS256", hmac::HMAC_SHA256),
        ("HS384", hmac::HMAC_SHA384),
        ("HS512", hmac::HMAC_SHA512),
    ] {
        for (encoding, secret) in &secrets {
            let key = hmac::Key::new(hmac_alg, secret);
            for h in [
                header(alg, "r1"),
                json!({"alg": alg, "typ": "JWT"}).to_string(),
                header(alg, "e1"),
            ] {
                let input = format!("{}.{}", b64(&h), b64(&payload));
                let tag = hmac::sign(&key, input.as_bytes());
                let token = format!("{input}.{}", b64(tag.as_ref()));
                s.refused(&format!("{alg} with {encoding}, header {h}"), &token);
            }
        }
    }
    s.control();
}

#[test]
fn kid_injection_is_refused_with_at_most_one_refetch() {
    let s = setup();
    let before = s.issuer.jwks_fetches();
    let payload = s.claims("admin").to_string();
    let long = "k".repeat(4096);
    let kids: Vec<(&str, Value)> = vec![
        ("path traversal", json!("../../etc/passwd")),
        ("absolute path", json!("/etc/passwd")),
        ("SQL", json!("' OR 1=1 --")),
        ("CRLF header", json!("kid\r\nX-Injected: 1")),
        ("NUL", json!("e1\u{0}")),
        ("URL", json!("http://127.0.0.1:1/jwks.json")),
        ("4 KiB kid", json!(long)),
        ("number", json!(1)),
        ("object", json!({"kid": "e1"})),
        ("array", json!(["e1"])),
        ("null", Value::Null),
        ("bool", json!(true)),
        ("empty", json!("")),
    ];
    for (name, kid) in &kids {
        let h = json!({"alg": "ES256", "kid": kid, "typ": "JWT"}).to_string();
        // Signed with the real key: only the kid is wrong.
        let token = s.ec.sign_with_header(&h, &payload);
        s.refused(&format!("kid {name}"), &token);
    }
    let after = s.issuer.jwks_fetches();
    assert!(
        after <= before + 1,
        "unknown kids caused {} JWKS fetches (cooldown allows 1)",
        after - before
    );
    let logs = s.gateway.log_text();
    assert!(
        !logs.lines().any(|l| l.starts_with("X-Injected")),
        "a kid forged a log line"
    );
    s.control();
}

#[test]
fn key_carrying_headers_are_never_fetched_or_used() {
    let s = setup();
    // The canaries: an issuer publishing the attacker's key and a plain recorder.
    let canary = issuer();
    let canary_echo = echo();
    let attacker = TestKey::es256("attacker");
    canary.set_keys(&[&attacker]);
    let jku = canary.jwks_url();
    let x5u = format!("{}/cert.pem", canary_echo.url());
    let jwk = attacker.jwk();
    let der_body: String = attacker
        .public_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let payload = s.claims("admin").to_string();
    let mut headers = Vec::new();
    for kid in [Some("attacker"), Some("e1"), None] {
        let with_kid = |mut h: Value| {
            if let Some(kid) = kid {
                h["kid"] = json!(kid);
            }
            h
        };
        headers.push((
            format!("jku kid={kid:?}"),
            with_kid(json!({"alg": "ES256", "jku": jku})),
        ));
        headers.push((
            format!("jku to discovery kid={kid:?}"),
            with_kid(json!({"alg": "ES256", "jku": canary.url()})),
        ));
        headers.push((
            format!("x5u kid={kid:?}"),
            with_kid(json!({"alg": "ES256", "x5u": x5u})),
        ));
        headers.push((
            format!("jwk kid={kid:?}"),
            with_kid(json!({"alg": "ES256", "jwk": jwk})),
        ));
        headers.push((
            format!("x5c kid={kid:?}"),
            with_kid(json!({"alg": "ES256", "x5c": [der_body]})),
        ));
        headers.push((
            format!("all four kid={kid:?}"),
            with_kid(
                json!({"alg": "ES256", "jku": jku, "x5u": x5u, "jwk": jwk, "x5c": [der_body]}),
            ),
        ));
    }
    for (name, h) in &headers {
        let token = attacker.sign_with_header(&h.to_string(), &payload);
        s.refused(name, &token);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(canary.jwks_fetches(), 0, "the jku canary was fetched");
    assert_eq!(
        canary.discovery_fetches(),
        0,
        "the canary discovery was fetched"
    );
    assert_eq!(canary_echo.count(), 0, "the x5u canary was fetched");
    s.control();
}

#[test]
fn crit_and_unencoded_payloads_are_refused() {
    let s = setup();
    let payload = s.claims("admin").to_string();
    let headers: Vec<(&str, Value)> = vec![
        (
            "crit [exp]",
            json!({"alg":"ES256","kid":"e1","crit":["exp"]}),
        ),
        ("crit []", json!({"alg":"ES256","kid":"e1","crit":[]})),
        (
            "crit [x] with x",
            json!({"alg":"ES256","kid":"e1","crit":["x"],"x":1}),
        ),
        (
            "crit string",
            json!({"alg":"ES256","kid":"e1","crit":"exp"}),
        ),
        ("crit null", json!({"alg":"ES256","kid":"e1","crit":null})),
        (
            "b64 false with crit",
            json!({"alg":"ES256","kid":"e1","b64":false,"crit":["b64"]}),
        ),
        ("b64 false", json!({"alg":"ES256","kid":"e1","b64":false})),
        (
            "b64 true with crit",
            json!({"alg":"ES256","kid":"e1","b64":true,"crit":["b64"]}),
        ),
        (
            "b64 string",
            json!({"alg":"ES256","kid":"e1","b64":"false"}),
        ),
        ("b64 zero", json!({"alg":"ES256","kid":"e1","b64":0})),
    ];
    for (name, h) in &headers {
        let token = s.ec.sign_with_header(&h.to_string(), &payload);
        s.refused(name, &token);
    }
    // RFC 7797 detached form: `header..signature`, signed over `header.<raw payload>`.
    let h = json!({"alg":"ES256","kid":"e1","b64":false,"crit":["b64"]}).to_string();
    let input = format!("{}.{payload}", b64(&h));
    let sig = s.ec.sign_raw("ES256", input.as_bytes());
    s.refused("b64 false detached", &format!("{}..{}", b64(&h), b64(&sig)));
    s.control();
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from a raw P1363 signature.
fn p1363_to_der(raw: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        if v.is_empty() || v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = int(r);
    body.extend(int(s));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn malformed_signatures_are_refused() {
    let s = setup();
    let payload = s.claims("admin").to_string();
    let n = hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    let es_header = header("ES256", "e1");
    let good = s.ec.sign_with_header(&es_header, &payload);
    let good_sig = URL_SAFE_NO_PAD
        .decode(good.rsplit('.').next().unwrap())
        .unwrap();
    assert_eq!(good_sig.len(), 64);
    let mut one = vec![0u8; 32];
    one[31] = 1;
    let mut too_long = good_sig.clone();
    too_long.push(0);
    let mut leading_zero = vec![0u8];
    leading_zero.extend(&good_sig);
    let mut ec_cases: Vec<(&str, Vec<u8>)> = vec![
        ("r=s=0", vec![0u8; 64]),
        ("r=0 s=1", [vec![0u8; 32], one.clone()].concat()),
        ("r=1 s=0", [one.clone(), vec![0u8; 32]].concat()),
        ("r=s=n", [n.clone(), n.clone()].concat()),
        ("r=n s=real", [n.clone(), good_sig[32..].to_vec()].concat()),
        (
            "DER encoding of the real signature",
            p1363_to_der(&good_sig),
        ),
        ("too long (trailing zero)", too_long),
        ("too long (leading zero)", leading_zero),
        ("too short (63 bytes)", good_sig[..63].to_vec()),
        ("too short (32 bytes)", good_sig[..32].to_vec()),
        ("empty", Vec::new()),
        ("all 0xFF", vec![0xff; 64]),
    ];
    // r and s swapped.
    ec_cases.push((
        "r and s swapped",
        [&good_sig[32..], &good_sig[..32]].concat(),
    ));
    for (name, sig) in &ec_cases {
        s.refused(
            &format!("ES256 {name}"),
            &assemble(&es_header, &payload, sig),
        );
    }

    let rs_header = header("RS256", "r1");
    let good = s.rsa.sign_with_header(&rs_header, &payload);
    let good_sig = URL_SAFE_NO_PAD
        .decode(good.rsplit('.').next().unwrap())
        .unwrap();
    assert_eq!(good_sig.len(), 256);
    let modulus = URL_SAFE_NO_PAD
        .decode(s.rsa.jwk()["n"].as_str().unwrap())
        .unwrap();
    let mut leading_zero = vec![0u8];
    leading_zero.extend(&good_sig);
    let mut trailing = good_sig.clone();
    trailing.push(0);
    let rsa_cases: Vec<(&str, Vec<u8>)> = vec![
        ("all zeros", vec![0u8; 256]),
        ("zero then one", [vec![0u8; 255], vec![1]].concat()),
        ("all 0xFF", vec![0xff; 256]),
        ("s = n", modulus),
        ("255 bytes", good_sig[1..].to_vec()),
        ("leading zero (257 bytes)", leading_zero),
        ("trailing byte (257 bytes)", trailing),
        ("128 bytes", good_sig[..128].to_vec()),
        ("512 bytes", [good_sig.clone(), good_sig.clone()].concat()),
        ("empty", Vec::new()),
    ];
    for (name, sig) in &rsa_cases {
        s.refused(
            &format!("RS256 {name}"),
            &assemble(&rs_header, &payload, sig),
        );
    }
    // PS256 signature from the RS256 key: a real signature, wrong padding.
    let ps = s.rsa.sign_raw(
        "PS256",
        format!("{}.{}", b64(&rs_header), b64(&payload)).as_bytes(),
    );
    s.refused(
        "RS256 header, PSS signature",
        &assemble(&rs_header, &payload, &ps),
    );
    s.control();
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Payload JSON text with raw JSON values for the date claims (`None` leaves it out).
fn payload_text(iss: &str, iat: Option<&str>, nbf: Option<&str>, exp: Option<&str>) -> String {
    let mut text = format!(r#"{{"iss":"{iss}","aud":"api","sub":"admin""#);
    for (name, value) in [("iat", iat), ("nbf", nbf), ("exp", exp)] {
        if let Some(value) = value {
            text.push_str(&format!(r#","{name}":{value}"#));
        }
    }
    text.push('}');
    text
}

#[test]
fn wrongly_typed_time_claims_are_refused() {
    let s = setup();
    let now = now_secs();
    let now_text = now.to_string();
    let exp_text = (now + 3600).to_string();
    let h = header("ES256", "e1");
    let bad: Vec<String> = vec![
        format!("\"{}\"", now + 3600),
        "\"tomorrow\"".into(),
        "true".into(),
        "false".into(),
        "null".into(),
        format!("[{}]", now + 3600),
        "[]".into(),
        format!("{{\"v\":{}}}", now + 3600),
        "1e300".into(),
        "-1e300".into(),
        "-1".into(),
        "18446744073709551616".into(),
        "9223372036854775808".into(),
        "1e9999".into(),
        "NaN".into(),
    ];
    for value in &bad {
        for claim in ["exp", "nbf", "iat"] {
            let pick = |name: &str, normal: &str| {
                if name == claim {
                    Some(value.clone())
                } else {
                    Some(normal.to_owned())
                }
            };
            let iat = pick("iat", &now_text);
            let nbf = pick("nbf", &now_text);
            let exp = pick("exp", &exp_text);
            let payload = payload_text(&s.iss, iat.as_deref(), nbf.as_deref(), exp.as_deref());
            let token = s.ec.sign_with_header(&h, &payload);
            s.refused(&format!("{claim} = {value}"), &token);
        }
    }
    let missing_exp = payload_text(&s.iss, Some(&now_text), Some(&now_text), None);
    s.refused("missing exp", &s.ec.sign_with_header(&h, &missing_exp));
    // The well-formed version of the same payload is accepted (the builder is right).
    let fine = payload_text(&s.iss, Some(&now_text), Some(&now_text), Some(&exp_text));
    let r = s.send(&s.ec.sign_with_header(&h, &fine));
    assert_eq!(r.status, 200, "well-formed dates: {}", r.body_text());
    s.upstream.clear();
    s.control();
}

#[test]
fn issuer_and_audience_near_misses_are_refused() {
    let s = setup();
    let iss = s.iss.clone();
    let lookalike = iss.replacen("http", "htt\u{0440}", 1); // Cyrillic er
    let iss_cases: Vec<(&str, Value)> = vec![
        ("trailing slash", json!(format!("{iss}/"))),
        ("upper case", json!(iss.to_uppercase())),
        ("scheme case", json!(iss.replacen("http", "HTTP", 1))),
        ("trailing space", json!(format!("{iss} "))),
        ("leading space", json!(format!(" {iss}"))),
        ("prefix", json!(iss[..iss.len() - 1].to_owned())),
        ("suffix", json!(format!("{iss}0"))),
        ("path suffix", json!(format!("{iss}/evil"))),
        ("unicode lookalike", json!(lookalike)),
        ("NUL", json!(format!("{iss}\u{0}"))),
        ("https", json!(iss.replacen("http", "https", 1))),
        (
            "localhost",
            json!(iss.replacen("127.0.0.1", "localhost", 1)),
        ),
        (
            "array of near misses",
            json!([format!("{iss}/"), format!("{iss} ")]),
        ),
        ("array with the issuer", json!([iss])),
        ("null", Value::Null),
        ("number", json!(1)),
        ("empty", json!("")),
    ];
    for (name, value) in &iss_cases {
        let mut c = s.claims("admin");
        c["iss"] = value.clone();
        s.refused(&format!("iss {name}"), &s.ec.sign(&c));
    }
    let mut c = s.claims("admin");
    c.as_object_mut().unwrap().remove("iss");
    s.refused("iss missing", &s.ec.sign(&c));

    let aud_cases: Vec<(&str, Value)> = vec![
        ("trailing slash", json!("api/")),
        ("upper case", json!("API")),
        ("trailing space", json!("api ")),
        ("leading space", json!(" api")),
        ("prefix", json!("ap")),
        ("suffix", json!("api1")),
        ("prefixed", json!("xapi")),
        ("unicode lookalike", json!("\u{0430}pi")),
        ("NUL", json!("api\u{0}")),
        (
            "array of near misses",
            json!(["api/", "API", "api ", "\u{0430}pi"]),
        ),
        ("empty array", json!([])),
        ("nested array", json!([["api"]])),
        ("null", Value::Null),
        ("number", json!(1)),
        ("empty", json!("")),
        ("comma list", json!("api,other")),
    ];
    for (name, value) in &aud_cases {
        let mut c = s.claims("admin");
        c["aud"] = value.clone();
        s.refused(&format!("aud {name}"), &s.ec.sign(&c));
    }
    let mut c = s.claims("admin");
    c.as_object_mut().unwrap().remove("aud");
    s.refused("aud missing", &s.ec.sign(&c));
    s.control();
}

#[test]
fn duplicate_json_members_are_refused() {
    let s = setup();
    let iss = &s.iss;
    let now = now_secs();
    let (iat, exp, expired) = (now, now + 3600, now - 3600);
    let good_payload = s.claims("admin").to_string();
    let headers = [
        (
            "alg twice (same)",
            r#"{"alg":"ES256","alg":"ES256","kid":"e1"}"#,
        ),
        (
            "alg none then ES256",
            r#"{"alg":"none","alg":"ES256","kid":"e1"}"#,
        ),
        (
            "alg ES256 then none",
            r#"{"alg":"ES256","alg":"none","kid":"e1"}"#,
        ),
        (
            "alg HS256 then ES256",
            r#"{"alg":"HS256","alg":"ES256","kid":"e1"}"#,
        ),
        ("kid twice", r#"{"alg":"ES256","kid":"x","kid":"e1"}"#),
        (
            "alg and escaped alg",
            r#"{"alg":"none","\u0061lg":"ES256","kid":"e1"}"#,
        ),
    ];
    for (name, h) in headers {
        s.refused(
            &format!("header {name}"),
            &s.ec.sign_with_header(h, &good_payload),
        );
    }
    let base = format!(r#""iss":"{iss}","aud":"api","iat":{iat},"nbf":{iat}"#);
    let payloads = [
        (
            "sub twice",
            format!(r#"{{{base},"sub":"alice","sub":"admin","exp":{exp}}}"#),
        ),
        (
            "sub and escaped sub",
            format!(r#"{{{base},"sub":"alice","\u0073ub":"admin","exp":{exp}}}"#),
        ),
        (
            "exp valid then expired",
            format!(r#"{{{base},"sub":"alice","exp":{exp},"exp":{expired}}}"#),
        ),
        (
            "exp expired then valid",
            format!(r#"{{{base},"sub":"alice","exp":{expired},"exp":{exp}}}"#),
        ),
        (
            "iss twice",
            format!(r#"{{{base},"iss":"{iss}","sub":"alice","exp":{exp}}}"#),
        ),
        (
            "aud twice",
            format!(r#"{{{base},"aud":"other","sub":"alice","exp":{exp}}}"#),
        ),
        (
            "nested duplicate",
            format!(r#"{{{base},"sub":"alice","exp":{exp},"x":{{"a":1,"a":2}}}}"#),
        ),
    ];
    let h = header("ES256", "e1");
    for (name, p) in &payloads {
        s.refused(&format!("payload {name}"), &s.ec.sign_with_header(&h, p));
    }
    s.control();
}

/// A token with at least one `-` or `_` (so the standard alphabet spelling differs) and whose
/// header and payload segments have unused trailing bits.
fn base64_probe(s: &Setup) -> String {
    for i in 0..10_000 {
        let mut c = s.claims("admin");
        c["jti"] = json!(format!("j{i}"));
        let token = s.ec.sign(&c);
        let parts: Vec<&str> = token.split('.').collect();
        if parts[..2].iter().all(|p| p.len() % 4 != 0) && token.contains(['-', '_']) {
            return token;
        }
    }
    panic!("no probe token found");
}

/// Sets unused trailing bits in the last character of a base64url segment.
fn non_canonical(segment: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_ne!(segment.len() % 4, 0);
    let last = *segment.as_bytes().last().unwrap();
    let index = ALPHABET.iter().position(|c| *c == last).unwrap();
    assert_eq!(index & 1, 0, "canonical encodings have zero trailing bits");
    let mut out = segment[..segment.len() - 1].to_owned();
    out.push(ALPHABET[index | 1] as char);
    out
}

#[test]
fn base64_variants_are_refused() {
    let s = setup();
    let token = base64_probe(&s);
    // The probe itself is valid.
    let r = s.send(&token);
    assert_eq!(r.status, 200, "probe: {}", r.body_text());
    s.upstream.clear();
    let parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let with = |i: usize, seg: String| {
        let mut p = parts.clone();
        p[i] = seg;
        p.join(".")
    };
    let mut cases: Vec<(String, String)> = Vec::new();
    for (i, name) in ["header", "payload", "signature"].iter().enumerate() {
        let seg = &parts[i];
        let pad = "=".repeat((4 - seg.len() % 4) % 4);
        cases.push((format!("{name} padded"), with(i, format!("{seg}{pad}"))));
        cases.push((format!("{name} with one ="), with(i, format!("{seg}="))));
        cases.push((
            format!("{name} non-canonical bits"),
            with(i, non_canonical(seg)),
        ));
        cases.push((
            format!("{name} standard alphabet"),
            with(i, seg.replace('-', "+").replace('_', "/")),
        ));
        cases.push((
            format!("{name} percent-encoded ="),
            with(i, format!("{seg}%3D")),
        ));
        cases.push((format!("{name} dot inside"), with(i, format!("{seg}."))));
    }
    cases.push((
        "whole token standard alphabet".into(),
        token.replace('-', "+").replace('_', "/"),
    ));
    for (name, t) in &cases {
        if *t == token {
            continue; // a segment without '-'/'_' has no other-alphabet spelling
        }
        // RFC 6750's b64token allows `=` only at the end and no `%`: a variant outside that
        // syntax is a malformed request (400); inside it, an invalid token (401). Neither
        // reaches the upstream.
        let body = t.trim_end_matches('=');
        if body.contains(['=', '%']) {
            s.bad_request(name, t);
        } else {
            s.refused(name, t);
        }
    }
    // Whitespace inside the token makes the Authorization header malformed: 400.
    let (h, rest) = token.split_at(10);
    s.bad_request("space inside", &format!("{h} {rest}"));
    s.bad_request("tab inside", &format!("{h}\t{rest}"));
    s.bad_request("comma inside", &format!("{h},{rest}"));
    // Non-ASCII bytes inside the header value are not a token68.
    let request = format!(
        "GET /ids/x HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {h}\u{e9}{rest}\r\nConnection: close\r\n\r\n"
    );
    let r = s.gateway.raw(request.as_bytes());
    assert_eq!(r.status, 400, "non-ASCII inside: {}", r.body_text());
    assert_eq!(r.header("www-authenticate"), Some(INVALID_REQUEST));
    assert_eq!(
        s.upstream.count(),
        0,
        "non-ASCII token reached the upstream"
    );
    // A line break inside the header value (obs-fold) never reaches the validator or upstream.
    let request = format!(
        "GET /ids/x HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {h}\r\n {rest}\r\nConnection: close\r\n\r\n"
    );
    let r = s.gateway.raw(request.as_bytes());
    assert_eq!(r.status, 400, "folded token: {}", r.body_text());
    assert_eq!(s.upstream.count(), 0, "folded token reached the upstream");
    s.control();
}

#[test]
fn wrong_segment_counts_jwe_and_json_serialization_are_refused() {
    let s = setup();
    let token = s.ec.sign(&s.claims("admin"));
    let parts: Vec<&str> = token.split('.').collect();
    let (h, p, sig) = (parts[0], parts[1], parts[2]);
    let jwe_header = b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"r1"}"#);
    let enc_in_jws = s.ec.sign_with_header(
        r#"{"alg":"ES256","kid":"e1","enc":"A256GCM"}"#,
        &s.claims("admin").to_string(),
    );
    let zip_in_jws = s.ec.sign_with_header(
        r#"{"alg":"ES256","kid":"e1","zip":"DEF"}"#,
        &s.claims("admin").to_string(),
    );
    let cases = [
        ("1 segment (header)", h.to_owned()),
        ("1 segment (payload)", p.to_owned()),
        ("2 segments", format!("{h}.{p}")),
        ("2 segments (header.sig)", format!("{h}.{sig}")),
        ("empty signature", format!("{h}.{p}.")),
        ("empty payload", format!("{h}..{sig}")),
        ("empty header", format!(".{p}.{sig}")),
        ("4 segments (trailing dot)", format!("{token}.")),
        ("4 segments", format!("{token}.{sig}")),
        ("leading dot", format!(".{token}")),
        ("only dots", "..".to_owned()),
        (
            "JWE 5 segments",
            format!(
                "{jwe_header}.{}.{}.{}.{}",
                b64([1u8; 256]),
                b64([2u8; 12]),
                b64(b"ciphertext"),
                b64([3u8; 16])
            ),
        ),
        (
            "JWE-shaped 5 segments around a real JWS",
            format!("{h}.{p}.{sig}.{p}.{sig}"),
        ),
        ("enc in a 3-segment header", enc_in_jws),
        ("zip in a 3-segment header", zip_in_jws),
    ];
    for (name, t) in &cases {
        s.refused(name, t);
    }
    // JSON serializations contain commas, which a token68 cannot: the request is malformed.
    let general = json!({"payload": p, "signatures": [{"protected": h, "signature": sig}]});
    let flattened = json!({"payload": p, "protected": h, "signature": sig});
    s.bad_request("general JSON serialization", &general.to_string());
    s.bad_request("flattened JSON serialization", &flattened.to_string());
    // Without commas (one member), still not RFC 6750's b64token: malformed.
    s.bad_request("JSON object text", &json!({"payload": p}).to_string());
    s.refused(
        "base64url of the JSON serialization",
        &b64(flattened.to_string()),
    );
    s.control();
}

#[test]
fn huge_tokens_and_deep_nesting_are_refused() {
    let s = setup();
    // 9 KiB of validly signed token: over the 8 KiB default limit.
    let mut c = s.claims("admin");
    c["pad"] = json!("x".repeat(7000));
    let big = s.ec.sign(&c);
    assert!(
        big.len() > 9 * 1024 && big.len() < 10 * 1024,
        "{}",
        big.len()
    );
    s.refused("9 KiB token", &big);
    // 1 MB header: refused by the server before the validator.
    let huge = "a".repeat(1024 * 1024);
    let request = format!(
        "GET /ids/x HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {huge}\r\nConnection: close\r\n\r\n"
    );
    let status = send_lossy(&s.gateway, request.as_bytes());
    assert!(
        matches!(status, Some(431 | 400)),
        "1 MB header: got {status:?}"
    );
    assert_eq!(s.upstream.count(), 0, "1 MB header reached the upstream");
    s.control();
    drop(s);

    // Deep nesting needs a larger token limit so that the parser, not the size check, sees it.
    let s = setup_with(|c| {
        c.server("max_header_bytes", 131_072)
            .section("cache", "max_token_bytes", 65_536)
    });
    let h = header("ES256", "e1");
    let open = "[".repeat(10_000);
    let balanced = format!("{open}{}", "]".repeat(10_000));
    let base = s.claims("admin").to_string();
    let base = &base[..base.len() - 1];
    let cases = [
        (
            "payload claim of 10k unclosed [",
            h.clone(),
            format!(r#"{base},"x":{open}}}"#),
        ),
        (
            "payload claim of 10k balanced []",
            h.clone(),
            format!(r#"{base},"x":{balanced}}}"#),
        ),
        (
            "header member of 10k balanced []",
            format!(r#"{{"alg":"ES256","kid":"e1","x":{balanced}}}"#),
            s.claims("admin").to_string(),
        ),
        ("payload is 10k [", h.clone(), open.clone()),
        (
            "10k nested objects",
            h.clone(),
            format!(
                r#"{base},"x":{}1{}}}"#,
                r#"{"a":"#.repeat(10_000),
                "}".repeat(10_000)
            ),
        ),
    ];
    for (name, hdr, payload) in &cases {
        let token = s.ec.sign_with_header(hdr, payload);
        s.refused(name, &token);
    }
    // Modest nesting is fine (the limit is about depth, not about nesting at all).
    let mut c = s.claims("control");
    c["x"] = json!([[[["a"]]]]);
    let r = s.send(&s.ec.sign(&c));
    assert_eq!(r.status, 200, "shallow nesting: {}", r.body_text());
    s.upstream.clear();
    s.control();
}

/// Writes `request` ignoring write errors (the server may stop reading early) and returns the
/// status of whatever response arrives.
fn send_lossy(gateway: &Gateway, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(gateway.proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
        if data.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&data);
    text.split(' ').nth(1).and_then(|s| s.parse().ok())
}

#[test]
fn control_bytes_in_claims_bound_for_headers_are_refused() {
    let s = setup();
    let mut cases: Vec<(String, Value)> = Vec::new();
    for (name, bad) in [
        ("CRLF", "x\r\nX-Injected: 1"),
        ("LF", "x\nX-Injected: 1"),
        ("CR", "x\rX-Injected: 1"),
        ("NUL", "x\u{0}y"),
        ("TAB", "x\ty"),
        ("DEL", "x\u{7f}y"),
        ("VT", "x\u{b}y"),
        ("trailing CRLF", "x\r\n"),
    ] {
        let mut c = s.claims("alice");
        c["sub"] = json!(bad);
        cases.push((format!("sub {name}"), c));
        let mut c = s.claims("alice");
        c["roles"] = json!(["user", bad]);
        cases.push((format!("roles element {name}"), c));
        let mut c = s.claims("alice");
        c["tenant_id"] = json!(bad);
        cases.push((format!("tenant {name}"), c));
    }
    let mut c = s.claims("alice");
    c["roles"] = json!(["user,admin"]);
    cases.push(("roles element with comma".into(), c));
    for (name, c) in &cases {
        s.refused(name, &s.ec.sign(c));
        s.refused(&format!("{name} (RS256)"), &s.rsa.sign(c));
    }
    s.control();
}

/// The claims of `s.claims(sub)` with `tenant_id` replaced by `tenant`, written as raw JSON text
/// so that numbers serde_json cannot hold exactly reach the gateway as the issuer wrote them.
fn claims_text_with_tenant(s: &Setup, sub: &Value, tenant: &str) -> String {
    let mut c = s.claims("x");
    c["sub"] = sub.clone();
    c["tenant_id"] = json!("@TENANT@");
    c.to_string().replace(r#""@TENANT@""#, tenant)
}

#[test]
fn a_subject_that_is_not_a_string_and_inexact_numbers_are_refused() {
    let s = setup();
    let header = r#"{"alg":"ES256","kid":"e1"}"#;
    for (name, sub) in [
        ("number", json!(12345)),
        ("bool", json!(true)),
        ("array", json!(["alice"])),
        ("object", json!({"id": "alice"})),
        ("null", Value::Null),
    ] {
        let text = claims_text_with_tenant(&s, &sub, r#""t1""#);
        s.refused(
            &format!("sub {name}"),
            &s.ec.sign_with_header(header, &text),
        );
    }
    // By default a number bound for a header is refused, so `12345` and `"12345"` can never be
    // one identity; a 30-digit integer is never rounded into `1.2345678901234568e+29`.
    for tenant in ["12345", "123456789012345678901234567890", "1.5", "1e3"] {
        let text = claims_text_with_tenant(&s, &json!("alice"), tenant);
        s.refused(
            &format!("tenant {tenant}"),
            &s.ec.sign_with_header(header, &text),
        );
    }
    let text = claims_text_with_tenant(&s, &json!("alice"), r#""12345""#);
    let r = s.send(&s.ec.sign_with_header(header, &text));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        s.upstream.last().unwrap().header_values("x-tenant-id"),
        ["12345"]
    );
    s.control();
}

#[test]
fn integers_are_written_exactly_when_the_issuer_opts_in() {
    let s = setup_with(|c| c.edit_issuer("idp", |i| i.claims(json!({"numbers": "integers"}))));
    let header = r#"{"alg":"ES256","kid":"e1"}"#;
    for (tenant, expected) in [
        ("12345", "12345"),
        ("-42", "-42"),
        ("18446744073709551615", "18446744073709551615"),
    ] {
        let text = claims_text_with_tenant(&s, &json!("alice"), tenant);
        let before = s.upstream.count();
        let r = s.send(&s.ec.sign_with_header(header, &text));
        assert_eq!(r.status, 200, "{tenant}: {}", r.body_text());
        assert_eq!(s.upstream.count(), before + 1);
        assert_eq!(
            s.upstream.last().unwrap().header_values("x-tenant-id"),
            [expected]
        );
    }
    let count = s.upstream.count();
    for tenant in [
        "123456789012345678901234567890",
        "18446744073709551616",
        "1.5",
        "1e3",
        "1.0",
    ] {
        let text = claims_text_with_tenant(&s, &json!("alice"), tenant);
        let r = s.send(&s.ec.sign_with_header(header, &text));
        assert_eq!(r.status, 401, "{tenant}: {}", r.body_text());
        assert_eq!(r.header("www-authenticate"), Some(INVALID_TOKEN));
        assert_eq!(s.upstream.count(), count, "{tenant} reached the upstream");
    }
    // A subject stays a string whatever the opt-in says (RFC 7519 §4.1.2).
    let text = claims_text_with_tenant(&s, &json!(7), r#""t1""#);
    assert_eq!(s.send(&s.ec.sign_with_header(header, &text)).status, 401);
    s.control();
}

/// A route at `/org` requiring the claim `org` to be `12345`, a 30-digit integer's digits, or the
/// `f64` rounding of that integer (which must match nothing either).
fn org_route() -> Route {
    Route::new("org", "/org", "echo", Pattern::IdentityHeaders).require(json!({
        "claims": {"org": ["12345", "123456789012345678901234567890", "1.2345678901234568e29"]}
    }))
}

/// `Bearer <token>` to `/org/x` for a token whose `org` claim is the raw JSON text `org`.
fn send_org(s: &Setup, org: &str) -> RawResponse {
    let mut c = s.claims("alice");
    c["org"] = json!("@ORG@");
    let text = c.to_string().replace(r#""@ORG@""#, org);
    let token =
        s.ec.sign_with_header(r#"{"alg":"ES256","kid":"e1"}"#, &text);
    s.gateway
        .get("/org/x", &[("Authorization", &format!("Bearer {token}"))])
}

/// Route `require` on a claim follows the issuer's `numbers` rule, as identity values do: by
/// default `12345` does not match `"12345"` (it did: the number's digits were compared), and an
/// integer that cannot be kept exactly never matches, opt-in or not.
#[test]
fn route_require_on_a_number_follows_the_numbers_rule() {
    const FORBIDDEN: &str = r#"Bearer error="insufficient_scope""#;
    for (numbers, exact_integer) in [(None, 403), (Some("integers"), 200)] {
        let s = setup_with(|c| {
            let c = c.route(org_route());
            match numbers {
                Some(numbers) => c.edit_issuer("idp", |i| i.claims(json!({"numbers": numbers}))),
                None => c,
            }
        });
        for (org, want) in [
            (r#""12345""#, 200),
            ("12345", exact_integer),
            ("123456789012345678901234567890", 403),
            ("12345.0", 403),
            ("1.2345e4", 403),
        ] {
            let before = s.upstream.count();
            let r = send_org(&s, org);
            assert_eq!(r.status, want, "{numbers:?} org {org}: {}", r.body_text());
            if want == 200 {
                assert_eq!(s.upstream.count(), before + 1, "{numbers:?} org {org}");
            } else {
                assert_eq!(r.header("www-authenticate"), Some(FORBIDDEN), "{org}");
                assert_eq!(r.body_text(), r#"{"error":"insufficient_scope"}"#);
                assert_eq!(
                    s.upstream.count(),
                    before,
                    "{numbers:?} org {org} reached it"
                );
            }
        }
        s.control();
    }
}

#[test]
fn a_real_signature_under_another_algorithm_or_key_is_refused() {
    let s = setup();
    let payload = s.claims("admin").to_string();
    let cases = [
        // (header alg, header kid, signing key, signing alg)
        ("RS256", "e1", &s.rsa, "RS256"),
        ("ES256", "r1", &s.ec, "ES256"),
        ("PS256", "r1", &s.rsa, "PS256"),
        ("RS384", "r1", &s.rsa, "RS384"),
        ("RS512", "r1", &s.rsa, "RS512"),
        ("ES384", "e1", &s.ec, "ES256"),
        ("EdDSA", "e1", &s.ec, "ES256"),
    ];
    for (alg, kid, key, signing) in cases {
        let h = header(alg, kid);
        let input = format!("{}.{}", b64(&h), b64(&payload));
        let sig = key.sign_raw(signing, input.as_bytes());
        s.refused(
            &format!("header {alg}/{kid}, signed {signing} by {}", key.kid),
            &format!("{input}.{}", b64(sig)),
        );
    }
    s.control();
}
