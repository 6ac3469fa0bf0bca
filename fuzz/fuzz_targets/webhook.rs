//! Target 4: a whole webhook request (query and body) to its decision and answer
//! (`kefu_fuzz::webhook`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kefu_fuzz::webhook(data);
});
