//! Fuzz target `meta`: arbitrary bytes through [`city_fuzz::oracle::meta`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| city_fuzz::oracle::meta(data));
