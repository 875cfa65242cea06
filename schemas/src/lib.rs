#![no_std]
//! Shared message types.
