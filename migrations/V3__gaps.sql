-- Everything the replicator could not apply, with the raw event as canonical extended JSON (text,
-- not jsonb: jsonb rejects \u0000 and a NUL-in-text gap must still keep its document).
CREATE TABLE IF NOT EXISTS {{gaps}} (
    id bigserial PRIMARY KEY,
    collection text NOT NULL,
    document_key text,
    kind text NOT NULL,
    reason text NOT NULL,
    raw_event text,
    operation text,
    cluster_time bigint,
    resume_token text,
    window_start timestamptz,
    window_end timestamptz,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 1,
    status text NOT NULL DEFAULT 'open'
        CONSTRAINT {{gaps_name}}_status_check
        CHECK (status IN ('open', 'resolved', 'superseded', 'ignored')),
    resolved_at timestamptz,
    note text
);

-- The same failure recorded again (a replay, a retry) bumps attempts instead of adding a row.
CREATE UNIQUE INDEX IF NOT EXISTS {{gaps_name}}_dedup_uq ON {{gaps}}
    (collection, (COALESCE(document_key, '')), (COALESCE(cluster_time, -1)), kind);

-- Superseding and retrying look up open gaps of one document.
CREATE INDEX IF NOT EXISTS {{gaps_name}}_open_doc_idx ON {{gaps}} (collection, document_key)
    WHERE status = 'open';

CREATE INDEX IF NOT EXISTS {{gaps_name}}_status_kind_idx ON {{gaps}} (status, kind, first_seen);
