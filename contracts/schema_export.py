"""Export the contracts as JSON Schema files (one per event version and command).

Run ``python -m contracts.schema_export`` to rewrite ``contracts/schema/``; a test fails
when the committed files drift from the models.
"""

import json
import sys
from pathlib import Path
from typing import Any

from contracts.commands import COMMAND_TYPES
from contracts.envelope import EventEnvelope
from contracts.events import EVENT_TYPES

SCHEMA_DIR = Path(__file__).parent / "schema"


def render_all() -> dict[str, str]:
    """Return file name -> JSON text for every exported schema."""
    out: dict[str, Any] = {"envelope.json": EventEnvelope.model_json_schema()}
    for name, cls in sorted(EVENT_TYPES.items()):
        schema = cls.model_json_schema()
        schema["x-event-type"] = name
        schema["x-schema-version"] = cls.schema_version
        out[f"events/{name}.v{cls.schema_version}.json"] = schema
    for name, cmd in sorted(COMMAND_TYPES.items()):
        out[f"commands/{name}.json"] = cmd.model_json_schema()
    return {k: json.dumps(v, indent=2, sort_keys=True) + "\n" for k, v in out.items()}


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema under ``directory``; return the paths written."""
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all():
        sys.stdout.write(f"{p}\n")
