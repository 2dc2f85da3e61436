"""Why a command was refused: the rule it broke, in words a client can act on.

Domain decisions raise ``RuleViolation``; the HTTP layer turns it into RFC 9457 problem
details with the status its ``kind`` implies (not_found 404, forbidden 403,
conflict 409, invalid 422).
"""

from typing import Any, Literal

ViolationKind = Literal["not_found", "forbidden", "conflict", "invalid"]


class RuleViolation(Exception):
    """A command broke a rule; nothing was recorded."""

    def __init__(self, kind: ViolationKind, rule: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.kind: ViolationKind = kind
        self.rule = rule
        self.detail = detail
        self.extra = extra
