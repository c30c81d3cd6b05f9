//! A builder for the gateway's config file. Tests say what they need (issuers, upstreams, routes
//! and the top-level sections) and the builder writes the TOML, in the order it was given, one
//! `key = value` line per setting, as an operator would. Values are `serde_json::Value`s, so a
//! nested setting is written with `json!` and becomes an inline table.
//!
//! Every table starts from its required fields; everything else is a typed shortcut or `set`,
//! which takes any field by its name in the file (a misspelt name is an unknown-field error from
//! the gateway, since its config denies unknown fields).

use std::fmt::{self, Display, Write as _};
use std::path::Path;

use serde_json::Value;

/// The `listen` address the harness gives both listeners: any free port on loopback.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// An ordered TOML table of `key = value` lines.
#[derive(Debug, Clone, Default)]
struct Table(Vec<(String, Value)>);

impl Table {
    /// Sets `key`, replacing an earlier value in place so the line keeps its position.
    fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    fn unset(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    fn write(&self, out: &mut String) {
        for (key, value) in &self.0 {
            let _ = writeln!(out, "{} = {}", toml_key(key), toml_value(value));
        }
    }
}

/// A bare key when TOML allows one, else a quoted key.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        Value::from(key).to_string()
    }
}

/// A TOML value: JSON's string escapes are TOML basic-string escapes, arrays are arrays, and
/// objects become inline tables.
fn toml_value(value: &Value) -> String {
    match value {
        Value::Null => panic!("TOML has no null"),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => value.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), toml_value(v)))
                .collect();
            format!("{{ {} }}", members.join(", "))
        }
    }
}

/// A whole config file: `[server]` and `[admin]` (both listening on [`ANY_PORT`] unless a test
/// says otherwise), then the top-level sections, issuers, upstreams and routes in the order given.
#[derive(Debug, Clone)]
pub struct Config {
    server: Table,
    admin: Table,
    sections: Vec<(String, Table)>,
    issuers: Vec<Issuer>,
    upstreams: Vec<Upstream>,
    routes: Vec<Route>,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    pub fn new() -> Self {
        let mut server = Table::default();
        server.set("listen", ANY_PORT.into());
        let mut admin = Table::default();
        admin.set("listen", ANY_PORT.into());
        Self {
            server,
            admin,
            sections: Vec::new(),
            issuers: Vec::new(),
            upstreams: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// One `[server]` setting, such as `max_connections` or `tls`.
    pub fn server(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.server.set(key, value.into());
        self
    }

    /// One `[admin]` setting.
    pub fn admin(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.admin.set(key, value.into());
        self
    }

    /// One setting of a top-level section: `sanitize`, `log`, `cache`, `jwks_fetch` or
    /// `internal_issuer`.
    pub fn section(mut self, section: &str, key: &str, value: impl Into<Value>) -> Self {
        self.section_table(section).set(key, value.into());
        self
    }

    /// A top-level section with no settings of its own (`[internal_issuer]` with its defaults).
    pub fn empty_section(mut self, section: &str) -> Self {
        self.section_table(section);
        self
    }

    fn section_table(&mut self, section: &str) -> &mut Table {
        let index = match self.sections.iter().position(|(name, _)| name == section) {
            Some(index) => index,
            None => {
                self.sections.push((section.to_owned(), Table::default()));
                self.sections.len() - 1
            }
        };
        &mut self.sections[index].1
    }

    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    pub fn upstream(mut self, upstream: Upstream) -> Self {
        self.upstreams.push(upstream);
        self
    }

    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Changes the issuer with id `id` (panics if there is none).
    pub fn edit_issuer(mut self, id: &str, edit: impl FnOnce(Issuer) -> Issuer) -> Self {
        let index = find(self.issuers.iter().map(|i| &i.0), "id", id);
        let issuer = self.issuers.remove(index);
        self.issuers.insert(index, edit(issuer));
        self
    }

    /// Changes the upstream with id `id` (panics if there is none).
    pub fn edit_upstream(mut self, id: &str, edit: impl FnOnce(Upstream) -> Upstream) -> Self {
        let index = find(self.upstreams.iter().map(|u| &u.0), "id", id);
        let upstream = self.upstreams.remove(index);
        self.upstreams.insert(index, edit(upstream));
        self
    }

    /// Changes the route named `name` (panics if there is none).
    pub fn edit_route(mut self, name: &str, edit: impl FnOnce(Route) -> Route) -> Self {
        let index = find(self.routes.iter().map(|r| &r.0), "name", name);
        let route = self.routes.remove(index);
        self.routes.insert(index, edit(route));
        self
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        self.to_string()
    }
}

fn find<'a>(tables: impl Iterator<Item = &'a Table>, key: &str, want: &str) -> usize {
    let mut tables = tables;
    tables
        .position(|t| t.0.iter().any(|(k, v)| k == key && v == want))
        .unwrap_or_else(|| panic!("no table with {key} = {want:?}"))
}

impl Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        out.push_str("[server]\n");
        self.server.write(&mut out);
        out.push_str("\n[admin]\n");
        self.admin.write(&mut out);
        for (name, table) in &self.sections {
            let _ = writeln!(out, "\n[{name}]");
            table.write(&mut out);
        }
        for (header, tables) in [
            (
                "issuer",
                self.issuers.iter().map(|i| &i.0).collect::<Vec<_>>(),
            ),
            ("upstream", self.upstreams.iter().map(|u| &u.0).collect()),
            ("route", self.routes.iter().map(|r| &r.0).collect()),
        ] {
            for table in tables {
                let _ = writeln!(out, "\n[[{header}]]");
                table.write(&mut out);
            }
        }
        f.write_str(&out)
    }
}

