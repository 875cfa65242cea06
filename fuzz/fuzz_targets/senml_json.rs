//! Fuzz target `senml_json`: arbitrary bytes through [`city_fuzz::oracle::senml_json`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| city_fuzz::oracle::senml_json(data));
