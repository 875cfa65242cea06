//! Shared message types for the whole pipeline: the SenML (RFC 8428) data model and its
//! CBOR and JSON codecs, the metric catalog with units and valid ranges, and the MQTT
//! topic scheme.
//!
//! The crate is `no_std` and needs no allocator by default, so the same code runs on the
//! sensor boards (which encode into stack buffers) and in the gateway (feature `std`,
//! which adds owned packs and decoding of SenML-JSON).
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod catalog;
pub mod meta;
pub mod senml;
pub mod topic;
