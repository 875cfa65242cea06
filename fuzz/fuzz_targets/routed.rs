//! Fuzz target `routed`: `<topic>\n<payload>` through the default routes, the decoder
//! they pick, validation and the outbox line ([`city_fuzz::ingest_oracle::routed_bytes`]).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| city_fuzz::ingest_oracle::routed_bytes(data));
