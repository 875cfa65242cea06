//! Shared message types for the whole pipeline: the SenML (RFC 8428) data model and its
//! CBOR and JSON codecs, the metric catalog with units and valid ranges, the MQTT
//! topic scheme, and the wire facts of the payload formats (format names, foreign field
//! names for catalog metrics).
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
pub mod formats;
pub mod meta;
pub mod senml;
pub mod topic;
