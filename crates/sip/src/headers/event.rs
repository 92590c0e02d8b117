//! Event framework headers (RFC 6665): Event, Allow-Events, Subscription-State.

use super::{whole, ListHeader, TypedHeader};
use crate::name::HeaderKind;
use crate::params::{parse_params, ParamSyntax, Params};
use crate::scan::{Cursor, Invalid, Scan};

/// `event-type` = `event-package *("." event-template)`: a token.
fn event_type<'a>(c: &mut Cursor<'a>) -> Scan<&'a str> {
    let t = c.token()?;
    if t.starts_with('.') || t.ends_with('.') || t.contains("..") {
        return Err(Invalid);
    }
    Ok(t)
}

/// The `Event` header, e.g. `presence;id=7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// Package with templates, e.g. `presence.winfo`.
    pub event_type: &'a str,
    pub params: Params<'a>,
}

impl<'a> Event<'a> {
    /// The package, without templates (`presence` for `presence.winfo`).
    pub fn package(&self) -> &'a str {
        self.event_type.split('.').next().unwrap_or(self.event_type)
    }
    pub fn id(&self) -> Option<&'a str> {
        self.params.get("id").flatten()
    }
}

impl<'a> TypedHeader<'a> for Event<'a> {
    const KIND: HeaderKind = HeaderKind::Event;
    fn parse(value: &'a str) -> Scan<Self> {
        whole(value, |c| {
            let event_type = event_type(c)?;
            let params = parse_params(c, ParamSyntax::Header)?;
            Ok(Event { event_type, params })
        })
    }
}

/// One `Allow-Events` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowEvents<'a>(pub &'a str);

impl<'a> ListHeader<'a> for AllowEvents<'a> {
    const KIND: HeaderKind = HeaderKind::AllowEvents;
    fn parse_element(element: &'a str) -> Scan<Self> {
        whole(element, event_type).map(AllowEvents)
    }
}

/// `Subscription-State`: `active` / `pending` / `terminated` / extension, with
/// `expires`, `reason`, `retry-after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionState<'a> {
    pub state: &'a str,
    pub params: Params<'a>,
}

impl<'a> SubscriptionState<'a> {
    pub fn expires(&self) -> Option<u32> {
        self.params.get("expires").flatten()?.parse().ok()
    }
    pub fn reason(&self) -> Option<&'a str> {
        self.params.get("reason").flatten()
    }
    pub fn retry_after(&self) -> Option<u32> {
        self.params.get("retry-after").flatten()?.parse().ok()
    }
}

impl<'a> TypedHeader<'a> for SubscriptionState<'a> {
    const KIND: HeaderKind = HeaderKind::SubscriptionState;
    fn parse(value: &'a str) -> Scan<Self> {
        whole(value, |c| {
            let state = c.token()?;
            let params = parse_params(c, ParamSyntax::Header)?;
            for name in ["expires", "retry-after"] {
                if let Some(v) = params.get(name) {
                    crate::scan::parse_decimal(v.ok_or(Invalid)?.as_bytes(), u64::from(u32::MAX))?;
                }
            }
            Ok(SubscriptionState { state, params })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        let e = Event::parse("presence.winfo;id=7").unwrap();
        assert_eq!((e.package(), e.id()), ("presence", Some("7")));
        assert!(Event::parse("presence..x").is_err());
        assert!(Event::parse("").is_err());
        assert!(AllowEvents::parse_element("dialog").is_ok());
    }

    #[test]
    fn subscription_state() {
        let s = SubscriptionState::parse("terminated;reason=timeout;retry-after=30").unwrap();
        assert_eq!(
            (s.state, s.reason(), s.retry_after()),
            ("terminated", Some("timeout"), Some(30))
        );
        assert_eq!(
            SubscriptionState::parse("active;expires=600")
                .unwrap()
                .expires(),
            Some(600)
        );
        assert!(SubscriptionState::parse("active;expires=soon").is_err());
    }
}
