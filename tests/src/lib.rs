//! Test harness: launchers for the real components the end-to-end suites run against.
