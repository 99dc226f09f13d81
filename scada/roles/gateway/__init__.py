"""The gateway role (`scada serve --role gateway`): WebSocket fan-out fed by the Redis bus.

It serves the dashboard, the login page, /ws, health, readiness and metrics; everything
else (/api/*) goes to the active ingest node (nginx/cluster.conf). It imports neither the
alarm engine, the runtime, the historian, the notifier nor any driver
(tests/unit/test_gateway_layers.py).
"""
