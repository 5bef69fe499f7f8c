//! Shared helpers for the fault-injection suite.
