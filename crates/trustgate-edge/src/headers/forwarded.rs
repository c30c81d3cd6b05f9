//! Forwarding headers and URI-override headers.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{FoldedNames, remove_where, trim_ows};

// === forwarding headers ===

/// Headers through which a client (or a proxy) tells the upstream who the
/// client is and how it connected. Only a trusted proxy may send them.
pub(super) const FORWARDING_HEADERS: FoldedNames = FoldedNames::new(&[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    // Honoured by Rack, Rails and others to decide the scheme.
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    "x-forwarded",
    "forwarded",
    "forwarded-for",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    // Envoy trusts these from "internal" peers.
    "x-envoy-external-address",
    "x-envoy-internal",
]);

/// Headers that make some frameworks route or dispatch on something other
/// than the request line (IIS/ASP.NET URL rewrite, Symfony, Laravel,
/// method-override middleware, Envoy). Removed from every request, whoever
/// sent it: the gateway authorized the request line, nothing else.
pub(super) const URI_OVERRIDE_HEADERS: FoldedNames = FoldedNames::new(&[
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-original-uri",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-path",
    "x-envoy-original-path",
]);

/// Peers whose forwarding headers the gateway believes (load balancers,
/// CDNs in front of it). Empty by default: trust nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    pub(super) networks: Vec<IpNet>,
}

// === impl TrustedProxies ===

impl TrustedProxies {
    /// Trusts no peer.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses entries such as `10.0.0.0/8`, `127.0.0.1` or `::1/128`. A bare
    /// address means that single host. IPv4-mapped IPv6 entries
    /// (`::ffff:10.0.0.0/104`) are treated as the IPv4 network.
    ///
    /// # Errors
    ///
    /// Returns a message for the operator on a malformed address or prefix
    /// length, or when the address has bits set beyond the prefix
    /// (`10.0.0.1/8`), which is usually a typo for a narrower range.
    pub fn new(entries: &[String]) -> Result<Self, String> {
        let networks = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| parse_network(entry, index + 1))
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    /// Whether `peer` is in one of the trusted networks. IPv4-mapped IPv6
    /// peers (as seen on dual-stack sockets) match IPv4 entries.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.networks.iter().any(|network| network.contains(&peer))
    }
}

/// One `trusted_proxies` entry as a network, parsed by `ipnet`; this adds the operator's messages
/// and the two rules `ipnet` leaves to its caller: host bits must be clear, and an IPv4-mapped
/// IPv6 network is the IPv4 network it maps.
pub(super) fn parse_network(entry: &str, position: usize) -> Result<IpNet, String> {
    let network = match entry.split_once('/') {
        None => entry.parse::<IpAddr>().map(IpNet::from).ok(),
        Some(_) => entry.parse::<IpNet>().ok(),
    };
    let Some(network) = network else {
        return Err(match entry.split_once('/') {
            Some((address, _)) if address.parse::<IpAddr>().is_ok() => {
                let max_len = if address.contains(':') { 128 } else { 32 };
                format!(
                    "trusted proxy #{position} ({entry:?}) has an invalid prefix length; use a \
                     number from 0 to {max_len} after the '/'"
                )
            }
            _ => format!(
                "trusted proxy #{position} ({entry:?}) is not an IP address or CIDR range; write it \
                 as \"10.0.0.0/8\", \"192.0.2.7\" or \"2001:db8::/32\""
            ),
        });
    };
    let network = match network {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(network, IpNet::V4)
            }
            _ => network,
        },
        IpNet::V4(_) => network,
    };
    if network.trunc() != network {
        let prefix_len = network.prefix_len();
        return Err(format!(
            "trusted proxy #{position} ({entry:?}) has bits set after the /{prefix_len} prefix; \
             write the network as \"{}\", or \"{}\" for the single host",
            network.trunc(),
            network.addr()
        ));
    }
    Ok(network)
}

/// The URI- and method-override header names, folded: for a proxy that removes them by name.
pub fn uri_override_names() -> &'static [&'static str] {
    URI_OVERRIDE_HEADERS.names
}

/// The forwarding header names, folded: for a proxy that sets its own and removes the rest.
pub fn forwarding_header_names() -> &'static [&'static str] {
    FORWARDING_HEADERS.names
}

