"""Identifier types shared by events and commands.

Identifiers appear in URLs and in NATS subjects, so they are restricted to a safe
alphabet: letters, digits, underscore and hyphen (tenants), plus dot, colon and
at-sign for other ids (never a subject token).
"""

from typing import Annotated

from pydantic import StringConstraints

TenantId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
"""A tenant: the organisation whose data this is. Safe as a NATS subject token."""

EntityId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
"""The id of a customer, agent, contact, hand-off, promise or escalation."""

NonEmptyText = Annotated[str, StringConstraints(min_length=1, max_length=20_000, strip_whitespace=True)]
"""Free text that must say something (a note, a recap, a resolution)."""

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
"""A short label or reason."""
