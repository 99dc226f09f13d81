"""The delivery layer: the broadcaster (encode once, write to every client), WebSocket frame
code and client messages. The `/ws` endpoint that uses them is `scada.web.hub`."""
