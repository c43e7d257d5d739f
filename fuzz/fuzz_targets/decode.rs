//! Every link type's decoder on arbitrary bytes: it must return, never panic.
#![no_main]

use c2watch::decode::{LinkType, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for link in [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::RawIp,
        LinkType::Null,
    ] {
        let _ = decode(link, data, data.len() as u32, 0);
    }
});
