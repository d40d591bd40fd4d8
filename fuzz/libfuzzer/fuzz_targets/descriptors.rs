#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| facekey_fuzz::descriptors(data));