/// Whether `name` is a URI- or method-override header (see the list in the source). Every
/// forwarded request loses them, from any peer: `Decision::apply` removes them in the same pass
/// as the client identity headers.
#[inline]
pub fn is_uri_override(name: &HeaderName) -> bool {
    is_uri_override_name(name.as_str().as_bytes())
}

/// [`is_uri_override`] on a name's bytes, for a caller that has them already.
#[inline]
pub fn is_uri_override_name(name: &[u8]) -> bool {
    URI_OVERRIDE_HEADERS.contains(name)
}

/// Whether `name` is a forwarding header (see [`forwarding_header_names`]) in any case and
/// `_`/`-` spelling.
#[inline]
pub fn is_forwarding_header_name(name: &[u8]) -> bool {
    FORWARDING_HEADERS.contains(name)
}

// Constants, so that these names are not parsed again on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`, which upstreams may trust
/// because only the gateway sets them.
///
/// From an untrusted `peer`, every client-sent forwarding header
/// (`x-forwarded-*`, `forwarded`, `x-real-ip`, `true-client-ip`, ...) is
/// removed and the gateway's own values are set: `x-forwarded-for: <peer>`,
/// `x-forwarded-proto: <proto>` and, when `host` is given,
/// `x-forwarded-host: <host>`.
///
/// From a trusted proxy, its headers are kept: `<peer>` is appended to its
/// `X-Forwarded-For` (as a single combined field), and its proto and host
/// are kept when present, else set. `_` spellings of forwarding headers are
/// removed even then, since a genuine proxy never sends them.
pub fn set_forwarding_headers(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proto: &str,
    host: Option<&HeaderValue>,
    trusted: &TrustedProxies,
) {
    let peer = peer.to_canonical();
    let mut ipv4_text = [0u8; IPV4_TEXT_MAX];
    let peer_text: Cow<'_, [u8]> = match peer {
        IpAddr::V4(v4) => Cow::Borrowed(write_ipv4(v4, &mut ipv4_text)),
        IpAddr::V6(_) => Cow::Owned(peer.to_string().into_bytes()),
    };
    let peer_text = &*peer_text;

    let trust = trusted.contains(peer);
    let forwarded_for = if trust {
        remove_where(headers, |name| {
            name.as_str().contains('_') && FORWARDING_HEADERS.contains_name(name)
        });
        let mut chain = Vec::new();
        for value in headers.get_all(&X_FORWARDED_FOR) {
            let value = trim_ows(value.as_bytes());
            if !value.is_empty() {
                chain.extend_from_slice(value);
                chain.extend_from_slice(b", ");
            }
        }
        chain.extend_from_slice(peer_text);
        HeaderValue::from_bytes(&chain).ok()
    } else {
        remove_where(headers, |name| FORWARDING_HEADERS.contains_name(name));
        None
    };
    // The peer's own address is always a valid header value; the fallback
    // only matters if a trusted chain somehow is not.
    match forwarded_for.or_else(|| HeaderValue::from_bytes(peer_text).ok()) {
        Some(value) => {
            headers.insert(X_FORWARDED_FOR, value);
        }
        None => {
            headers.remove(X_FORWARDED_FOR);
        }
    }
    // A trusted proxy's proto and host win; ours fill the gaps.
    if !(trust && headers.contains_key(&X_FORWARDED_PROTO)) {
        let value = match proto {
            // The server's two schemes, without a copy.
            "https" => Ok(HeaderValue::from_static("https")),
            "http" => Ok(HeaderValue::from_static("http")),
            other => HeaderValue::from_str(other),
        };
        if let Ok(value) = value {
            headers.insert(X_FORWARDED_PROTO, value);
        }
    }
    if !(trust && headers.contains_key(&X_FORWARDED_HOST))
        && let Some(host) = host
    {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
}

/// The longest dotted-quad text: `255.255.255.255`.
pub(super) const IPV4_TEXT_MAX: usize = 15;

/// Writes `address` in dotted-quad form into `out` and returns the text, as `Display` would.
/// Every request from an IPv4 peer needs it; `Display` goes through the formatting machinery,
/// which cost more instructions than the rest of this module's work on a request.
pub(super) fn write_ipv4(address: Ipv4Addr, out: &mut [u8; IPV4_TEXT_MAX]) -> &[u8] {
    let mut len = 0;
    for (index, octet) in address.octets().into_iter().enumerate() {
        if index > 0 {
            out[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            out[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            out[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        out[len] = b'0' + octet % 10;
        len += 1;
    }
    &out[..len]
}
