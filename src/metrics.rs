//! Every metric name, registered once, and the HTTP endpoints /metrics /healthz /readyz.
