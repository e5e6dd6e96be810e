-- Reference marketplace domain: the money/relational core that mongo2pg replicates from MongoDB.
--
-- Plain DDL for an empty database. Every mapped table has a uuid primary key (allocated through
-- id_map, shared with the application's backfill), a unique legacy_object_id (the Mongo _id as
-- text) and a source_version bigint holding the cluster time of the last applied change. Child and
-- junction tables reference their parent with ON DELETE CASCADE and are replaced with the parent.
-- Mixed ObjectId-or-string fields are split into a ref_kind discriminator, a typed FK and a free
-- text reference, with CHECK constraints keeping exactly one of the two populated.

CREATE TYPE user_role AS ENUM ('user', 'seller', 'admin', 'moderator', 'guard');
CREATE TYPE address_type AS ENUM ('shipping', 'billing', 'pickup', 'other');
CREATE TYPE purchase_request_status AS ENUM ('draft', 'active', 'in_progress', 'completed', 'cancelled', 'expired');
CREATE TYPE offer_status AS ENUM ('pending', 'accepted', 'rejected', 'withdrawn', 'expired');
CREATE TYPE payment_provider AS ENUM ('request.network', 'amn.scanner', 'shkeeper', 'other');
CREATE TYPE payment_direction AS ENUM ('in', 'out', 'refund');
CREATE TYPE payment_status AS ENUM ('pending', 'processing', 'completed', 'failed', 'cancelled', 'refunded');
CREATE TYPE escrow_state AS ENUM ('funded', 'releasable', 'released', 'refunded', 'releasing', 'failed', 'cancelled', 'partial');
CREATE TYPE ref_kind AS ENUM ('entity', 'template');
CREATE TYPE ledger_entry_type AS ENUM ('credit', 'debit', 'hold', 'release', 'refund', 'fee');

-- Users ----------------------------------------------------------------------------------------

CREATE TABLE users (
    id                uuid PRIMARY KEY,
    legacy_object_id  text NOT NULL UNIQUE,
    source_version    bigint,
    email             text,
    username          text,
    telegram_id       text,
    role              user_role NOT NULL DEFAULT 'user',
    referral_code     text,
    referred_by_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    points            integer NOT NULL DEFAULT 0,
    is_verified       boolean NOT NULL DEFAULT false,
    wallet_address    text,
    created_at        timestamptz,
    updated_at        timestamptz
);
CREATE UNIQUE INDEX users_email_uq ON users (email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX users_referral_uq ON users (referral_code) WHERE referral_code IS NOT NULL;

CREATE TABLE user_passkeys (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position       integer NOT NULL,
    credential_id  text NOT NULL,
    public_key     text NOT NULL,
    counter        bigint NOT NULL DEFAULT 0,
    transports     text[],
    device_name    text,
    created_at     timestamptz,
    last_used_at   timestamptz,
    UNIQUE (user_id, position)
);
CREATE INDEX user_passkeys_credential_idx ON user_passkeys (credential_id);

CREATE TABLE user_refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token       text NOT NULL,
    user_agent  text,
    created_at  timestamptz,
    expires_at  timestamptz
);
CREATE INDEX user_refresh_tokens_user_idx ON user_refresh_tokens (user_id);
CREATE INDEX user_refresh_tokens_token_idx ON user_refresh_tokens (token);

-- Categories (self-referencing tree) -------------------------------------------------------------

CREATE TABLE categories (
    id                uuid PRIMARY KEY,
    legacy_object_id  text NOT NULL UNIQUE,
    source_version    bigint,
    name              text NOT NULL,
    name_en           text,
    slug              text,
    description       text,
    parent_id         uuid REFERENCES categories (id) ON DELETE SET NULL,
    is_active         boolean NOT NULL DEFAULT true,
    sort_order        integer NOT NULL DEFAULT 0,
    created_at        timestamptz,
    updated_at        timestamptz
);
CREATE INDEX categories_parent_idx ON categories (parent_id);
CREATE INDEX categories_active_idx ON categories (is_active);
CREATE UNIQUE INDEX categories_active_name_norm_uq ON categories (lower(btrim(name))) WHERE is_active = true;

-- Addresses (one primary per user) ---------------------------------------------------------------

CREATE TABLE addresses (
    id                uuid PRIMARY KEY,
    legacy_object_id  text NOT NULL UNIQUE,
    source_version    bigint,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type              address_type NOT NULL DEFAULT 'shipping',
    full_name         text,
    phone             text,
    street            text,
    city              text,
    state             text,
    postal_code       text,
    country           text,
    is_primary        boolean NOT NULL DEFAULT false,
    created_at        timestamptz,
    updated_at        timestamptz
);
CREATE INDEX addresses_user_idx ON addresses (user_id);
CREATE UNIQUE INDEX addresses_one_primary_per_user_uq ON addresses (user_id) WHERE is_primary;

-- Purchase requests and seller offers ------------------------------------------------------------

