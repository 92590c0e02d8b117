//! Opening a verified connection to a partner's server: locate the domain
//! (or its pinned server), then try each server in order until one accepts
//! a mutual-TLS connection whose certificate speaks for the domain. Shared
//! by the front end and the edge.

use std::sync::Arc;

use sip_transport::{ClientTls, FlowId, Transport};

use crate::locate::{LocateError, Locator};

/// Why no connection to a partner could be opened.
#[derive(Debug)]
pub enum ConnectFailure {
    Locate(LocateError),
    /// Every server found failed (the last error), or time ran out.
    Unreachable(String),
}

impl ConnectFailure {
    /// What a request that waited for the connection is answered, and the
    /// counters' name for it: a domain with no SIP server is not found, one
    /// whose server is at an internal address is refused, anything else is
    /// unreachable for now.
    pub fn answer(&self) -> (u16, &'static str, &'static str) {
        match self {
            ConnectFailure::Locate(LocateError::InvalidDomain | LocateError::NotFound) => {
                (404, "Not Found (No SIP Server for the Domain)", "not_found")
            }
            ConnectFailure::Locate(LocateError::PrivateAddress) => (
                403,
                "Forbidden (Partner Server at an Internal Address)",
                "internal_address",
            ),
            ConnectFailure::Locate(LocateError::Dns(_)) | ConnectFailure::Unreachable(_) => (
                503,
                "Service Unavailable (Partner Unreachable)",
                "unreachable",
            ),
        }
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectFailure::Locate(e) => write!(f, "{e}"),
            ConnectFailure::Unreachable(e) => write!(f, "no server answered: {e}"),
        }
    }
}

/// Locates `domain` (at `pinned`, if the policy pins its server) and opens
/// a verified connection on `transport` to the first of its servers that
/// accepts one, presenting `client`'s certificate.
pub async fn connect(
    locator: &Locator,
    client: &Arc<rustls::ClientConfig>,
    transport: &Transport,
    domain: &str,
    pinned: Option<(String, u16)>,
) -> Result<FlowId, ConnectFailure> {
    let located = match pinned {
        Some((host, port)) => locator.locate_pinned(domain, &host, port).await,
        None => locator.locate(domain).await,
    };
    let servers = located.map_err(ConnectFailure::Locate)?;
    let name = rustls_pki_types::ServerName::try_from(domain.to_owned())
        .map_err(|_| ConnectFailure::Locate(LocateError::InvalidDomain))?;
    let mut last = String::from("no server");
    for s in servers {
        let tls = ClientTls {
            config: client.clone(),
            server_name: name.clone(),
        };
        match transport.open(s.addr, Some(tls)).await {
            Ok(flow) => {
                locator.succeeded(s.addr);
                return Ok(flow);
            }
            Err(e) => {
                locator.failed(s.addr);
                tracing::info!(partner = %domain, server = %s.host, addr = %s.addr, error = %e, "a partner's server failed");
                last = format!("{} ({}): {e}", s.host, s.addr);
            }
        }
    }
    Err(ConnectFailure::Unreachable(last))
}
