//! Ingest library.
