"""The three process roles, composition only: the all-in-one server, an ingest node and a
WebSocket gateway (`scada serve --role all|ingest|gateway`)."""
