"""`scada cluster`: a whole cluster on this machine (Redis, two ingest nodes, two gateways,
nginx) for trying it."""
