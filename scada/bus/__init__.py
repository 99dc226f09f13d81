"""The bus: one `Bus` interface (`interface`) an ingest node and a WebSocket gateway share, on
Redis Streams (`redisbus`) or in memory (`membus`, same semantics). Imports core only. Each
module has one job:

- `interface`: the `Bus` protocol and what it returns; `events`: what a follower yields.
- `cursor`, `deadline`: a follower's cursor/gap/epoch check and read deadline, plain classes.
- `redisbus`, `membus`: the two implementations.
- `conn`: one way to open a Redis client (bounded waits, no hidden retries).
- `keys`: key names of one cluster and the stream-id form of journal ids.
- `lease`: the active/standby lease with a fencing token.
- `publish`: the fenced XADD every ingest publish goes through (Lua: lease check + XADD atomic).
- `epoch`: the epoch key minted with the journal; a Redis that lost its data gets a new one.
- `framestream`: each tick's encoded records on the short `frames` stream.
- `reader`: the Redis follower (one XREAD for both streams), with the checks above.
- `ring`: a gateway's recent alarm history, what a resume is served from.
- `commandstream`: operator commands from gateways to the active ingest node (consumer group,
  request ids, acked after the journal commit) and their replies.
- `ledgerstream`: the applied-command ledger copied to the standby.
- `notifymark`: the active node's notification delivered-through mark.

The journal-as-outbox publisher and the standby's mirror are ingest-role code
(`scada.roles.ingest.alarmoutbox`, `scada.roles.ingest.mirror`).
"""
