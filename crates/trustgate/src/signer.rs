//! The gateway's own signer, for pattern 4's internal tokens and for assertions.
//!
//! It is created once per process, not per configuration, so a reload never rotates keys by
//! accident and services never see a kid they were not told about.

use std::net::SocketAddr;
use std::sync::Arc;

use trustgate_core::{InternalSigner, SignerConfig, SystemClock};

use crate::config::{ConfigError, InternalIssuerConfig};

/// The internal issuer URL: configured, or the admin listener's address.
pub(crate) fn issuer_url(config: &InternalIssuerConfig, admin: SocketAddr) -> String {
    config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{admin}"))
}

/// Creates the process's signer.
pub(crate) fn build_signer(
    config: &InternalIssuerConfig,
    admin: SocketAddr,
) -> Result<Arc<InternalSigner>, ConfigError> {
    let signer_config = SignerConfig {
        issuer: issuer_url(config, admin),
        algorithm: config.algorithm,
        rotation_interval: config.rotation_interval,
        max_token_ttl: config.max_ttl,
    };
    let clock = Arc::new(SystemClock);
    // A fleet's shared ring: keys arrive from the store (`fleet::keyring`).
    if config.kek.is_some() {
        return Ok(Arc::new(InternalSigner::shared(signer_config, clock)));
    }
    let signer = if config.key_files.is_empty() {
        InternalSigner::generate(signer_config, clock)
    } else {
        let mut pems = Vec::new();
        for path in &config.key_files {
            pems.push(std::fs::read_to_string(path).map_err(|err| {
                ConfigError(format!(
                    "internal_issuer.key_files: cannot read {}: {err}",
                    path.display()
                ))
            })?);
        }
        InternalSigner::from_pem(signer_config, &pems, clock)
    }
    .map_err(|err| ConfigError(format!("internal_issuer: {err}")))?;
    Ok(Arc::new(signer))
}
