//! Policy values typed by operators (CLI, admin API). The first byte picks a
//! field of some kind, the rest is the text. Invariants: what parses also
//! passes the field's check, and writing it back out parses to the same value;
//! the same text read as a JSON document of that kind round-trips too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::spec::kinds;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let all: Vec<_> = kinds().iter().flat_map(|k| k.fields.iter().map(move |f| (*k, f))).collect();
    let (kind, field) = all[usize::from(pick) % all.len()];
    if let Ok(v) = kind.parse(field.name, text) {
        kind.check(field.name, &v).expect("a parsed value passes its check");
        let again = kind.parse(field.name, &kind.write(field.name, &v)).expect("written out, it parses again");
        assert_eq!(again, v);
    }
    if let Ok(fields) = policy::fields_from_json(kind, text) {
        let written = policy::fields_to_json(&fields);
        assert_eq!(policy::fields_from_json(kind, &written).expect("our JSON reads back"), fields);
    }
});
