-- Least-privilege grants for the role mongo2pg connects as (PG_URL), for the reference mapping
-- (deploy/marketplace/mapping.toml). Run it as the owner of the tables, after `mongo2pg migrate`
-- (which the owner runs too: it creates the control tables):
--
--   psql "$OWNER_URL" -v role=mongo2pg -f deploy/postgres/grants.sql
--   psql "$OWNER_URL" -v role=mongo2pg -v control_schema=replication -f deploy/postgres/grants.sql
--
-- Variables: `role` (required) is the role that runs `mongo2pg run` and the operator commands;
-- `control_schema` (default mongo2pg) is the mapping's [target] schema. For another mapping,
-- list its tables (parents, child and junction tables) in the last section instead. mongo2pg
-- checks these privileges at startup and names every missing one in a single line.
--
-- LISTEN/NOTIFY (token resets) and session advisory locks (stream leases) need no grant.

\set ON_ERROR_STOP on
\if :{?role}
\else
  \echo 'grants.sql: set the role with -v role=<name>'
  \quit
\endif
\if :{?control_schema}
\else
  \set control_schema mongo2pg
\endif

-- Schemas of the control tables and of the mapped tables.
GRANT USAGE ON SCHEMA public TO :"role";
GRANT USAGE ON SCHEMA :"control_schema" TO :"role";

-- Control tables ([target] defaults). mongo2pg never deletes checkpoints, gaps, id_map entries or
-- audit rows.
GRANT SELECT, INSERT ON public.id_map TO :"role";
-- An entry allocated by a reference before its document existed is claimed by that document's
-- type; no other id_map column is ever updated.
GRANT UPDATE (legacy_type) ON public.id_map TO :"role";
GRANT SELECT, INSERT, UPDATE ON public.pg_dualwrite_gaps TO :"role";
GRANT USAGE ON SEQUENCE public.pg_dualwrite_gaps_id_seq TO :"role";
GRANT SELECT, INSERT, UPDATE ON :"control_schema".checkpoints TO :"role";
-- Tombstones of deleted documents: written with every delete, read by replays and retries,
-- removed once old.
GRANT SELECT, INSERT, UPDATE, DELETE ON :"control_schema".tombstones TO :"role";
-- Which mapped tables' version columns use the current cluster-time encoding (recorded at start).
GRANT SELECT, INSERT ON :"control_schema".version_encoding TO :"role";
-- The audit of `tokens reset` (not needed by `run`).
GRANT SELECT, INSERT ON :"control_schema".token_resets TO :"role";
GRANT USAGE ON SEQUENCE :"control_schema".token_resets_id_seq TO :"role";

-- Continuous verification ([verify] in the mapping): each round replaces its collection's
-- result; `mongo2pg verify --last` reads them. Not needed without [verify].
GRANT SELECT, INSERT, UPDATE ON :"control_schema".verify_rounds TO :"role";
GRANT SELECT, INSERT, DELETE ON :"control_schema".verify_mismatches TO :"role";

-- Mapped tables: rows are upserted, deleted (delete policy) and child rows replaced.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    public.users,
    public.user_passkeys,
    public.user_refresh_tokens,
    public.categories,
    public.addresses,
    public.purchase_requests,
    public.purchase_request_delivery_info,
    public.purchase_request_offers,
    public.purchase_request_preferred_sellers,
    public.seller_offers,
    public.request_templates,
    public.payments,
    public.funds_ledger_entries
TO :"role";