CREATE TABLE purchase_requests (
    id                 uuid PRIMARY KEY,
    legacy_object_id   text NOT NULL UNIQUE,
    source_version     bigint,
    buyer_id           uuid NOT NULL REFERENCES users (id),
    category_id        uuid REFERENCES categories (id) ON DELETE SET NULL,
    title              text NOT NULL,
    description        text,
    status             purchase_request_status NOT NULL DEFAULT 'active',
    budget             numeric(38, 18),
    budget_currency    text NOT NULL DEFAULT 'USDT',
    quantity           integer NOT NULL DEFAULT 1,
    selected_offer_id  uuid,
    tags               text[],
    expires_at         timestamptz,
    is_deleted         boolean NOT NULL DEFAULT false,
    created_at         timestamptz,
    updated_at         timestamptz,
    CONSTRAINT purchase_requests_budget_nonneg_ck CHECK (budget IS NULL OR budget >= 0),
    CONSTRAINT purchase_requests_quantity_pos_ck CHECK (quantity > 0)
);
CREATE INDEX purchase_requests_buyer_idx ON purchase_requests (buyer_id);
CREATE INDEX purchase_requests_status_idx ON purchase_requests (status, created_at);

CREATE TABLE seller_offers (
    id                   uuid PRIMARY KEY,
    legacy_object_id     text NOT NULL UNIQUE,
    source_version       bigint,
    purchase_request_id  uuid NOT NULL REFERENCES purchase_requests (id) ON DELETE CASCADE,
    seller_id            uuid NOT NULL REFERENCES users (id),
    price                numeric(38, 18) NOT NULL,
    currency             text NOT NULL DEFAULT 'USDT',
    delivery_days        integer,
    message              text,
    status               offer_status NOT NULL DEFAULT 'pending',
    created_at           timestamptz,
    updated_at           timestamptz,
    CONSTRAINT seller_offers_price_nonneg_ck CHECK (price >= 0)
);
CREATE INDEX seller_offers_request_idx ON seller_offers (purchase_request_id);
CREATE INDEX seller_offers_seller_idx ON seller_offers (seller_id);

ALTER TABLE purchase_requests
    ADD CONSTRAINT purchase_requests_selected_offer_fk
    FOREIGN KEY (selected_offer_id) REFERENCES seller_offers (id) ON DELETE SET NULL;

CREATE TABLE purchase_request_offers (
    purchase_request_id  uuid NOT NULL REFERENCES purchase_requests (id) ON DELETE CASCADE,
    offer_id             uuid NOT NULL REFERENCES seller_offers (id) ON DELETE CASCADE,
    PRIMARY KEY (purchase_request_id, offer_id)
);

CREATE TABLE purchase_request_preferred_sellers (
    purchase_request_id  uuid NOT NULL REFERENCES purchase_requests (id) ON DELETE CASCADE,
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (purchase_request_id, user_id)
);

CREATE TABLE purchase_request_delivery_info (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    purchase_request_id  uuid NOT NULL UNIQUE REFERENCES purchase_requests (id) ON DELETE CASCADE,
    method               text,
    recipient_name       text,
    phone                text,
    address_line         text,
    city                 text,
    country              text,
    postal_code          text,
    notes                text,
    deadline             timestamptz
);

-- Request templates ------------------------------------------------------------------------------

CREATE TABLE request_templates (
    id                uuid PRIMARY KEY,
    legacy_object_id  text NOT NULL UNIQUE,
    source_version    bigint,
    seller_id         uuid NOT NULL REFERENCES users (id),
    category_id       uuid REFERENCES categories (id) ON DELETE SET NULL,
    title             text NOT NULL,
    description       text,
    price             numeric(38, 18) NOT NULL,
    currency          text NOT NULL DEFAULT 'USDT',
    max_usage         integer,
    usage_count       integer NOT NULL DEFAULT 0,
    is_active         boolean NOT NULL DEFAULT true,
    images            text[],
    attributes        jsonb,
    created_at        timestamptz,
    updated_at        timestamptz,
    CONSTRAINT request_templates_price_nonneg_ck CHECK (price >= 0),
    CONSTRAINT request_templates_usage_ck CHECK (max_usage IS NULL OR usage_count <= max_usage)
);
CREATE INDEX request_templates_seller_idx ON request_templates (seller_id);

-- Payments (three mixed ids) ---------------------------------------------------------------------

