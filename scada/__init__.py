"""SCADA streaming server: drivers, alarms and a 100 ms WebSocket broadcaster."""

__version__ = "0.1.0"
