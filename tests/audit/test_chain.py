"""The canonical encoding: docs/audit.md specifies it; these tests keep the doc and the code equal."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from runtime.audit.chain import GENESIS_HASH, canonical_encoding, chain_links, event_hash
from runtime.store.port import NewEvent

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def fenced(info: str) -> str:
    """The body of the fenced block whose info string is exactly ``info`` in docs/audit.md."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^```{re.escape(info)}\n(.*?)^```$", text, flags=re.M | re.S)
    assert match, f"docs/audit.md has no ```{info} block"
    return match.group(1)


def example_fields() -> dict[str, Any]:
    raw = json.loads(fenced("json example"))
    return {
        **raw,
        "event_id": UUID(raw["event_id"]),
        "data": raw["data"].encode("utf-8"),
        "metadata": raw["metadata"].encode("utf-8"),
    }


def test_the_worked_example_in_the_doc_matches_the_code() -> None:
    fields = example_fields()
    encoding = canonical_encoding(**fields)
    assert encoding.hex() == "".join(fenced("text encoding").split())
    assert f"is {len(encoding)} bytes" in DOC.read_text(encoding="utf-8")
    first = event_hash(**fields)
    assert first == fenced("text hash").strip()

    second = event_hash(
        **{
            **fields,
            "previous_hash": first,
            "version": 2,
            "event_id": UUID("7c1d9e2b-3a4f-4b5c-8d6e-9f0a1b2c3d4e"),
            "event_type": "OwnerAssigned",
            "data": b'{"agent_id":"ben","cause":"handoff_accepted"}',
            "metadata": b'{"actor":"agent:ben","occurred_at":"2026-11-20T09:25:00+00:00"}',
        }
    )
    assert second == fenced("text hash2").strip()


def reference() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(fenced("python reference"), str(DOC), "exec"), namespace)
    return namespace


def random_fields(previous: str = GENESIS_HASH, version: int = 1) -> dict[str, Any]:
    return {
        "previous_hash": previous,
        "tenant_id": f"tenant-é-{os.urandom(2).hex()}",
        "stream": f"customer:{uuid4().hex}",
        "version": version,
        "event_id": uuid4(),
        "event_type": "NoteAdded",
        "schema_version": 1 + version % 3,
        "data": os.urandom(40),
        "metadata": os.urandom(int.from_bytes(os.urandom(1), "big")),
    }


def test_the_reference_implementation_in_the_doc_agrees_with_the_code() -> None:
    ref = reference()
    for _ in range(50):
        fields = random_fields()
        assert ref["event_hash"](**fields) == event_hash(**fields)

    stream = []
    previous = GENESIS_HASH
    for version in range(1, 6):
        fields = random_fields(previous, version) | {"tenant_id": "t", "stream": "s"}
        digest = event_hash(**fields)
        stream.append({**fields, "hash": digest})
        previous = digest
    assert ref["verify"](stream) is None
    stream[2] = {**stream[2], "data": stream[2]["data"] + b"!"}
    assert ref["verify"](stream) == "version 3 was changed"


def test_the_length_prefixes_make_the_encoding_unambiguous() -> None:
    base = random_fields()
    a = event_hash(**{**base, "tenant_id": "ab", "stream": "c"})
    b = event_hash(**{**base, "tenant_id": "a", "stream": "bc"})
    c = event_hash(**{**base, "data": b"x", "metadata": b""})
    d = event_hash(**{**base, "data": b"", "metadata": b"x"})
    assert len({a, b, c, d}) == 4


@pytest.mark.parametrize(
    "field",
    ["previous_hash", "tenant_id", "stream", "version", "event_id", "event_type", "schema_version", "data", "metadata"],
)
def test_every_covered_field_changes_the_hash(field: str) -> None:
    base = random_fields()
    changed = {
        "previous_hash": "f" * 64,
        "tenant_id": base["tenant_id"] + "x",
        "stream": base["stream"] + "x",
        "version": 2,
        "event_id": uuid4(),
        "event_type": "NoteAddedX",
        "schema_version": base["schema_version"] + 1,
        "data": base["data"] + b"\x00",
        "metadata": base["metadata"] + b"\x00",
    }[field]
    assert event_hash(**base) != event_hash(**{**base, field: changed})


@pytest.mark.parametrize("bad", ["", "0" * 63, "A" * 64, "g" * 64])
def test_a_malformed_previous_hash_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        event_hash(**{**random_fields(), "previous_hash": bad})


def test_chain_links_link_each_event_to_the_one_before() -> None:
    events = [NewEvent(uuid4(), "E", 1, os.urandom(8), b"{}") for _ in range(3)]
    links = chain_links("t", "s", 4, "a" * 64, events)
    assert [link.version for link in links] == [4, 5, 6]
    assert links[0].previous_hash == "a" * 64
    assert [link.previous_hash for link in links[1:]] == [link.hash for link in links[:-1]]
    assert links[1].hash == event_hash(
        previous_hash=links[0].hash,
        tenant_id="t",
        stream="s",
        version=5,
        event_id=events[1].event_id,
        event_type="E",
        schema_version=1,
        data=events[1].data,
        metadata=b"{}",
    )
