//! Where the database is and how to reach it: a PostgreSQL connection URL
//! (or libpq's `key=value` form), with TLS that verifies the server's
//! certificate and name by default.
//!
//! tokio-postgres itself knows `sslmode` only as disable, prefer and
//! require, and require does not check the certificate. Parapet reads
//! `sslmode` and `sslrootcert` itself: `verify-full` (the default for a
//! TCP host) checks the chain against `sslrootcert` and the host name;
//! `disable` is plain text, accepted only when written out (the posture
//! check reports it); `prefer`, `require` and `verify-ca` are refused,
//! because each would accept a server nobody verified. A Unix-domain
//! socket (`host=/run/postgresql`) needs no TLS: the kernel says who is at
//! the other end.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use store::{Result, StoreError};

/// How the connection to the database is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TLS, the server's certificate checked against these roots and its name.
    Verified { roots: PathBuf },
    /// A Unix-domain socket on this machine.
    Local,
    /// Plain TCP (`sslmode=disable` written in the URL).
    Plain,
}

/// A parsed connection string.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub transport: Transport,
}

fn setup(m: impl std::fmt::Display) -> StoreError {
    StoreError::Setup(m.to_string())
}

/// Takes `sslmode` and `sslrootcert` out of the connection string (in
/// either form) and returns the rest with what they said.
fn split_tls(url: &str) -> (String, Option<String>, Option<String>) {
    let mut mode = None;
    let mut root = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None, None);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| match kv.split_once('=') {
                Some(("sslmode", v)) => {
                    mode = Some(v.to_owned());
                    false
                }
                Some(("sslrootcert", v)) => {
                    root = Some(v.to_owned());
                    false
                }
                _ => true,
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, mode, root);
    }
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|kv| match kv.split_once('=') {
            Some(("sslmode", v)) => {
                mode = Some(v.to_owned());
                false
            }
            Some(("sslrootcert", v)) => {
                root = Some(v.to_owned());
                false
            }
            _ => true,
        })
        .collect();
    (kept.join(" "), mode, root)
}

/// Parses the connection string; the error says what to change.
pub fn parse(url: &str) -> Result<Target> {
    let (rest, mode, root) = split_tls(url);
    let mut config = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| setup(format!("the database URL is not valid: {e}")))?;
    if config.get_hosts().is_empty() {
        return Err(setup(
            "the database URL names no host (postgres://user@host/database)",
        ));
    }
    let local = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    let transport = match (mode.as_deref(), local) {
        (Some("disable"), false) => Transport::Plain,
        (None | Some("disable") | Some("verify-full"), true) => Transport::Local,
        (None | Some("verify-full"), false) => Transport::Verified {
            roots: root.map(PathBuf::from).ok_or_else(|| {
                setup("the database URL needs sslrootcert=/path/to/ca.pem (the CA that issued the database server's certificate) for sslmode=verify-full, the default; or write sslmode=disable to connect without TLS (reported by the security check)")
            })?,
        },
        (Some(other), _) => {
            return Err(setup(format!(
                "sslmode={other} is not supported: use verify-full (with sslrootcert) or, knowingly, disable"
            )))
        }
    };
    config.ssl_mode(match transport {
        Transport::Verified { .. } => tokio_postgres::config::SslMode::Require,
        _ => tokio_postgres::config::SslMode::Disable,
    });
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(5));
    }
    // A database server that vanishes without a word (its machine gone,
    // a network cut) is noticed within seconds, not after TCP's default
    // quarter of an hour: unanswered data fails after 10 s, an idle
    // connection is probed after 10 s.
    config
        .tcp_user_timeout(std::time::Duration::from_secs(10))
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(10))
        .keepalives_interval(std::time::Duration::from_secs(2))
        .keepalives_retries(3);
    // A transaction left open by a process that stopped (SIGSTOP, a hung
    // machine) would hold its locks for ever, among them the shared lock
    // every write of a node holds on its epoch: the node taking over
    // waits for it (`nodes`). PostgreSQL ends such a session after 5 s;
    // none of Parapet's transactions waits on anything but the database.
    let options = match config.get_options() {
        Some(o) if !o.trim().is_empty() => {
            format!("{o} -c idle_in_transaction_session_timeout=5000")
        }
        _ => "-c idle_in_transaction_session_timeout=5000".to_owned(),
    };
    config.options(&options);
    if config.get_application_name().is_none() {
        config.application_name("parapet");
    }
    Ok(Target { config, transport })
}

