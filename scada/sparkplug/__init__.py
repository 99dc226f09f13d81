"""The service as a Sparkplug B edge node (docs/sparkplug.md): each configured line a device,
its tags and alarm state as metrics, published to an MQTT broker by exception.

Layer: it consumes what the plant tick produced (tag store values, alarm state) and imports
nothing of the fan-out or web layers.
"""
