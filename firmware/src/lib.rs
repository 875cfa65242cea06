#![no_std]
//! Sensor-node core. See the crate README section in the top-level README.

pub mod link;
