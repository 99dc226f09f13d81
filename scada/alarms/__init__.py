"""ISA-18.2 alarms: pure engine, durable journal, async service, KPIs and REST routes."""

from scada.alarms.engine import AlarmDef, AlarmEngine
from scada.alarms.journal import Journal
from scada.alarms.model import AlarmEvent, AlarmRequestError

__all__ = ["AlarmDef", "AlarmEngine", "AlarmEvent", "AlarmRequestError", "Journal"]
