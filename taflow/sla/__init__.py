"""Deadlines: SLA policies from an editable file and working-day calendars per organisation."""
