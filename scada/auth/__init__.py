"""Users, roles, sessions, API tokens and the audit log (one SQLite file)."""
