"""Baton's shared contracts: events, the envelope and commands.

This package imports only the standard library and pydantic. Every stored event
carries an explicit type name and schema version (never a Python module path).
"""

from contracts.commands import COMMAND_TYPES
from contracts.envelope import EventEnvelope, TraceContext
from contracts.events import EVENT_TYPES, Event, event_class

__all__ = [
    "COMMAND_TYPES",
    "EVENT_TYPES",
    "Event",
    "EventEnvelope",
    "TraceContext",
    "event_class",
]
