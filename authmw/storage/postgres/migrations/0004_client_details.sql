-- authmw PostgreSQL schema, version 4: where and when each login happened, for "your devices".
--
-- A token and a session keep the client address and user agent of the login that started
-- them (cleaned text, as the audit log keeps it: TEXT, not INET, for the same reason); a token
-- also keeps its family's login time, copied by every refresh. Rows written before this
-- version read as NULL: unknown.
ALTER TABLE {prefix}tokens
    ADD COLUMN login_at   TIMESTAMPTZ,
    ADD COLUMN ip_address TEXT,
    ADD COLUMN user_agent TEXT;

ALTER TABLE {prefix}sessions
    ADD COLUMN ip_address TEXT,
    ADD COLUMN user_agent TEXT;
