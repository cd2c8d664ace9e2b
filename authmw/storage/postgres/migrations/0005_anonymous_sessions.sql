-- authmw PostgreSQL schema, version 5: anonymous sessions (a visitor's cart or flash message
-- before any login) belong to no user, so a session's user_id may be NULL; the partial index
-- counts them for get_statistics without a scan of every session.

ALTER TABLE {prefix}sessions ALTER COLUMN user_id DROP NOT NULL;
CREATE INDEX {prefix}idx_sessions_anonymous ON {prefix}sessions (expires_at) WHERE user_id IS NULL;
