//! `parapet admin federation explain FROM TO --modality M`: the decision
//! the server would make for a request between a local user and a
//! partner's, with every rule it checks in order and the one that decided.
//! It reads the same functions the request path calls, so it cannot
//! disagree with them.

use serde::{Deserialize, Serialize};

use crate::policy_set::{self, Direction, FederationRefusal, Modality, PartnerStatus};
use crate::Core;

/// What [`Core::explain`] says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub allowed: bool,
    /// `out` (a local user to a partner's), `in`, or `none` (not
    /// federation: both or neither address in this domain).
    pub direction: String,
    pub partner: String,
    /// The rule that decided.
    pub rule: String,
    /// Every rule checked, in order, with its outcome.
    pub steps: Vec<String>,
}

/// `user@domain` of a SIP address (with or without `sip:`), lower-cased
/// domain.
fn parts(addr: &str) -> Option<(String, String)> {
    let a = addr.trim();
    let a = a.strip_prefix("sip:").unwrap_or(a);
    let (user, domain) = a.split_once('@')?;
    (!user.is_empty() && !domain.is_empty()).then(|| (user.to_owned(), domain.to_ascii_lowercase()))
}

impl<S: store::Store> Core<S> {
    /// How a `modality` request from `from` to `to` would be decided (for
    /// presence: `from` watches `to`).
    pub(crate) fn explain(&self, from: &str, to: &str, m: Modality) -> Result<Explanation, String> {
        let (Some((fu, fd)), Some((tu, td))) = (parts(from), parts(to)) else {
            return Err("FROM and TO must be addresses such as sip:alice@example.com".into());
        };
        let ours = |d: &str| self.cfg.domain.eq_ignore_ascii_case(d);
        let not_federation = |rule: String| Explanation {
            allowed: false,
            direction: "none".into(),
            partner: String::new(),
            steps: vec![format!("refused: {rule}")],
            rule,
        };
        let (local, partner, outward) = match (ours(&fd), ours(&td)) {
            (true, false) => (format!("sip:{fu}@{fd}"), td.clone(), true),
            (false, true) => (format!("sip:{tu}@{td}"), fd.clone(), false),
            (true, true) => {
                return Ok(not_federation(
                    "both addresses are in this domain: not federation (the privacy policy decides)"
                        .into(),
                ))
            }
            (false, false) => {
                return Ok(not_federation(format!(
                    "neither address is in this domain ({}): this server relays nothing between two other domains",
                    self.cfg.domain
                )))
            }
        };
        // The way the content flows: a watcher's presence comes towards it.
        let dir = match m {
            Modality::Presence => {
                if outward {
                    Direction::In
                } else {
                    Direction::Out
                }
            }
            _ if outward => Direction::Out,
            _ => Direction::In,
        };
        let mut e = Explanation {
            allowed: false,
            direction: if outward { "out" } else { "in" }.into(),
            partner: partner.clone(),
            rule: String::new(),
            steps: Vec::new(),
        };
        let fed = self.policies.effective("", "federation");
        let list = |f: &str| {
            fed.as_ref()
                .map(|e| e.list(f).join(", "))
                .unwrap_or_default()
        };
        macro_rules! refuse {
            ($rule:expr) => {{
                let rule: String = $rule;
                e.steps.push(format!("refused: {rule}"));
                e.rule = rule;
                return Ok(e);
            }};
        }
        let status = match policy_set::partner_status(&self.policies, &partner) {
            Ok(s) => s,
            Err(FederationRefusal::Off) => refuse!("federation.enabled is false".into()),
            Err(FederationRefusal::NotADomain) => {
                refuse!(format!("{partner} is not a domain name a partner can have"))
            }
            Err(FederationRefusal::Blocked) => refuse!(format!(
                "{partner} is covered by federation.blocked_domains ({})",
                list("blocked_domains")
            )),
            Err(_) => refuse!(format!(
                "{partner} is not in federation.allowed_domains and partner_discovery is off"
            )),
        };
        e.steps.push(match status {
            PartnerStatus::Allowed => format!("{partner} is in federation.allowed_domains"),
            PartnerStatus::Discovered => {
                format!("{partner} is not listed; partner_discovery is on (a discovered partner)")
            }
        });
        if let Some((host, port)) = policy_set::pinned_server(&self.policies, &partner) {
            e.steps.push(if outward {
                format!("{partner}'s server is pinned to {host}:{port} (federation.partner_servers): requests go there")
            } else {
                format!("{partner}'s server is pinned to {host} (federation.partner_servers): its requests count only from a certificate naming {host}")
            });
        }
        let mname = match m {
            Modality::Im => "im",
            Modality::Presence => "presence",
            Modality::Calls => "calls",
        };
        let dname = match dir {
            Direction::In => "in",
            Direction::Out => "out",
        };
        let entries: Vec<String> = fed
            .as_ref()
            .map(|f| {
                f.list("partner_modalities")
                    .iter()
                    .filter(|x| x.rsplit_once(':').is_some_and(|(d, _)| d == partner))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let source = if entries.is_empty() {
            format!(
                "federation.default_modalities ({})",
                list("default_modalities")
            )
        } else {
            format!(
                "federation.partner_modalities for {partner} ({})",
                entries.join(", ")
            )
        };
        if !policy_set::modality_allowed(&self.policies, &partner, m, dir) {
            refuse!(format!("{mname} {dname} is not offered by {source}"));
        }
        e.steps
            .push(format!("{mname} {dname} is offered by {source}"));
        if !self.users.get(&local).is_some_and(|u| u.enabled) {
            refuse!(format!("{local} is not an enabled user here"));
        }
        if !policy_set::user_federates(&self.policies, &local) {
            refuse!(format!("external_access.federation is false for {local}"));
        }
        e.steps
            .push(format!("external_access.federation is true for {local}"));
        if !outward {
            let remote = format!("sip:{fu}@{fd}");
            if self.fed.book.watch_listed(&partner) {
                refuse!(format!(
                    "{partner} is on the watch list (parapet admin federation clear {partner})"
                ));
            }
            let who = crate::presence::watcher(
                &self.presence.contacts,
                &self.cfg.domain,
                &local,
                &remote,
            );
            let contact = who
                .entry
                .is_some_and(|r| r != presence::Relationship::Blocked);
            let unverified = status == PartnerStatus::Discovered
                || policy_set::partners_unverified(&self.policies);
            if m == Modality::Presence {
                let p = crate::presence::privacy(&self.policies, &local);
                let level = presence::access::level(who, p.internal, p.federated)
                    .filter(|_| self.federated_view(&local, &remote, who));
                match level {
                    Some(l) => e.steps.push(format!(
                        "{remote} sees {local}'s presence as {l:?} (privacy.presence_federated, contacts)"
                    )),
                    None => refuse!(format!(
                        "{remote} sees {local} offline: privacy.presence_federated, the contact list{}",
                        if unverified { ", and an unverified or discovered partner's users only as contacts" } else { "" }
                    )),
                }
            } else if unverified {
                if !contact {
                    refuse!(format!("{remote} is not in {local}'s contacts, and a discovered or unverified partner reaches contacts only"));
                }
                e.steps.push(format!("{remote} is in {local}'s contacts"));
            } else {
                let p = crate::presence::privacy(&self.policies, &local);
                if !presence::access::may_message(who, p.strangers) {
                    refuse!(format!("{local}'s privacy refuses {remote} (privacy.strangers_may_im, blocked or not a contact)"));
                }
                e.steps.push(format!("{local}'s privacy accepts {remote}"));
            }
        }
        e.allowed = true;
        e.rule = e.steps.last().cloned().unwrap_or_default();
        Ok(e)
    }
}
