-- id_map: the bridge from a MongoDB id to the row's UUID, shared with the application's backfill.
-- Created only when absent; an existing compatible table is never altered.
CREATE TABLE IF NOT EXISTS {{id_map}} (
    collection text NOT NULL,
    legacy_object_id text NOT NULL,
    new_id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at timestamptz DEFAULT now(),
    PRIMARY KEY (collection, legacy_object_id)
);
