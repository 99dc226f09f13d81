"""The ingest role (`scada serve --role ingest`): the plant (drivers, alarms, journal,
historian, REST) as one node of an active/standby pair on Redis (scada.bus, docs/cluster.md).
"""
