//! SIP request methods. Methods are case-sensitive tokens (RFC 3261 §7.1).

use crate::scan::is_token;

/// A request method. Unknown methods are kept as their token text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method<'a> {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Message,
    Subscribe,
    Notify,
    Publish,
    Info,
    Prack,
    Update,
    Refer,
    /// Any other token, verbatim.
    Extension(&'a str),
}

impl<'a> Method<'a> {
    /// Parses a method token; `None` if it is not a non-empty ASCII token.
    pub fn parse(s: &'a str) -> Option<Method<'a>> {
        if s.is_empty() || !s.bytes().all(is_token) {
            return None;
        }
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "MESSAGE" => Method::Message,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "REFER" => Method::Refer,
            other => Method::Extension(other),
        })
    }

    /// The method's token.
    pub fn as_str(&self) -> &'a str {
        match self.known_name() {
            Some(n) => n,
            None => match self {
                Method::Extension(s) => s,
                _ => "",
            },
        }
    }

    /// The name of a method this stack knows; `None` for extensions. Useful
    /// where a bounded set of labels is needed (metrics).
    pub fn known_name(&self) -> Option<&'static str> {
        Some(match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Extension(_) => return None,
        })
    }
}

impl std::fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_case_sensitive_tokens() {
        assert_eq!(Method::parse("INVITE"), Some(Method::Invite));
        assert_eq!(Method::parse("invite"), Some(Method::Extension("invite")));
        assert_eq!(
            Method::parse("RE%47IST%45R"),
            Some(Method::Extension("RE%47IST%45R"))
        );
        assert_eq!(Method::parse(""), None);
        assert_eq!(Method::parse("IN VITE"), None);
        assert_eq!(Method::parse("INVIT\u{c9}"), None);
    }
}
