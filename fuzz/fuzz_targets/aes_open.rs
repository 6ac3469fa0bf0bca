//! Target 3: the AES envelope of safe and compatible mode, opened (`kefu_fuzz::aes_open`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kefu_fuzz::aes_open(data));
