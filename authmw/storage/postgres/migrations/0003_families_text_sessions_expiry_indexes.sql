-- authmw PostgreSQL schema, version 3.
--
-- Revoked refresh families: revoke_token_family inserts the family here and rotate_token
-- refuses a rotation while its family is listed; both take the family's transaction-level
-- advisory lock first, so a rotation and a revocation of one family never interleave. Rows
-- are marks, not data: they expire with the family's longest-lived token and clean-up
-- removes them (backups leave them out).
CREATE TABLE {prefix}revoked_families (
    family_id   TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    revoked_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX {prefix}idx_families_expires_at ON {prefix}revoked_families (expires_at);

-- Session data as JSON text: JSONB refuses "\u0000" (a NUL character in a string or a key),
-- which every other backend stores. The text is what the application wrote, so key order and
-- number spelling now come back unchanged too.
ALTER TABLE {prefix}sessions
    ALTER COLUMN data DROP DEFAULT,
    ALTER COLUMN data TYPE TEXT USING data::text,
    ALTER COLUMN data SET DEFAULT '{}';

-- The expiry columns version 1 left without an index (docs/postgres.md: every one is indexed).
CREATE INDEX {prefix}idx_tokens_access_exp ON {prefix}tokens (expires_at);
CREATE INDEX {prefix}idx_tokens_refresh_exp ON {prefix}tokens (refresh_expires_at);
CREATE INDEX {prefix}idx_sessions_absolute_exp ON {prefix}sessions (absolute_expires_at);
