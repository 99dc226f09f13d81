"""The cluster bus on Redis Streams: what an ingest node and a WebSocket gateway share.

Self-contained groundwork for issue #12; the roles (`scada serve --role ingest|gateway`) wire
these pieces in. Each module has one job:

- `keys`: key names of one cluster and the stream-id form of journal ids.
- `lease`: the active/standby lease with a fencing token.
- `publish`: the fenced XADD every ingest publish goes through (Lua: lease check + XADD atomic).
- `epoch`: the epoch key minted with the journal; a Redis that lost its data gets a new one.
- `outbox`: the journal as outbox: committed alarm events to the `alarms` stream, idempotent
  republish after a restart or takeover.
- `frames`: each tick's encoded records on the short `frames` stream.
- `reader`: a gateway's cursor reader with its own read deadline, gap and epoch checks.
- `commands`: operator commands from gateways to the active ingest node (consumer group,
  request ids, acked after the journal commit) and their replies.
"""
