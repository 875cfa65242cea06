//! Simulators for the smart-city pipeline: sensor models of Hanoi, simulated devices
//! with faults on demand, a fleet runner over real MQTT connections, recording and
//! replay of broker traffic, and verification of what landed in the stores.
//!
//! Layout: [`model`] (what sensors measure), [`device`] (sans-IO device state machine),
//! [`formats`] (wire formats), [`faults`] (fault specification), [`manifest`] (what was
//! sent), [`capture`] (recording file format), and the commands [`fleet`], [`record`],
//! [`replay`], [`verify`] and [`bench`].

pub mod bench;
pub mod capture;
pub mod device;
pub mod faults;
pub mod fleet;
pub mod formats;
pub mod manifest;
pub mod model;
pub mod net;
pub mod record;
pub mod replay;
pub mod report;
pub mod verify;
pub mod wire;