/// The address of this machine that its route to the database server
/// leaves from: the address other machines sharing the database most
/// likely reach it at (a pool's nodes dial each other there when their
/// listeners are on a wildcard address). The route is the kernel's, asked
/// by connecting a UDP socket, which sends nothing. `None` over a
/// Unix-domain socket, or when no host resolves or has a route.
pub async fn local_address_towards(target: &Target) -> Option<std::net::IpAddr> {
    let port = target.config.get_ports().first().copied().unwrap_or(5432);
    let addrs = target.config.get_hostaddrs();
    for (i, host) in target.config.get_hosts().iter().enumerate() {
        let tokio_postgres::config::Host::Tcp(name) = host else {
            continue;
        };
        // An address given beside the name (`hostaddr`) is the one dialled.
        let resolved: Vec<std::net::SocketAddr> = match addrs.get(i) {
            Some(ip) => vec![std::net::SocketAddr::new(*ip, port)],
            None => match tokio::net::lookup_host((name.as_str(), port)).await {
                Ok(found) => found.collect(),
                Err(_) => continue,
            },
        };
        for to in resolved {
            let any: std::net::IpAddr = if to.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            let Ok(socket) = std::net::UdpSocket::bind((any, 0)) else {
                continue;
            };
            if socket.connect(to).is_ok() {
                if let Ok(local) = socket.local_addr() {
                    return Some(local.ip());
                }
            }
        }
    }
    None
}

/// The TLS connector for a verified transport (rustls, the roots from
/// `sslrootcert` only; channel binding for SCRAM-SHA-256-PLUS comes with
/// it).
pub fn tls(roots: &std::path::Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_pki_types::pem::PemObject;
    let pem =
        std::fs::read(roots).map_err(|e| setup(format!("sslrootcert {}: {e}", roots.display())))?;
    let mut store = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| setup(format!("sslrootcert {}: {e}", roots.display())))?;
        store
            .add(cert)
            .map_err(|e| setup(format!("sslrootcert {}: {e}", roots.display())))?;
    }
    if store.is_empty() {
        return Err(setup(format!(
            "sslrootcert {} holds no certificate",
            roots.display()
        )));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(setup)?
    .with_root_certificates(store)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_local_address_is_the_one_the_route_to_the_database_leaves_from() {
        let at = |url: &str| parse(url).unwrap();
        // (Linux's loopback route leaves from 127.0.0.1 for all of 127/8.)
        let local = local_address_towards(&at("postgres://p@127.0.0.2/p?sslmode=disable")).await;
        assert_eq!(local, Some("127.0.0.1".parse().unwrap()));
        let v6 = local_address_towards(&at("postgres://p@[::1]/p?sslmode=disable")).await;
        assert_eq!(v6, Some("::1".parse().unwrap()));
        // hostaddr is the address dialled, whatever the name (this one
        // resolves to nothing).
        let named = at("host=db.invalid hostaddr=127.0.0.3 dbname=p sslmode=disable");
        assert_eq!(
            local_address_towards(&named).await,
            Some("127.0.0.1".parse().unwrap())
        );
        let unnamed = at("host=db.invalid dbname=p sslmode=disable");
        assert_eq!(local_address_towards(&unnamed).await, None);
        // A Unix-domain socket says nothing about the network.
        let socket = at("host=/run/postgresql dbname=p");
        assert_eq!(local_address_towards(&socket).await, None);
    }

    #[test]
    fn tls_is_verified_by_default_and_plain_only_when_written() {
        let e = parse("postgres://parapet@db.example.com/parapet").unwrap_err();
        assert!(e.to_string().contains("sslrootcert"), "{e}");
        let t = parse(
            "postgres://parapet@db.example.com/parapet?sslrootcert=/ca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            t.transport,
            Transport::Verified {
                roots: "/ca.pem".into()
            }
        );
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        let t = parse("postgres://parapet@db.example.com/parapet?sslmode=disable").unwrap();
        assert_eq!(t.transport, Transport::Plain);
        for weak in ["require", "prefer", "verify-ca", "allow"] {
            let e = parse(&format!("postgres://p@db.example.com/p?sslmode={weak}")).unwrap_err();
            assert!(e.to_string().contains("not supported"), "{weak}: {e}");
        }
    }

    #[test]
    fn a_unix_socket_needs_no_tls_and_the_key_value_form_works() {
        let t = parse("host=/run/postgresql dbname=parapet user=parapet").unwrap();
        assert_eq!(t.transport, Transport::Local);
        let t =
            parse("host=db.example.com dbname=p sslmode=verify-full sslrootcert=/r.pem").unwrap();
        assert_eq!(
            t.transport,
            Transport::Verified {
                roots: "/r.pem".into()
            }
        );
        assert!(parse("postgres://").is_err());
        assert!(parse("postgres://p@h/d?sslmode=verify-full&sslrootcert=/x").is_ok());
    }
}
