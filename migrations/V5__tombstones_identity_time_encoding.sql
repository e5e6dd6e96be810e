-- Deletes leave tombstones: an older state of a deleted document (a replay, a snapshot page read
-- before the delete, a gap retry) is never written back. `soft` tombstones come from soft-delete
-- policies: the row stays, and any older state written later gets the soft-delete flag again.
CREATE TABLE IF NOT EXISTS {{tombstones}} (
    collection text NOT NULL,
    legacy_object_id text NOT NULL,
    version bigint NOT NULL,
    soft boolean NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, legacy_object_id)
);

-- Which BSON type of `_id` owns an id_map entry ('objectId' or 'string'; NULL when written by
-- someone else, e.g. the application's backfill): the string "6b09..." and ObjectId("6b09...") are
-- two documents and must never share an entry.
ALTER TABLE {{id_map}} ADD COLUMN IF NOT EXISTS legacy_type text;

-- A copy of a stream group copies several collections in turn: which one is in progress.
ALTER TABLE {{checkpoints}} ADD COLUMN IF NOT EXISTS snapshot_collection text;

-- Cluster times are stored with an order-preserving encoding over the whole unsigned range
-- (packed value - 2^63), so versions stay ordered after 2038. Values written with the previous
-- encoding (packed value as is, always >= 0) are shifted once, here.
UPDATE {{checkpoints}} SET cluster_time = cluster_time + (-9223372036854775807 - 1)
    WHERE cluster_time >= 0;
UPDATE {{checkpoints}} SET snapshot_start_time = snapshot_start_time + (-9223372036854775807 - 1)
    WHERE snapshot_start_time >= 0;
UPDATE {{gaps}} SET cluster_time = cluster_time + (-9223372036854775807 - 1)
    WHERE cluster_time >= 0;
UPDATE {{audit}} SET from_time = from_time + (-9223372036854775807 - 1) WHERE from_time >= 0;
UPDATE {{audit}} SET to_time = to_time + (-9223372036854775807 - 1) WHERE to_time >= 0;

-- Version columns of the mapped tables are shifted the same way, once per table, by the
-- replicator (it knows the tables from the mapping); this records which ones are done.
CREATE TABLE IF NOT EXISTS {{schema}}.version_encoding (
    table_name text PRIMARY KEY,
    version_column text NOT NULL,
    converted_at timestamptz NOT NULL DEFAULT now()
);
