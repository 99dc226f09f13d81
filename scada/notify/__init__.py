"""Alarm notifications: rules route committed alarm events to webhooks and e-mail.

Data flow: AlarmService commits events to the journal → `Feeder` reads them back by journal
cursor (so nothing committed is missed, also across restarts), applies the rules and writes
one outbox row per (target, event) in the same transaction that advances its cursor →
one delivery worker per target sends its rows in order, retrying with backoff until the
receiver confirms (at-least-once; receivers de-duplicate by the event id).
"""
