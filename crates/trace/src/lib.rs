//! SIP traces operators can search: every message a node receives or sends
//! appended to a ring of segment files on disk, bounded in bytes and age,
//! and read back by Call-ID or by user, in order; optionally each message
//! also sent to a HEP v3 collector (Homer), over UDP or TLS, as Kamailio
//! and OpenSIPS send them.
//!
//! Credentials never reach the disk: `Authorization` and
//! `Proxy-Authorization` values are cut to their scheme and user name
//! before a message is written (an MD5 digest answer can be attacked
//! offline). Nor does what users write: a MESSAGE's body is replaced by
//! its size (the IM archive alone keeps it, sealed, as the policy says).
//! Other bodies are kept (SDP is what calls are debugged by) and are
//! redacted when read for a caller not allowed to see them.
//!
//! All file I/O here is blocking: the writer runs on a thread of its own;
//! call [`search`] from `spawn_blocking`.

#![forbid(unsafe_code)]

pub mod hep;
mod hep_tls;
mod record;
pub mod remote;
mod ring;

pub use hep_tls::TlsCollector;
pub use record::{parse_segment, redact_credentials, redact_for_disk, Record, MAX_MESSAGE};
pub use ring::{search, search_nodes, start, start_pooled, Caps, Counters, Filter, Hep, Writer};
