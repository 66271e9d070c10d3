//! Feeds arbitrary bytes to the parser and to the preparer with the default tagging rules:
//! neither may panic, whatever the input (contract section 2: a bad message is rejected with
//! exactly one reason, never a crash).
//!
//! Also checks what must hold between the two: the preparer rejects everything the parser
//! rejects, with the same rejection, and what it prepares is what the parser read.

#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use marginstream_aggregator::{Preparer, Tagger};
use marginstream_model::{parse_event, Currency, ParseLimits, RejectReason};

/// The preparer of a default configuration, plus one exchange rate so that conversion runs.
fn preparer() -> &'static Preparer {
    static PREPARER: OnceLock<Preparer> = OnceLock::new();
    PREPARER.get_or_init(|| {
        let euro = Currency::parse("EUR").expect("a valid currency code");
        Preparer::new(
            ParseLimits::default(),
            Tagger::default(),
            Currency::parse("USD").expect("a valid currency code"),
            HashMap::from([(euro, "1.0825".parse().expect("a valid rate"))]),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_event(data, &ParseLimits::default());
    let prepared = preparer().prepare(data);
    match (&parsed, &prepared) {
        (Err(parse_rejection), Err(prepare_rejection)) => {
            assert_eq!(parse_rejection, prepare_rejection);
            assert!(!parse_rejection.message.is_empty());
        }
        (Err(_), Ok(_)) => panic!("the preparer accepted what the parser rejected"),
        (Ok(event), Err(rejection)) => {
            // Only the configuration-dependent checks can reject a parsed event.
            assert!(
                matches!(
                    rejection.reason,
                    RejectReason::UnsupportedCurrency
                        | RejectReason::UntaggedCost
                        | RejectReason::InvalidField
                ),
                "{rejection} for {event:?}"
            );
        }
        (Ok(event), Ok(prepared)) => {
            assert_eq!(event.key, prepared.key);
            assert_eq!(event.customer_id, prepared.customer_id);
            assert_eq!(event.occurred_at, prepared.occurred_at);
            assert_eq!(event.event_type, prepared.event_type);
        }
    }
});