/// One `[[issuer]]`.
#[derive(Debug, Clone)]
pub struct Issuer(Table);

impl Issuer {
    /// An issuer with only its id and `issuer` URL; add a key source.
    pub fn new(id: &str, iss: &str) -> Self {
        let mut table = Table::default();
        table.set("id", id.into());
        table.set("issuer", iss.into());
        Self(table)
    }

    /// Keys found by OIDC discovery at `iss`.
    pub fn discovery(id: &str, iss: &str) -> Self {
        Self::new(id, iss).set("discovery", true)
    }

    /// Keys from a `jwks_url`.
    pub fn jwks_url(id: &str, iss: &str, url: &str) -> Self {
        Self::new(id, iss).set("jwks_url", url)
    }

    /// Keys from a local JWKS file.
    pub fn jwks_file(id: &str, iss: &str, path: &Path) -> Self {
        Self::new(id, iss).set("jwks_file", path_value(path))
    }

    /// Static PEM keys: (file, alg, kid).
    pub fn pem_keys(id: &str, iss: &str, keys: &[(&Path, &str, Option<&str>)]) -> Self {
        let keys: Vec<Value> = keys
            .iter()
            .map(|(file, alg, kid)| {
                let mut key = serde_json::Map::new();
                key.insert("file".into(), path_value(file));
                key.insert("alg".into(), (*alg).into());
                if let Some(kid) = kid {
                    key.insert("kid".into(), (*kid).into());
                }
                Value::Object(key)
            })
            .collect();
        Self::new(id, iss).set("pem_keys", keys)
    }

    pub fn audiences(self, audiences: &[&str]) -> Self {
        self.set("audiences", audiences)
    }

    pub fn algorithms(self, algorithms: &[&str]) -> Self {
        self.set("algorithms", algorithms)
    }

    /// `refresh = { … }`: the JWKS refresh knobs, as a JSON object.
    pub fn refresh(self, refresh: Value) -> Self {
        self.set("refresh", refresh)
    }

    /// `claims = { … }`: the claim mapping, as a JSON object.
    pub fn claims(self, claims: Value) -> Self {
        self.set("claims", claims)
    }

    /// Any other field (`leeway`, `required_typ`, `danger_…`).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.set(key, value.into());
        self
    }

    /// Removes a field, e.g. the key source before setting another.
    pub fn unset(mut self, key: &str) -> Self {
        self.0.unset(key);
        self
    }
}

/// One `[[upstream]]`.
#[derive(Debug, Clone)]
pub struct Upstream(Table);

impl Upstream {
    pub fn new(id: &str, url: &str) -> Self {
        let mut table = Table::default();
        table.set("id", id.into());
        table.set("url", url.into());
        Self(table)
    }

    /// Any other field (`connect_timeout`, `ca_file`, `pool_idle_timeout`, …).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.set(key, value.into());
        self
    }

    /// A field holding a path.
    pub fn path(self, key: &str, path: &Path) -> Self {
        self.set(key, path_value(path))
    }
}

/// A route's trust pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Public,
    ServiceValidates,
    ForwardToken,
    IdentityHeaders,
    InternalToken,
}

impl Pattern {
    /// The name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::ServiceValidates => "service-validates",
            Self::ForwardToken => "forward-token",
            Self::IdentityHeaders => "identity-headers",
            Self::InternalToken => "internal-token",
        }
    }
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route(Table);

