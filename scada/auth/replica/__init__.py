"""Auth across a cluster: the active ingest node publishes its auth rows, gateways read them,
and audit records flow back to the ingest node."""
