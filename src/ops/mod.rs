//! Operator commands: tokens, gaps, snapshot, verify.
