//! Fuzz target `senml_any`: arbitrary bytes through [`city_fuzz::oracle::senml_any`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| city_fuzz::oracle::senml_any(data));
