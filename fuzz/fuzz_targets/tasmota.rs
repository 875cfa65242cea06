//! Fuzz target `tasmota`: arbitrary payloads through the gateway's decoder on its default
//! route, then validation and the outbox line ([`city_fuzz::ingest_oracle::tasmota`]).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| city_fuzz::ingest_oracle::tasmota(data));
