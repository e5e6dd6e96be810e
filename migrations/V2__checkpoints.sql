-- One row per stream: the position committed with the last applied batch. Moves forward only
-- (enforced by the replicator's UPDATE); `epoch` is bumped by operator resets so a running
-- replicator never overwrites a reset with its old in-memory position.
CREATE TABLE IF NOT EXISTS {{checkpoints}} (
    stream text PRIMARY KEY,
    resume_token text,
    cluster_time bigint,
    epoch bigint NOT NULL DEFAULT 0,
    holder text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    snapshot_state text,
    snapshot_last_id text,
    snapshot_start_token text,
    snapshot_start_time bigint
);
