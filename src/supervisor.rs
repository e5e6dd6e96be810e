//! Starts one pipeline per mapped collection and restarts it on transient errors.
