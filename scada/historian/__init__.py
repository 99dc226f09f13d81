"""The historian: every tag at the tick rate in SQLite, raw chunks plus 1 min and 1 h rollups."""
