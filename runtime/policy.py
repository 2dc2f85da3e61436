"""Per-tenant policies: promise horizon, reminder lead time, escalation delays.

Read once at start-up from the TOML file named by ``BATON_POLICY_FILE`` (defaults come
from the settings)::

    [default]
    promise_max_horizon = "P30D"
    reminder_lead = "PT10M"
    escalation_level2_after = "PT30M"

    [tenants.acme]
    reminder_lead = "PT5M"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from runtime.config import Settings
from runtime.domain.time import parse_duration

FIELDS = ("promise_max_horizon", "reminder_lead", "escalation_level2_after")


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """What one tenant decided about promises and escalations."""

    promise_max_horizon: timedelta
    reminder_lead: timedelta
    escalation_level2_after: timedelta


@dataclass(frozen=True, slots=True)
class Policies:
    """Policies of every tenant, with a default."""

    default: TenantPolicy
    tenants: dict[str, TenantPolicy] = field(default_factory=dict)

    def for_tenant(self, tenant_id: str) -> TenantPolicy:
        """The tenant's policy (the default when it has none)."""
        return self.tenants.get(tenant_id, self.default)


def _apply(base: TenantPolicy, table: dict[str, Any], where: str) -> TenantPolicy:
    unknown = set(table) - set(FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown policy keys {sorted(unknown)}; known: {', '.join(FIELDS)}")
    changes: dict[str, timedelta] = {}
    for key, value in table.items():
        try:
            changes[key] = parse_duration(str(value))
        except ValueError as exc:
            raise ValueError(f"{where}.{key}: {exc}") from exc
    return replace(base, **changes)


def load_policies(settings: Settings) -> Policies:
    """Defaults from settings, overridden by the policy file when one is configured."""
    default = TenantPolicy(
        promise_max_horizon=parse_duration(settings.promise_max_horizon),
        reminder_lead=parse_duration(settings.reminder_lead),
        escalation_level2_after=parse_duration(settings.escalation_level2_after),
    )
    if not settings.policy_file:
        return Policies(default)
    path = Path(settings.policy_file)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"BATON_POLICY_FILE {path}: {exc}") from exc
    default = _apply(default, data.get("default", {}), "default")
    tenants = {tenant: _apply(default, table, f"tenants.{tenant}") for tenant, table in data.get("tenants", {}).items()}
    return Policies(default, tenants)
