//! Per-collection task: source -> mapping -> batch -> sink, with backpressure.