impl Route {
    pub fn new(name: &str, prefix: &str, upstream: &str, pattern: Pattern) -> Self {
        let mut table = Table::default();
        table.set("name", name.into());
        table.set("prefix", prefix.into());
        table.set("upstream", upstream.into());
        table.set("pattern", pattern.name().into());
        Self(table)
    }

    pub fn host(self, host: &str) -> Self {
        self.set("host", host)
    }

    /// The issuers this route accepts (by id).
    pub fn issuers(self, ids: &[&str]) -> Self {
        self.set("issuers", ids)
    }

    pub fn allow_anonymous(self) -> Self {
        self.set("allow_anonymous", true)
    }

    pub fn strip_prefix(self) -> Self {
        self.set("strip_prefix", true)
    }

    pub fn rewrite_prefix(self, to: &str) -> Self {
        self.set("rewrite_prefix", to)
    }

    pub fn token_cookie(self, name: &str) -> Self {
        self.set("token_cookie", name)
    }

    /// `require = { … }`: scopes, roles, claims and mode, as a JSON object.
    pub fn require(self, require: Value) -> Self {
        self.set("require", require)
    }

    /// `headers = [{ name, from }, …]`: identity headers and the claims they come from.
    pub fn headers(self, headers: &[(&str, &str)]) -> Self {
        let headers: Vec<Value> = headers
            .iter()
            .map(|(name, from)| serde_json::json!({"name": name, "from": from}))
            .collect();
        self.set("headers", headers)
    }

    pub fn service(self, service: &str) -> Self {
        self.set("service", service)
    }

    pub fn internal_ttl(self, ttl: &str) -> Self {
        self.set("internal_ttl", ttl)
    }

    pub fn internal_claims(self, claims: &[&str]) -> Self {
        self.set("internal_claims", claims)
    }

    pub fn assertion(self) -> Self {
        self.set("assertion", true)
    }

    /// Any other field, by its name in the file.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.set(key, value.into());
        self
    }
}

fn path_value(path: &Path) -> Value {
    path.to_str()
        .unwrap_or_else(|| panic!("not UTF-8: {}", path.display()))
        .into()
}

#[test]
fn writes_every_kind_of_setting_as_toml_in_the_order_given() {
    let config = Config::new()
        .server("max_connections", 2)
        .server(
            "tls",
            serde_json::json!({"cert": "leaf.pem", "key": "leaf.key"}),
        )
        .admin("listen", "127.0.0.1:9901")
        .section("internal_issuer", "issuer", "https://internal.example")
        .empty_section("sanitize")
        .issuer(
            Issuer::discovery("idp", "http://127.0.0.1:1")
                .audiences(&["api"])
                .refresh(serde_json::json!({"retry_base": "100ms"})),
        )
        .issuer(Issuer::jwks_url("url", "https://a.example", "https://a.example/jwks").unset("x"))
        .issuer(Issuer::pem_keys(
            "pem",
            "https://b.example",
            &[(Path::new("/k/b.pem"), "ES256", Some("b1"))],
        ))
        .upstream(Upstream::new("echo", "http://127.0.0.1:2").set("preserve_host", false))
        .route(
            Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders)
                .headers(&[("X-User-Id", "subject")])
                .set("a.b", "quoted \"key\"\n"),
        )
        .edit_route("ids", |r| r.allow_anonymous())
        .edit_issuer("idp", |i| i.set("discovery", false).set("discovery", true));
    assert_eq!(
        config.to_toml(),
        r#"[server]
listen = "127.0.0.1:0"
max_connections = 2
tls = { cert = "leaf.pem", key = "leaf.key" }

[admin]
listen = "127.0.0.1:9901"

[internal_issuer]
issuer = "https://internal.example"

[sanitize]

[[issuer]]
id = "idp"
issuer = "http://127.0.0.1:1"
discovery = true
audiences = ["api"]
refresh = { retry_base = "100ms" }

[[issuer]]
id = "url"
issuer = "https://a.example"
jwks_url = "https://a.example/jwks"

[[issuer]]
id = "pem"
issuer = "https://b.example"
pem_keys = [{ alg = "ES256", file = "/k/b.pem", kid = "b1" }]

[[upstream]]
id = "echo"
url = "http://127.0.0.1:2"
preserve_host = false

[[route]]
name = "ids"
prefix = "/ids"
upstream = "echo"
pattern = "identity-headers"
headers = [{ from = "subject", name = "X-User-Id" }]
"a.b" = "quoted \"key\"\n"
allow_anonymous = true
"#
    );
}
