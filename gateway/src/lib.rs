//! Gateway service library.
