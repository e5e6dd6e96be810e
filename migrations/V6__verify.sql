-- Continuous verification (the `[verify]` section of `run`): per collection the last round, and
-- the mismatches that round found (replaced by every round). Read by `mongo2pg verify --last`.
CREATE TABLE IF NOT EXISTS {{schema}}.verify_rounds (
    collection text PRIMARY KEY,
    finished_at timestamptz NOT NULL,
    duration_ms bigint NOT NULL,
    sampled integer NOT NULL,
    compared integer NOT NULL,
    mismatches integer NOT NULL,
    counts_compared boolean NOT NULL,
    sums_compared boolean NOT NULL,
    note text
);

CREATE TABLE IF NOT EXISTS {{schema}}.verify_mismatches (
    collection text NOT NULL,
    found_at timestamptz NOT NULL,
    check_kind text NOT NULL CHECK (check_kind IN ('document', 'count', 'sum')),
    document_key text,
    detail text NOT NULL
);

CREATE INDEX IF NOT EXISTS verify_mismatches_collection_idx
    ON {{schema}}.verify_mismatches (collection);
