//! Who sees what: the privacy policy's audiences combined with the
//! presentity's contact list, and who may send them instant messages.
//! Pure decisions; the server supplies the policy values and the list entry.

use crate::privacy::Relationship;

/// Who may see a user's presence (the privacy policy's
/// `presence_internal` / `presence_federated` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Everyone,
    Contacts,
    Nobody,
}

impl Audience {
    pub fn parse(s: &str) -> Option<Audience> {
        match s {
            "everyone" => Some(Audience::Everyone),
            "contacts" => Some(Audience::Contacts),
            "nobody" => Some(Audience::Nobody),
            _ => None,
        }
    }
}

/// Who may send a user an instant message without being in their contacts
/// (the privacy policy's `strangers_may_im`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strangers {
    Everyone,
    Internal,
    Nobody,
}

impl Strangers {
    pub fn parse(s: &str) -> Option<Strangers> {
        match s {
            "everyone" => Some(Strangers::Everyone),
            "internal" => Some(Strangers::Internal),
            "nobody" => Some(Strangers::Nobody),
            _ => None,
        }
    }
}

/// A watcher as the presentity's rules see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watcher {
    /// The watcher is the presentity (their own devices): sees everything.
    pub is_self: bool,
    /// The watcher belongs to this organisation (not federated).
    pub internal: bool,
    /// The watcher's entry in the presentity's contact list, if any.
    pub entry: Option<Relationship>,
}

/// The level at which `w` sees the presentity, or `None`: `w` sees the
/// offline document (blocked, not allowed by the policy, or not approved).
pub fn level(w: Watcher, internal: Audience, federated: Audience) -> Option<Relationship> {
    if w.is_self {
        return Some(Relationship::Personal);
    }
    if w.entry == Some(Relationship::Blocked) {
        return None;
    }
    let audience = if w.internal { internal } else { federated };
    match audience {
        Audience::Nobody => None,
        Audience::Contacts => w.entry,
        Audience::Everyone => Some(w.entry.unwrap_or(if w.internal {
            Relationship::Colleague
        } else {
            Relationship::External
        })),
    }
}

/// How a watcher appears in the presentity's watcher list (RFC 3857).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherStatus {
    /// Sees presence.
    Active,
    /// Sees the offline document until the presentity adds them to contacts.
    Pending,
    /// Blocked by the presentity.
    Rejected,
}

pub fn status(w: Watcher, internal: Audience, federated: Audience) -> WatcherStatus {
    if w.entry == Some(Relationship::Blocked) {
        WatcherStatus::Rejected
    } else if level(w, internal, federated).is_some() {
        WatcherStatus::Active
    } else {
        WatcherStatus::Pending
    }
}

/// Whether a message from a sender described by `w` reaches the user.
pub fn may_message(w: Watcher, strangers: Strangers) -> bool {
    if w.is_self {
        return true;
    }
    match w.entry {
        Some(Relationship::Blocked) => false,
        Some(_) => true,
        None => match strangers {
            Strangers::Everyone => true,
            Strangers::Internal => w.internal,
            Strangers::Nobody => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Audience::*;
    use Relationship::*;

    fn w(internal: bool, entry: Option<Relationship>) -> Watcher {
        Watcher {
            is_self: false,
            internal,
            entry,
        }
    }

    #[test]
    fn self_sees_everything_whatever_the_policy() {
        let me = Watcher {
            is_self: true,
            internal: true,
            entry: None,
        };
        assert_eq!(level(me, Nobody, Nobody), Some(Personal));
    }

    #[test]
    fn blocked_never_sees_and_never_messages() {
        for a in [Everyone, Contacts, Nobody] {
            assert_eq!(level(w(true, Some(Blocked)), a, a), None);
        }
        assert!(!may_message(w(true, Some(Blocked)), Strangers::Everyone));
        assert_eq!(
            status(w(true, Some(Blocked)), Everyone, Everyone),
            WatcherStatus::Rejected
        );
    }

    #[test]
    fn contacts_only_hides_strangers_and_keeps_levels() {
        assert_eq!(level(w(true, None), Contacts, Everyone), None);
        assert_eq!(
            status(w(true, None), Contacts, Everyone),
            WatcherStatus::Pending
        );
        assert_eq!(
            level(w(true, Some(Workgroup)), Contacts, Nobody),
            Some(Workgroup)
        );
        // Internal and federated audiences are separate.
        assert_eq!(level(w(false, Some(External)), Everyone, Nobody), None);
        assert_eq!(level(w(false, None), Nobody, Everyone), Some(External));
    }

    #[test]
    fn everyone_gives_strangers_a_default_level() {
        assert_eq!(level(w(true, None), Everyone, Nobody), Some(Colleague));
        assert_eq!(level(w(false, None), Nobody, Everyone), Some(External));
        assert_eq!(level(w(true, Some(Personal)), Nobody, Nobody), None);
    }

    #[test]
    fn stranger_messages() {
        assert!(may_message(w(true, None), Strangers::Internal));
        assert!(!may_message(w(false, None), Strangers::Internal));
        assert!(may_message(w(false, None), Strangers::Everyone));
        assert!(!may_message(w(true, None), Strangers::Nobody));
        assert!(may_message(w(false, Some(External)), Strangers::Nobody));
    }
}
