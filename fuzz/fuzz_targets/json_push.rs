//! Target 2: a JSON push (plaintext, or the decrypted payload of an encrypted one).
#![no_main]

use kefu::protocol::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kefu_fuzz::push(data, Format::Json));
