"""Sparkplug B over MQTT (docs/sparkplug.md): the payload codec and topic namespace shared by
the `sparkplug` driver (a host application), the Sparkplug simulator and the service's edge
node (scada.sparkplug)."""
