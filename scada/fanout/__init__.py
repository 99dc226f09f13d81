"""The delivery layer: the broadcaster (encode once, write to every client), WebSocket frame
code, client messages and the `/ws` hub."""
