//! The admin REST API's query string as `timd` parses it (`rest/auth.rs`): the strict
//! parser, then the admin check (sdkappid, random, contenttype, identifier, UserSig).
#![no_main]

use libfuzzer_sys::fuzz_target;
use timd::apps::Apps;
use timd::rest::auth::{authenticate, parse_query};
use timd::Config;

const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    // The URI's query: any bytes hyper lets through reach us as a str.
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = parse_query(raw) else {
        return;
    };
    // Strict decoding: every value is valid UTF-8 and the parameter names are unique.
    let apps = Apps::new(&Config::new(1_400_000_000, "fuzz-app-key").app_configs());
    if authenticate(&query, &apps, NOW).is_ok() {
        // Only a real admin UserSig passes; the fuzzer cannot forge one.
        panic!("authenticated without the key: {query:?}");
    }
});
