//! The proxy listener's connection slots: `server.max_connections` in all, and, when set,
//! `server.max_connections_per_client` from one client.
//!
//! A single client could otherwise take every slot: the idle timeout closes connections that do
//! nothing, but not ones that send a request now and then, which no rule can tell from use.
//! Counting per client bounds what one address (or one IPv6 /64, what a single host is usually
//! given) can hold. Peers in `server.trusted_proxies` are not counted: behind a load balancer or
//! an ingress every connection comes from their few addresses, and the clients behind them are
//! theirs to limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::OwnedSemaphorePermit;

/// One open connection's place under the limits, held from accept (before any TLS handshake)
/// until the connection, and any upgraded tunnel it made, have ended.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    _client: Option<ClientSlot>,
    open: Gauge,
}

impl ConnectionSlot {
    pub(crate) fn new(
        permit: OwnedSemaphorePermit,
        client: Option<ClientSlot>,
        open: Gauge,
    ) -> Self {
        open.inc();
        Self {
            _permit: permit,
            _client: client,
            open,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Who counts as one client: an IPv4 address, or an IPv6 address's /64. IPv4-mapped IPv6
/// addresses (a dual-stack socket's IPv4 peers) are the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6Prefix(u64),
}

impl ClientKey {
    fn of(peer: IpAddr) -> Self {
        match peer.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            // The upper 64 bits: the prefix.
            IpAddr::V6(v6) => Self::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Open connections per client. Taken once per accepted connection, never per request; the lock
/// is held for one map operation.
#[derive(Debug)]
pub(crate) struct PerClient {
    max: u32,
    open: Mutex<HashMap<ClientKey, u32>>,
}

impl PerClient {
    pub(crate) fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `peer`, or `None` when it already has `max` open.
    pub(crate) fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Option<ClientSlot> {
        let key = ClientKey::of(peer);
        // A poisoned lock still holds consistent counts: every update is one statement.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            owner: Arc::clone(self),
            key,
        })
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One connection counted against its client; given back when dropped. A client with no
/// connection left is removed, so the map holds at most `max_connections` entries.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    owner: Arc<PerClient>,
    key: ClientKey,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_gets_at_most_max_slots_and_gets_them_back() {
        let per_client = PerClient::new(2);
        let a = per_client.try_acquire(ip("192.0.2.1")).unwrap();
        let b = per_client.try_acquire(ip("192.0.2.1")).unwrap();
        assert!(per_client.try_acquire(ip("192.0.2.1")).is_none());
        // Another client is counted apart.
        let other = per_client.try_acquire(ip("192.0.2.2")).unwrap();
        drop(a);
        let c = per_client.try_acquire(ip("192.0.2.1")).unwrap();
        assert!(per_client.try_acquire(ip("192.0.2.1")).is_none());
        drop((b, c, other));
        // Clients without connections are forgotten.
        assert_eq!(per_client.clients(), 0);
    }

    /// An IPv6 host usually has a /64 to itself, and can use any address in it: the /64 is one
    /// client. An IPv4 peer seen on a dual-stack socket is its IPv4 address.
    #[test]
    fn an_ipv6_slash_64_is_one_client_and_mapped_ipv4_is_ipv4() {
        let per_client = PerClient::new(1);
        let _first = per_client.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(per_client.try_acquire(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(per_client.try_acquire(ip("2001:db8:1:3::1")).is_some());
        let _v4 = per_client.try_acquire(ip("198.51.100.7")).unwrap();
        assert!(per_client.try_acquire(ip("::ffff:198.51.100.7")).is_none());
    }

    #[test]
    fn the_open_gauge_counts_slots_until_they_are_dropped() {
        let open = Gauge::default();
        let per_client = PerClient::new(5);
        let semaphore = Arc::new(tokio::sync::Semaphore::new(3));
        let slots: Vec<_> = (0..3)
            .map(|_| {
                ConnectionSlot::new(
                    Arc::clone(&semaphore).try_acquire_owned().unwrap(),
                    per_client.try_acquire(ip("192.0.2.1")),
                    open.clone(),
                )
            })
            .collect();
        assert_eq!(open.get(), 3);
        assert_eq!(semaphore.available_permits(), 0);
        drop(slots);
        assert_eq!(open.get(), 0);
        assert_eq!(semaphore.available_permits(), 3);
        assert_eq!(per_client.clients(), 0);
    }
}
