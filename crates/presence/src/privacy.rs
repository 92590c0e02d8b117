//! What each watcher may see of a presentity's state: Lync's relationship
//! levels, and the one document a watcher who may see nothing gets.

use crate::availability::Availability;
use crate::pidf::{Basic, Presence, Tuple};

/// How a watcher relates to the presentity (Lync's privacy relationships).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Relationship {
    /// Sees the presentity as offline, always, and cannot send IM.
    Blocked,
    /// Federated or public contacts: availability only.
    External,
    /// Everyone in the organisation: availability and notes.
    Colleague,
    /// The presentity's workgroup: also location and mood.
    Workgroup,
    /// Friends and family: everything published.
    Personal,
}

impl Relationship {
    pub fn name(self) -> &'static str {
        match self {
            Relationship::Blocked => "blocked",
            Relationship::External => "external",
            Relationship::Colleague => "colleague",
            Relationship::Workgroup => "workgroup",
            Relationship::Personal => "personal",
        }
    }

    pub fn parse(s: &str) -> Option<Relationship> {
        [
            Relationship::Blocked,
            Relationship::External,
            Relationship::Colleague,
            Relationship::Workgroup,
            Relationship::Personal,
        ]
        .into_iter()
        .find(|r| r.name() == s)
    }
}

/// The document a watcher gets who may not see the presentity — blocked, or
/// not allowed by the privacy policy, or for a presentity that does not
/// exist. It depends on nothing but the entity, so nothing leaks: not the
/// state, not whether a subscription is pending, not whether the user exists.
pub fn offline(entity: &str) -> Presence {
    Presence {
        entity: entity.to_string(),
        tuples: vec![Tuple {
            id: "p".into(),
            basic: Some(Basic::Closed),
            ..Tuple::default()
        }],
        person: None,
        notes: vec![],
    }
}

/// The view of `full` (the aggregated document) that a watcher with
/// `relationship` receives. Device details (contacts, per-device notes,
/// timestamps) never leave: tuples are replaced by one summary tuple.
pub fn view(full: &Presence, relationship: Relationship) -> Presence {
    let availability = Availability::of(full);
    if relationship == Relationship::Blocked || availability == Availability::Offline {
        return offline(&full.entity);
    }
    let mut out = availability.to_presence(&full.entity, None);
    let src = full.person.clone().unwrap_or_default();
    if let Some(p) = out.person.as_mut() {
        if relationship >= Relationship::Colleague {
            p.notes = src.notes.clone();
            if p.notes.is_empty() {
                p.notes = full.notes.clone();
            }
        }
        if relationship >= Relationship::Workgroup {
            p.place_type = src.place_type.clone();
            p.moods = src.moods.clone();
        }
        if relationship >= Relationship::Personal {
            // Every activity as published (the summary keeps only the state).
            p.activities = src.activities.clone();
        }
    }
    out
}

/// The document for a user who registers but never publishes: available
/// while a device is registered, else offline.
pub fn from_registration(entity: &str, registered: bool) -> Presence {
    if registered {
        Availability::Available.to_presence(entity, None)
    } else {
        offline(entity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pidf::Person;

    fn full() -> Presence {
        let mut p =
            Availability::Busy.to_presence("sip:bob@example.com", Some("in a meeting until 3"));
        let person: &mut Person = p.person.as_mut().unwrap_or_else(|| unreachable!());
        person.place_type = Some("office".into());
        person.moods = vec!["happy".into()];
        person.activities.push("meeting".into());
        p.tuples[0].contact = Some("sip:bob@192.0.2.7:5060".into());
        p.tuples[0].notes = vec!["desk phone".into()];
        p
    }

    #[test]
    fn each_level_sees_what_it_should() {
        let f = full();
        let blocked = view(&f, Relationship::Blocked);
        assert_eq!(blocked, offline("sip:bob@example.com"));
        let ext = view(&f, Relationship::External);
        assert_eq!(Availability::of(&ext), Availability::Busy);
        let ep = ext.person.clone().unwrap_or_default();
        assert!(ep.notes.is_empty() && ep.place_type.is_none() && ep.moods.is_empty());
        let col = view(&f, Relationship::Colleague).person.unwrap_or_default();
        assert_eq!(col.notes, vec!["in a meeting until 3"]);
        assert!(col.place_type.is_none());
        let wg = view(&f, Relationship::Workgroup).person.unwrap_or_default();
        assert_eq!(
            (wg.place_type.as_deref(), wg.moods.len()),
            (Some("office"), 1)
        );
        let per = view(&f, Relationship::Personal).person.unwrap_or_default();
        assert!(per.activities.contains(&"meeting".to_string()));
        // Device details never leave, whatever the level.
        for r in [
            Relationship::External,
            Relationship::Colleague,
            Relationship::Workgroup,
            Relationship::Personal,
        ] {
            let v = view(&f, r);
            assert!(
                v.tuples
                    .iter()
                    .all(|t| t.contact.is_none() && t.notes.is_empty()),
                "{r:?}"
            );
        }
    }

    #[test]
    fn nothing_leaks_to_who_may_not_see() {
        // A blocked watcher gets byte-identical documents whatever the state,
        // the same as for an offline user and a user that does not exist.
        let e = "sip:bob@example.com";
        let docs: Vec<String> = [
            view(&full(), Relationship::Blocked),
            view(
                &Availability::Available.to_presence(e, Some("hi")),
                Relationship::Blocked,
            ),
            view(
                &Availability::Offline.to_presence(e, None),
                Relationship::External,
            ),
            offline(e),
        ]
        .iter()
        .map(Presence::to_xml)
        .collect();
        assert!(docs.windows(2).all(|w| w[0] == w[1]), "{docs:#?}");
        assert_eq!(from_registration(e, false).to_xml(), docs[0]);
        assert_eq!(
            Availability::of(&from_registration(e, true)),
            Availability::Available
        );
        assert_eq!(
            Relationship::parse("workgroup"),
            Some(Relationship::Workgroup)
        );
        assert_eq!(Relationship::parse("friend"), None);
    }
}
