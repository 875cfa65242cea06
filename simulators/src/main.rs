//! The `simulators` command line.
fn main() {}
