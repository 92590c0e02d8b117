//! Typed headers, parsed on demand from a header value. One family per file; each
//! type borrows from the message buffer and allocates nothing.
//!
//! Singleton headers implement [`TypedHeader`] and are read with
//! [`Message::typed`](crate::Message::typed); comma-list headers implement
//! [`ListHeader`] and are read element by element with
//! [`Message::list`](crate::Message::list).

mod auth;
mod call_id;
mod cseq;
mod date;
mod event;
mod media;
mod methods;
mod name_addr;
mod option_tags;
mod product;
mod retry_after;
mod scalar;
mod via;

pub use auth::{AuthValue, Authorization, ProxyAuthenticate, ProxyAuthorization, WwwAuthenticate};
pub use call_id::CallId;
pub use cseq::CSeq;
pub use date::Date;
pub use event::{AllowEvents, Event, SubscriptionState};
pub use media::{Accept, ContentType, MediaType};
pub use methods::Allow;
pub use name_addr::{Contact, From, NameAddr, Path, RecordRoute, Route, To};
pub use option_tags::{ProxyRequire, Require, Supported, Unsupported};
pub use product::{Product, ProductIter, Server, UserAgent};
pub use retry_after::RetryAfter;
pub use scalar::{ContentLength, Expires, MaxForwards, MinExpires};
pub use via::{Via, MAGIC_COOKIE};

use crate::error::ParseError;
use crate::message::Message;
use crate::name::HeaderKind;
use crate::scan::{CommaSplit, Cursor, Invalid, Scan};

/// A header that appears at most once and is parsed whole.
pub trait TypedHeader<'a>: Sized {
    const KIND: HeaderKind;
    /// Parses the header's value (without the name, LWS trimmed).
    fn parse(value: &'a str) -> Scan<Self>;
}

/// A header whose value is a comma-separated list, possibly over several lines.
pub trait ListHeader<'a>: Sized {
    const KIND: HeaderKind;
    /// Whether an empty value is an empty list (e.g. `Supported:`), not an error.
    const ALLOW_EMPTY: bool = false;
    /// Parses one element (between commas, LWS trimmed).
    fn parse_element(element: &'a str) -> Scan<Self>;
}

pub(crate) fn list_elements<'a, H: ListHeader<'a>>(msg: &'a Message) -> ListIter<'a, H> {
    ListIter {
        msg,
        next_line: 0,
        current: None,
        failed: false,
        last: "",
        _h: std::marker::PhantomData,
    }
}

/// Iterator over every element of a list header, across its lines.
#[derive(Debug)]
pub struct ListIter<'a, H> {
    msg: &'a Message,
    next_line: usize,
    current: Option<(&'a str, CommaSplit<'a>)>,
    failed: bool,
    /// The text of the element returned last.
    last: &'a str,
    _h: std::marker::PhantomData<fn() -> H>,
}

impl<'a, H: ListHeader<'a>> ListIter<'a, H> {
    /// Each element together with its text as written (trimmed), for a
    /// proxy that keeps an entry verbatim (e.g. a Record-Route it hides).
    pub fn with_text(self) -> impl Iterator<Item = Result<(&'a str, H), ParseError>> {
        let mut it = self;
        std::iter::from_fn(move || {
            let r = it.next()?;
            Some(r.map(|h| (it.last, h)))
        })
    }
}

impl<'a, H: ListHeader<'a>> Iterator for ListIter<'a, H> {
    type Item = Result<H, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let err = ParseError::BadHeader(H::KIND);
        loop {
            if self.failed {
                return None;
            }
            if let Some((value, split)) = &mut self.current {
                match split.next() {
                    Some(Ok((a, b))) => {
                        let el = value.get(a..b).filter(|e| !e.is_empty());
                        self.last = el.unwrap_or("");
                        let r = el
                            .ok_or(Invalid)
                            .and_then(H::parse_element)
                            .map_err(|Invalid| err);
                        self.failed = r.is_err();
                        return Some(r);
                    }
                    Some(Err(Invalid)) => {
                        self.failed = true;
                        return Some(Err(err));
                    }
                    None => self.current = None,
                }
            }
            let entry = self
                .msg
                .headers
                .get(self.next_line..)?
                .iter()
                .position(|e| e.kind == H::KIND)?;
            let idx = self.next_line + entry;
            self.next_line = idx + 1;
            let h = self.msg.entry(&self.msg.headers[idx]);
            let value = h.value;
            if value.is_empty() {
                if H::ALLOW_EMPTY {
                    continue;
                }
                self.failed = true;
                return Some(Err(err));
            }
            self.current = Some((value, CommaSplit::new(value)));
        }
    }
}

/// Runs `f` on a cursor over `s` and requires it to consume everything but
/// trailing LWS.
pub(crate) fn whole<'a, T>(s: &'a str, f: impl FnOnce(&mut Cursor<'a>) -> Scan<T>) -> Scan<T> {
    let mut c = Cursor::new(s);
    c.skip_lws();
    let v = f(&mut c)?;
    c.skip_lws();
    if c.is_empty() {
        Ok(v)
    } else {
        Err(Invalid)
    }
}
