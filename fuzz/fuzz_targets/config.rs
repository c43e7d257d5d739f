//! The configuration parser and validator on arbitrary text: accept or refuse, never
//! panic.
#![no_main]

use c2watch::config::{Origin, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse(text, Origin::Builtin);
    }
});
