//! The admin REST API's JSON body as `timd` reads it (`rest/body.rs`): parsed as an object,
//! then every typed accessor the APIs use, with their limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timd::rest::body::{
    item_user_ids, optional_flag, optional_string, parse_object, string_list, user_id, user_id_text,
};

fuzz_target!(|data: &[u8]| {
    let Ok(object) = parse_object(data) else {
        return;
    };
    let _ = user_id(&object, "");
    let _ = user_id_text(&object, "");
    let _ = optional_string(&object, "Nick");
    let _ = optional_flag(&object, "IsNeedDetail");
    for (name, max) in [("Accounts", 100), ("To_Account", 500)] {
        if let Ok(list) = string_list(&object, name, max) {
            assert!(!list.is_empty() && list.len() <= max);
        }
    }
    for name in ["DeleteItem", "CheckItem"] {
        if let Ok(ids) = item_user_ids(&object, name, 100) {
            assert!(!ids.is_empty() && ids.len() <= 100);
        }
    }
});