CREATE TABLE payments (
    id                             uuid PRIMARY KEY,
    legacy_object_id               text NOT NULL UNIQUE,
    source_version                 bigint,
    purchase_request_ref_kind      ref_kind NOT NULL,
    purchase_request_id            uuid REFERENCES purchase_requests (id),
    purchase_request_external_ref  text,
    seller_offer_ref_kind          ref_kind NOT NULL,
    seller_offer_id                uuid REFERENCES seller_offers (id),
    seller_offer_external_ref      text,
    buyer_id                       uuid NOT NULL REFERENCES users (id),
    seller_ref_kind                ref_kind NOT NULL,
    seller_id                      uuid REFERENCES users (id),
    seller_external_ref            text,
    amount                         numeric(38, 18) NOT NULL,
    currency                       text NOT NULL DEFAULT 'USDT',
    provider                       payment_provider NOT NULL DEFAULT 'request.network',
    direction                      payment_direction NOT NULL DEFAULT 'in',
    status                         payment_status NOT NULL DEFAULT 'pending',
    escrow_state                   escrow_state,
    provider_payment_id            text,
    blockchain                     jsonb,
    metadata                       jsonb,
    is_refunded                    boolean NOT NULL DEFAULT false,
    completed_at                   timestamptz,
    created_at                     timestamptz,
    updated_at                     timestamptz,
    CONSTRAINT payments_pr_ref_ck CHECK (
        (purchase_request_ref_kind = 'entity' AND purchase_request_id IS NOT NULL AND purchase_request_external_ref IS NULL) OR
        (purchase_request_ref_kind = 'template' AND purchase_request_id IS NULL AND purchase_request_external_ref IS NOT NULL)
    ),
    CONSTRAINT payments_offer_ref_ck CHECK (
        (seller_offer_ref_kind = 'entity' AND seller_offer_id IS NOT NULL AND seller_offer_external_ref IS NULL) OR
        (seller_offer_ref_kind = 'template' AND seller_offer_id IS NULL AND seller_offer_external_ref IS NOT NULL)
    ),
    CONSTRAINT payments_seller_ref_ck CHECK (
        (seller_ref_kind = 'entity' AND seller_id IS NOT NULL AND seller_external_ref IS NULL) OR
        (seller_ref_kind = 'template' AND seller_id IS NULL AND seller_external_ref IS NOT NULL)
    ),
    CONSTRAINT payments_amount_nonneg_ck CHECK (amount >= 0)
);
CREATE INDEX payments_status_created_idx ON payments (status, created_at);
CREATE INDEX payments_buyer_status_idx ON payments (buyer_id, status);
CREATE INDEX payments_seller_status_idx ON payments (seller_id, status);
CREATE INDEX payments_tx_hash_idx ON payments (provider_payment_id);
CREATE UNIQUE INDEX uniq_pending_rn_by_buyer_offer
    ON payments (buyer_id, purchase_request_id, seller_offer_id, provider, direction)
    WHERE provider = 'request.network' AND direction = 'in' AND status = 'pending';

-- Funds ledger (append-only) ---------------------------------------------------------------------

CREATE TABLE funds_ledger_entries (
    id                             uuid PRIMARY KEY,
    legacy_object_id               text NOT NULL UNIQUE,
    source_version                 bigint,
    user_id                        uuid NOT NULL REFERENCES users (id),
    entry_type                     ledger_entry_type NOT NULL,
    amount                         numeric(38, 18) NOT NULL,
    currency                       text NOT NULL DEFAULT 'USDT',
    purchase_request_ref_kind      ref_kind,
    purchase_request_id            uuid REFERENCES purchase_requests (id),
    purchase_request_external_ref  text,
    payment_ref_kind               ref_kind,
    payment_id                     uuid REFERENCES payments (id),
    payment_external_ref           text,
    idempotency_key                text,
    description                    text,
    metadata                       jsonb,
    created_at                     timestamptz,
    CONSTRAINT funds_ledger_pr_ref_ck CHECK (
        (purchase_request_ref_kind IS NULL AND purchase_request_id IS NULL AND purchase_request_external_ref IS NULL) OR
        (purchase_request_ref_kind = 'entity' AND purchase_request_id IS NOT NULL AND purchase_request_external_ref IS NULL) OR
        (purchase_request_ref_kind = 'template' AND purchase_request_id IS NULL AND purchase_request_external_ref IS NOT NULL)
    ),
    CONSTRAINT funds_ledger_payment_ref_ck CHECK (
        (payment_ref_kind IS NULL AND payment_id IS NULL AND payment_external_ref IS NULL) OR
        (payment_ref_kind = 'entity' AND payment_id IS NOT NULL AND payment_external_ref IS NULL) OR
        (payment_ref_kind = 'template' AND payment_id IS NULL AND payment_external_ref IS NOT NULL)
    ),
    CONSTRAINT funds_ledger_amount_pos_ck CHECK (amount > 0)
);
CREATE INDEX funds_ledger_user_idx ON funds_ledger_entries (user_id, created_at);
CREATE UNIQUE INDEX funds_ledger_idempotency_uq ON funds_ledger_entries (idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE FUNCTION funds_ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'funds_ledger_entries is append-only: % rejected', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER funds_ledger_entries_immutable
    BEFORE UPDATE OR DELETE ON funds_ledger_entries
    FOR EACH ROW EXECUTE FUNCTION funds_ledger_reject_change();
CREATE TRIGGER funds_ledger_entries_no_truncate
    BEFORE TRUNCATE ON funds_ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION funds_ledger_reject_change();
