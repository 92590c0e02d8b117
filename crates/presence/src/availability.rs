//! The Lync availability states, mapped to and from PIDF/RPID, and the
//! aggregation of a user's devices into one state.

use crate::pidf::{Basic, Person, Presence, Tuple};

/// What contacts see, as Lync named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Availability {
    Offline,
    Away,
    BeRightBack,
    Available,
    Busy,
    DoNotDisturb,
}

impl Availability {
    pub fn name(self) -> &'static str {
        match self {
            Availability::Offline => "offline",
            Availability::Away => "away",
            Availability::BeRightBack => "be-right-back",
            Availability::Available => "available",
            Availability::Busy => "busy",
            Availability::DoNotDisturb => "do-not-disturb",
        }
    }

    /// The state a document expresses: closed (or no open tuple) is offline;
    /// RPID activities make it busy or away; `other` activities carry the
    /// states RPID has no word for (do-not-disturb, be-right-back).
    pub fn of(p: &Presence) -> Availability {
        if !p.tuples.iter().any(|t| t.basic == Some(Basic::Open)) {
            return Availability::Offline;
        }
        let acts: &[String] = p.person.as_ref().map_or(&[], |x| &x.activities);
        let has = |names: &[&str]| acts.iter().any(|a| names.contains(&a.as_str()));
        let other = |t: &str| {
            acts.iter().any(|a| {
                a.strip_prefix("other:")
                    .is_some_and(|o| o.eq_ignore_ascii_case(t))
            })
        };
        if other("do-not-disturb") {
            Availability::DoNotDisturb
        } else if has(&[
            "busy",
            "on-the-phone",
            "meeting",
            "appointment",
            "presentation",
            "performance",
        ]) {
            Availability::Busy
        } else if other("be-right-back") {
            Availability::BeRightBack
        } else if has(&[
            "away",
            "vacation",
            "holiday",
            "sleeping",
            "permanent-absence",
            "travel",
            "in-transit",
            "meal",
            "breakfast",
            "dinner",
        ]) {
            Availability::Away
        } else {
            Availability::Available
        }
    }

    /// A document for `entity` in this state, with an optional note.
    pub fn to_presence(self, entity: &str, note: Option<&str>) -> Presence {
        let basic = if self == Availability::Offline {
            Basic::Closed
        } else {
            Basic::Open
        };
        let activities = match self {
            Availability::Busy => vec!["busy".to_string()],
            Availability::Away => vec!["away".to_string()],
            Availability::DoNotDisturb => {
                vec!["busy".to_string(), "other:do-not-disturb".to_string()]
            }
            Availability::BeRightBack => {
                vec!["away".to_string(), "other:be-right-back".to_string()]
            }
            Availability::Available | Availability::Offline => vec![],
        };
        // "busy" alongside do-not-disturb keeps clients that only know RPID
        // close to the meaning; the other: text decides for those that do.
        Presence {
            entity: entity.to_string(),
            tuples: vec![Tuple {
                id: "p".into(),
                basic: Some(basic),
                ..Tuple::default()
            }],
            person: Some(Person {
                id: "p1".into(),
                activities,
                notes: note.map(|n| vec![n.to_string()]).unwrap_or_default(),
                ..Person::default()
            }),
            notes: vec![],
        }
    }
}

/// One state over a user's devices: the most engaged one wins
/// (do-not-disturb > busy > available > be-right-back > away > offline), so
/// a user busy on the phone is busy even while a tablet sits idle.
pub fn aggregate(states: impl IntoIterator<Item = Availability>) -> Availability {
    states.into_iter().max().unwrap_or(Availability::Offline)
}
