//! Fuzz target `senml_cbor`: arbitrary bytes through [`city_fuzz::oracle::senml_cbor`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| city_fuzz::oracle::senml_cbor(data));
