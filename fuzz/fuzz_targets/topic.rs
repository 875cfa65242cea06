//! Fuzz target `topic`: arbitrary bytes through [`city_fuzz::oracle::topic`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| city_fuzz::oracle::topic(data));
