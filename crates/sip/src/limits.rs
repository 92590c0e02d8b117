//! Explicit limits the parser enforces on untrusted input.

/// Bounds on one message. Every field is a hard limit: input beyond it is an error,
/// never a reallocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole message (start line, headers and body), in bytes. RFC 3261 leaves it
    /// open; 64 KiB covers every real message including large SDP and PIDF bodies.
    pub max_message_size: usize,
    /// Number of header lines (a folded line counts once).
    pub max_headers: usize,
    /// Length of one header line including its folds, in bytes.
    pub max_header_line: usize,
    /// Length of the Request-URI, in bytes (URIs inside headers are bounded by
    /// `max_header_line`).
    pub max_uri_len: usize,
    /// Number of Via entries across all Via header lines.
    pub max_vias: usize,
}

impl Limits {
    /// The defaults: 64 KiB messages, 128 headers, 8 KiB header lines, 4 KiB URIs,
    /// 64 Vias (RFC 4475 §3.1.1.7 has 34).
    pub const DEFAULT: Limits = Limits {
        max_message_size: 64 * 1024,
        max_headers: 128,
        max_header_line: 8 * 1024,
        max_uri_len: 4 * 1024,
        max_vias: 64,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
