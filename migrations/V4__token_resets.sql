-- Audit trail of operator resume-token resets: who moved which stream, from where, to where, why.
CREATE TABLE IF NOT EXISTS {{audit}} (
    id bigserial PRIMARY KEY,
    stream text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    from_token text,
    from_time bigint,
    to_token text,
    to_time bigint,
    reason text NOT NULL,
    mode text NOT NULL
);

CREATE INDEX IF NOT EXISTS {{audit_name}}_stream_idx ON {{audit}} (stream, at);
