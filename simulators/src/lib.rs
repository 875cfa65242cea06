//! Simulators library.
