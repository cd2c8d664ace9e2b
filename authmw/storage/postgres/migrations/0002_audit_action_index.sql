-- authmw PostgreSQL schema, version 2: query_audit(action=...) without a scan of the log.

CREATE INDEX {prefix}idx_audit_action ON {prefix}audit_log (action, created_at);
