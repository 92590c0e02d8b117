//! An archived message as reviewers read it: one JSON object per line, or
//! an mbox-style text entry.

use base64::Engine;

/// A record opened with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub id: i64,
    /// The user whose archiving policy kept it.
    pub owner: String,
    pub at_ms: i64,
    pub sender: String,
    pub recipient: String,
    pub federated: bool,
    /// What became of it: `delivered`, `stored for later delivery`, or
    /// `refused NNN`.
    pub result: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Opened {
    /// The body as text when it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// One JSON object (no newline): the body as text when it is UTF-8, else
/// in base64 (`body_base64`).
pub fn json_line(o: &Opened) -> String {
    let mut v = serde_json::json!({
        "id": o.id,
        "owner": o.owner,
        "at_ms": o.at_ms,
        "sender": o.sender,
        "recipient": o.recipient,
        "federated": o.federated,
        "result": o.result,
        "content_type": o.content_type,
    });
    match o.text() {
        Some(t) => v["body"] = t.into(),
        None => {
            v["body_base64"] = base64::engine::general_purpose::STANDARD
                .encode(&o.body)
                .into()
        }
    }
    v.to_string()
}

/// An mbox entry: the `From ` separator line, headers, a blank line and
/// the body, with body lines beginning `From ` quoted (`>From `).
pub fn mbox_entry(o: &Opened) -> String {
    let addr = |u: &str| u.strip_prefix("sip:").unwrap_or(u).to_string();
    let date = rfc2822(o.at_ms);
    let mut out = format!(
        "From {} {}\nFrom: <{}>\nTo: <{}>\nDate: {}\nX-Parapet-Archive-Id: {}\nX-Parapet-Owner: {}\nX-Parapet-Result: {}\nX-Parapet-Federated: {}\n",
        addr(&o.sender),
        asctime(o.at_ms),
        o.sender,
        o.recipient,
        date,
        o.id,
        o.owner,
        o.result,
        if o.federated { "yes" } else { "no" },
    );
    let text = match o.text() {
        Some(t) => {
            out.push_str(&format!("Content-Type: {}\n\n", one_line(&o.content_type)));
            t.to_string()
        }
        None => {
            out.push_str(&format!(
                "Content-Type: {}\nContent-Transfer-Encoding: base64\n\n",
                one_line(&o.content_type)
            ));
            base64::engine::general_purpose::STANDARD.encode(&o.body)
        }
    };
    for line in text.lines() {
        if line.trim_start_matches('>').starts_with("From ") {
            out.push('>');
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

fn one_line(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

struct Parts {
    wday: &'static str,
    mon: &'static str,
    day: i64,
    year: i64,
    hms: String,
}

fn parts(unix_ms: i64) -> Parts {
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let ymd = super::keys::day_of(unix_ms);
    let year = ymd[0..4].parse().unwrap_or(1970);
    let month: usize = ymd[4..6].parse().unwrap_or(1);
    let day = ymd[6..8].parse().unwrap_or(1);
    Parts {
        wday: DAYS[days.rem_euclid(7) as usize],
        mon: MONTHS[month.clamp(1, 12) - 1],
        day,
        year,
        hms: format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    }
}

fn rfc2822(unix_ms: i64) -> String {
    let p = parts(unix_ms);
    format!(
        "{}, {:02} {} {} {} +0000",
        p.wday, p.day, p.mon, p.year, p.hms
    )
}

fn asctime(unix_ms: i64) -> String {
    let p = parts(unix_ms);
    format!("{} {} {:2} {} {}", p.wday, p.mon, p.day, p.hms, p.year)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(body: &[u8]) -> Opened {
        Opened {
            id: 7,
            owner: "sip:alice@example.test".into(),
            at_ms: 1_796_645_045_000,
            sender: "sip:alice@example.test".into(),
            recipient: "sip:bob@partner.test".into(),
            federated: true,
            result: "delivered".into(),
            content_type: "text/plain".into(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn a_json_line_carries_the_text_or_base64() {
        let v: serde_json::Value = serde_json::from_str(&json_line(&rec(b"hi\nthere"))).unwrap();
        assert_eq!(v["body"], "hi\nthere");
        assert_eq!(v["federated"], true);
        assert!(!json_line(&rec(b"x")).contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json_line(&rec(&[0xff, 0]))).unwrap();
        assert_eq!(v["body_base64"], "/wA=");
    }

    #[test]
    fn an_mbox_entry_quotes_from_lines_and_dates_in_utc() {
        let e = mbox_entry(&rec(b"From here\nok"));
        assert!(
            e.starts_with("From alice@example.test Mon Dec  7 12:04:05 2026\n"),
            "{e}"
        );
        assert!(e.contains("Date: Mon, 07 Dec 2026 12:04:05 +0000\n"), "{e}");
        assert!(e.contains("\n\n>From here\nok\n\n"), "{e}");
    }
}
