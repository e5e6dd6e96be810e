//! Error types per layer and the one place that classifies errors as transient or fatal.
