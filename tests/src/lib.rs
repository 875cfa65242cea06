//! Real-service test harness.
