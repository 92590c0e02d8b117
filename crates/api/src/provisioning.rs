//! `GET /provisioning` on the user listener: Linphone's remote
//! provisioning document for this server, the `lpconfig` XML its apps
//! fetch from a URL or a QR code and liblinphone from `[misc] config-uri`.
//! It carries the account defaults (this server's TLS listener by the name
//! the client reached it by, the realm, registration and presence on),
//! SRTP for calls' media, and the file-transfer server's URL, which is how a Linphone learns where to
//! upload files. Nothing in it is secret (DNS publishes as much, `parapet
//! admin dns-records`), so it asks for no sign-in: the user enters their
//! name and password in the app. The self-service page shows its URL as a
//! QR code (`/provisioning/qr.svg`), which the apps scan.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use config::Scheme;

use crate::Ctx;

/// What the document says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The host clients reach the server by.
    pub(crate) host: String,
    /// The SIP-over-TLS listener's port (`None`: no TLS listener).
    pub(crate) sip_tls_port: Option<u16>,
    pub(crate) realm: String,
    /// The file-transfer server (`None`: off).
    pub(crate) file_server: Option<String>,
}

/// One `<entry>`: applied over what the client has (`overwrite`).
fn entry(name: &str, value: &str) -> String {
    format!(
        "    <entry name=\"{name}\" overwrite=\"true\">{}</entry>\n",
        xml::escape(value)
    )
}

/// The document for `s`.
pub(crate) fn linphone(s: &Settings) -> String {
    let mut doc = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <config xmlns=\"http://www.linphone.org/xsds/lpconfig.xsd\">\n",
    );
    if let Some(port) = s.sip_tls_port {
        let proxy = format!("<sip:{}:{port};transport=tls>", s.host);
        let route = format!("<sip:{}:{port};transport=tls;lr>", s.host);
        doc.push_str("  <section name=\"proxy_default_values\">\n");
        doc.push_str(&entry("reg_proxy", &proxy));
        doc.push_str(&entry("reg_route", &route));
        doc.push_str(&entry("realm", &s.realm));
        doc.push_str(&entry("reg_sendregister", "1"));
        doc.push_str(&entry("publish", "1"));
        doc.push_str("  </section>\n");
    }
    // Calls' media encrypted (SDES over the TLS signalling): the server
    // refuses unencrypted media unless its media policy allows it.
    doc.push_str("  <section name=\"sip\">\n");
    doc.push_str(&entry("media_encryption", "srtp"));
    doc.push_str("  </section>\n");
    if let Some(url) = &s.file_server {
        doc.push_str("  <section name=\"misc\">\n");
        doc.push_str(&entry("file_transfer_server_url", url));
        doc.push_str("  </section>\n");
    }
    doc.push_str("</config>\n");
    doc
}

/// The host part of an authority (`name:port`, `[v6]:port`, `name`).
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// The document's URL, as the client reached this server.
fn url<S>(ctx: &Ctx<S>, headers: &HeaderMap) -> String {
    format!("https://{}{PATH}", crate::authority(ctx, headers))
}

/// Where the document is served.
pub(crate) const PATH: &str = "/provisioning";

/// A QR code of `url`, as Linphone's apps scan one to fetch their
/// configuration.
pub(crate) fn qr_svg(url: &str) -> Option<String> {
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

/// `GET /provisioning/qr.svg`: the document's URL as a QR code, for the
/// self-service page (public, like the document).
pub(crate) async fn qr<S>(State(ctx): State<Ctx<S>>, headers: HeaderMap) -> Response {
    match qr_svg(&url(&ctx, &headers)) {
        Some(svg) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            svg,
        )
            .into_response(),
        None => crate::internal("the QR code could not be made"),
    }
}

pub(crate) async fn document<S>(State(ctx): State<Ctx<S>>, headers: HeaderMap) -> Response {
    let authority = crate::authority(&ctx, &headers);
    let settings = Settings {
        host: host_of(&authority).to_owned(),
        sip_tls_port: ctx
            .cfg
            .listen
            .iter()
            .find(|l| l.scheme == Scheme::Tls)
            .map(|l| l.addr.port()),
        realm: ctx.realm.clone(),
        file_server: ctx
            .files
            .is_some()
            .then(|| format!("https://{authority}{}", content::ft_http::FILES_PATH)),
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        linphone(&settings),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_the_listener_realm_and_file_server_escaped() {
        let doc = linphone(&Settings {
            host: "sip.example.com".into(),
            sip_tls_port: Some(5061),
            realm: "example.com".into(),
            file_server: Some("https://sip.example.com:4443/files?a=1&b=2".into()),
        });
        assert!(doc.contains(
            "<entry name=\"reg_proxy\" overwrite=\"true\">&lt;sip:sip.example.com:5061;transport=tls&gt;</entry>"
        ));
        assert!(doc.contains(
            "<entry name=\"reg_route\" overwrite=\"true\">&lt;sip:sip.example.com:5061;transport=tls;lr&gt;</entry>"
        ));
        assert!(doc.contains("<entry name=\"realm\" overwrite=\"true\">example.com</entry>"));
        assert!(doc.contains(
            "<entry name=\"file_transfer_server_url\" overwrite=\"true\">https://sip.example.com:4443/files?a=1&amp;b=2</entry>"
        ));
        assert!(xml::parse(doc.as_bytes()).is_ok(), "{doc}");
    }

    #[test]
    fn without_a_tls_listener_or_file_transfer_their_sections_are_left_out() {
        let doc = linphone(&Settings {
            host: "h".into(),
            sip_tls_port: None,
            realm: "r".into(),
            file_server: None,
        });
        assert!(!doc.contains("proxy_default_values"));
        assert!(!doc.contains("misc"));
        assert!(doc.contains("<entry name=\"media_encryption\" overwrite=\"true\">srtp</entry>"));
        assert!(xml::parse(doc.as_bytes()).is_ok(), "{doc}");
    }

    #[test]
    fn the_qr_code_is_an_svg_of_the_url() {
        let svg = qr_svg("https://sip.example.com:4443/provisioning").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert_ne!(
            svg,
            qr_svg("https://sip.example.com:4443/provisionin").unwrap()
        );
    }

    #[test]
    fn the_host_is_taken_from_the_authority() {
        assert_eq!(host_of("sip.example.com:4443"), "sip.example.com");
        assert_eq!(host_of("[2001:db8::1]:4443"), "[2001:db8::1]");
        assert_eq!(host_of("example.com"), "example.com");
    }
}
