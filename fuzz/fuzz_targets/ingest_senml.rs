//! Fuzz target `ingest_senml`: SenML (CBOR or JSON) as the gateway decodes it on the
//! native route: device binding, catalog names and units, times, validation and the
//! outbox line ([`city_fuzz::ingest_oracle::senml`]).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| city_fuzz::ingest_oracle::senml(data));
