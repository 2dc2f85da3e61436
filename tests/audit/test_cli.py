"""``baton`` against a real SQLite file: audit, as-of, verify, export, and tampering.

The tampering tests edit the database file directly with ``sqlite3`` (as an attacker with
file access would), then run ``baton verify``: it must exit 1 and name the event.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from runtime.cli.main import app
from runtime.store.sqlite import SqliteEventStore
from tests.audit.scenario import AGENTS, OWNERS_AT, register_agents, write_scenario

TENANT = "acme"
runner = CliRunner()


async def _fill(path: Path) -> None:
    store = await SqliteEventStore.open(path)
    try:
        await register_agents(store, TENANT)
        for customer in ("cust-1", "cust-2"):
            await write_scenario(store, TENANT, customer)
        await write_scenario(store, "other-tenant", "cust-1")
    finally:
        await store.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "baton.db"
    asyncio.run(_fill(path))
    with sqlite3.connect(path) as conn:  # fold the WAL into the file so a byte copy is complete
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "baton.db"
    path.write_bytes(template.read_bytes())
    return path


def baton(db: Path, *args: str) -> Result:
    env = {"BATON_STORE_URL": f"sqlite:///{db}", "BATON_DEFAULT_TENANT": TENANT, "COLUMNS": "200"}
    return runner.invoke(app, list(args), env=env)


@pytest.fixture
def sql(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db, isolation_level=None)
    yield conn
    conn.close()


def row_of(sql: sqlite3.Connection, customer: str, version: int) -> tuple[int, str, str]:
    position, event_id, event_type = sql.execute(
        "SELECT position, event_id, event_type FROM events WHERE tenant_id = ? AND stream = ? AND version = ?",
        (TENANT, f"customer:{customer}", version),
    ).fetchone()
    return position, event_id, event_type


# --- audit ------------------------------------------------------------------------------


def test_audit_table_shows_timeline_owners_promises_and_names(db: Path) -> None:
    result = baton(db, "audit", "cust-1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "chain ok" in out and "17 events" in out
    for name in ("Ana Alves", "Ben Brennan", "Cleo Castillo", "Sam Okafor"):
        assert name in out
    for text in ("Timeline", "Ownership", "Promises", "first_contact", "handoff_accepted (ho2)", "kept", "now"):
        assert text in out
    assert "broken and escalated" in out and "L1→sam" in out
    assert "[kept]" in out  # the fate is shown on the promise's events too (not eaten as markup)


def test_audit_json_has_everything(db: Path) -> None:
    result = baton(db, "audit", "cust-1", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["chain"]["status"] == "ok" and doc["owner"] == "cleo"
    assert len(doc["timeline"]) == 17
    assert [p["owner"] for p in doc["ownership"]] == ["ana", "ben", "cleo"]
    assert {p["promise_id"]: p["fate"] for p in doc["promises"]} == {"p1": "kept", "p2": "broken_and_escalated"}
    assert doc["promises"][1]["escalations"][0]["to_agent_id"] == "sam"
    assert doc["agents"] == AGENTS


def test_audit_csv_is_the_timeline(db: Path) -> None:
    result = baton(db, "audit", "cust-1", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 17
    assert rows[1]["owner_after"] == "ana" and rows[-1]["owner_after"] == "cleo"
    assert {r["promise_fate"] for r in rows if r["promise_id"] == "p2"} == {"broken and escalated"}


@pytest.mark.parametrize(("moment", "owner"), OWNERS_AT)
def test_audit_as_of_gives_the_owner_at_each_moment(db: Path, moment: object, owner: str | None) -> None:
    iso = moment.isoformat().replace("+00:00", "Z")  # type: ignore[attr-defined]
    result = baton(db, "audit", "cust-1", "--as-of", iso, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    if owner is None:
        assert doc["owner"] is None and doc["cause_event"] is None
    else:
        assert doc["owner"]["agent_id"] == owner and doc["owner"]["name"] == AGENTS[owner]
        assert doc["cause_event"]["event_type"] == "OwnerAssigned"
        assert doc["cause_event"]["event_id"] == doc["owner"]["cause_event_id"]


def test_audit_as_of_table_says_owner_since_and_why(db: Path) -> None:
    result = baton(db, "audit", "cust-1", "--as-of", "2026-11-20T09:30:00Z")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "ben (Ben Brennan)" in out and "2026-11-20 09:25:00Z" in out and "handoff_accepted (ho1)" in out
    assert "v8 OwnerAssigned" in out and "p1 (open" in out
    csv_out = baton(db, "audit", "cust-1", "--as-of", "2026-11-20T09:30:00", "--format", "csv").stdout
    assert next(csv.DictReader(io.StringIO(csv_out)))["owner"] == "ben"


def test_usage_errors_and_unknown_customers_exit_2(db: Path, tmp_path: Path) -> None:
    assert baton(db, "audit", "nobody").exit_code == 2
    assert "no customer 'nobody'" in baton(db, "audit", "nobody").stderr
    assert baton(db, "audit", "cust-1", "--tenant", "nope").exit_code == 2
    assert baton(db, "audit", "cust-1", "--format", "xml").exit_code == 2
    assert baton(db, "audit", "cust-1", "--as-of", "yesterday").exit_code == 2
    assert baton(db, "verify").exit_code == 2
    assert baton(db, "verify", "cust-1", "--all").exit_code == 2
    assert baton(db, "verify", "--bundle", str(tmp_path / "missing.jsonl")).exit_code == 2
    assert baton(db, "nonsense").exit_code == 2
    missing = tmp_path / "nowhere" / "baton.db"
    result = baton(missing, "verify", "cust-1")
    assert result.exit_code == 2 and "no event store" in result.stderr
    assert not missing.parent.exists()  # the CLI never creates a store


# --- verify -------------------------------------------------------------------------------


def test_verify_an_intact_customer_and_the_whole_store(db: Path) -> None:
    result = baton(db, "verify", "cust-1")
    assert result.exit_code == 0, result.output
    assert "ok: acme/customer:cust-1: 17 events" in result.stdout
    everything = baton(db, "verify", "--all")
    assert everything.exit_code == 0, everything.output
    assert "every chain holds" in everything.stdout and "4 streams" in everything.stdout
    assert "verifying" in everything.stderr  # the progress bar
    doc = json.loads(baton(db, "verify", "--all", "--format", "json").stdout)
    assert doc == {"status": "ok", "events": 55, "streams": 4, "broken": []}


def test_a_changed_byte_in_a_note_is_caught(db: Path, sql: sqlite3.Connection) -> None:
    position, event_id, event_type = row_of(sql, "cust-1", 3)
    assert event_type == "NoteAdded"
    (data,) = sql.execute("SELECT data FROM events WHERE position = ?", (position,)).fetchone()
    tampered = bytes(data).replace(b"Charged", b"charged")
    assert sum(a != b for a, b in zip(data, tampered, strict=True)) == 1
    sql.execute("UPDATE events SET data = ? WHERE position = ?", (tampered, position))

    result = baton(db, "verify", "cust-1")
    assert result.exit_code == 1
    assert f"changed: version 3, event {event_id} (NoteAdded)" in result.stderr
    assert baton(db, "verify", "cust-2").exit_code == 0
    json_out = json.loads(baton(db, "verify", "cust-1", "--format", "json").stdout)
    assert json_out["broken"]["kind"] == "changed" and json_out["broken"]["event_id"] == event_id
    # The audit still shows the history, but says the chain is broken and exits 1.
    audit = baton(db, "audit", "cust-1")
    assert audit.exit_code == 1 and "chain BROKEN" in audit.stdout and "changed: version 3" in audit.stderr


def test_a_deleted_event_is_caught(db: Path, sql: sqlite3.Connection) -> None:
    position, _, _ = row_of(sql, "cust-1", 5)
    _, next_id, next_type = row_of(sql, "cust-1", 6)
    sql.execute("DELETE FROM events WHERE position = ?", (position,))

    result = baton(db, "verify", "cust-1")
    assert result.exit_code == 1
    assert f"removed: version 6, event {next_id} ({next_type}): version 5 missing" in result.stderr
    assert baton(db, "verify", "cust-2").exit_code == 0


def test_swapped_events_are_caught(db: Path, sql: sqlite3.Connection) -> None:
    p9, id9, _ = row_of(sql, "cust-1", 9)
    p10, id10, type10 = row_of(sql, "cust-1", 10)
    sql.execute("BEGIN")
    sql.execute("UPDATE events SET version = -10 WHERE position = ?", (p10,))
    sql.execute("UPDATE events SET version = 10 WHERE position = ?", (p9,))
    sql.execute("UPDATE events SET version = 9 WHERE position = ?", (p10,))
    sql.execute("COMMIT")

    result = baton(db, "verify", "cust-1")
    assert result.exit_code == 1
    assert f"reordered: version 9, event {id10} ({type10})" in result.stderr
    assert f"chains to version 10 ({id9})" in result.stderr
    assert baton(db, "verify", "cust-2").exit_code == 0


def test_verify_all_names_every_broken_stream_and_spares_the_rest(db: Path, sql: sqlite3.Connection) -> None:
    position, event_id, _ = row_of(sql, "cust-2", 17)
    sql.execute("UPDATE events SET metadata = CAST('{}' AS BLOB) WHERE position = ?", (position,))
    result = baton(db, "verify", "--all")
    assert result.exit_code == 1
    assert f"acme/customer:cust-2: changed: version 17, event {event_id}" in result.stderr
    assert "1 of 4 streams are broken" in result.stderr
    assert "cust-1" not in result.stderr


def test_a_kept_head_catches_a_truncated_stream(db: Path, sql: sqlite3.Connection) -> None:
    head = json.loads(baton(db, "verify", "cust-1", "--format", "json").stdout)["head_hash"]
    assert baton(db, "verify", "cust-1", "--head", head).exit_code == 0
    position, _, _ = row_of(sql, "cust-1", 17)
    sql.execute("DELETE FROM events WHERE position = ?", (position,))
    assert baton(db, "verify", "cust-1").exit_code == 0  # a shorter chain verifies by itself...
    result = baton(db, "verify", "cust-1", "--head", head)
    assert result.exit_code == 1 and "expected head" in result.stderr  # ...but not against the kept head


# --- export / bundles ------------------------------------------------------------------------


@pytest.fixture
def bundle(db: Path, tmp_path: Path) -> Path:
    result = baton(db, "export", "cust-1")
    assert result.exit_code == 0, result.output
    path = tmp_path / "bundle.jsonl"
    path.write_text(result.stdout, encoding="utf-8")
    return path


def test_export_writes_every_stored_field_and_the_head(bundle: Path, db: Path) -> None:
    lines = [json.loads(line) for line in bundle.read_text().splitlines()]
    assert len(lines) == 18
    first = lines[0]
    assert set(first) == {
        "tenant_id",
        "stream",
        "version",
        "position",
        "event_id",
        "event_type",
        "schema_version",
        "recorded_at",
        "hash",
        "previous_hash",
        "data_b64",
        "metadata_b64",
    }
    assert json.loads(base64.b64decode(first["data_b64"]))["contact_id"] == "k1"
    head = lines[-1]["head"]
    assert head["events"] == 17 and head["version"] == 17 and head["hash"] == lines[-2]["hash"]
    assert head["format"] == "baton-export-v1" and head["stream"] == "customer:cust-1"


def test_the_original_bundle_verifies_without_a_database(bundle: Path, tmp_path: Path) -> None:
    nowhere = tmp_path / "no" / "db.sqlite"
    result = baton(nowhere, "verify", "--bundle", str(bundle))
    assert result.exit_code == 0, result.output
    assert "17 events chain to head v17" in result.stdout
    head = json.loads(bundle.read_text().splitlines()[-1])["head"]["hash"]
    assert baton(nowhere, "verify", "--bundle", str(bundle), "--head", head).exit_code == 0


def _edit(lines: list[str], index: int, **changes: object) -> None:
    line = json.loads(lines[index])
    line.update(changes)
    lines[index] = json.dumps(line)


def _flip_note(lines: list[str]) -> None:
    line = json.loads(lines[2])
    data = base64.b64decode(line["data_b64"]).replace(b"Charged", b"charged")
    _edit(lines, 2, data_b64=base64.b64encode(data).decode())


def _swap(lines: list[str]) -> None:
    lines[8], lines[9] = lines[9], lines[8]


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_flip_note, "changed: version 3"),
        (lambda lines: lines.pop(4), "removed: version 6"),
        (_swap, "reordered: version 10"),
        (lambda lines: lines.pop(16), "removed: version 16"),  # the last event: caught by the head line
        (lambda lines: lines.pop(), "no head line"),
        (lambda lines: _edit(lines, 17, head={**json.loads(lines[17])["head"], "events": 3}), "counts 3 events"),
        (lambda lines: _edit(lines, 0, actor="x", version="one"), "not a readable event"),
        (lambda lines: lines.insert(3, "{not json"), "not JSON"),
    ],
)
def test_a_tampered_bundle_fails(bundle: Path, tmp_path: Path, tamper: object, expected: str) -> None:
    lines = bundle.read_text().splitlines()
    tamper(lines)  # type: ignore[operator]
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    result = baton(tmp_path / "none.db", "verify", "--bundle", str(tampered))
    assert result.exit_code == 1, result.output
    assert expected in result.stderr


def test_exporting_a_broken_chain_says_so(db: Path, sql: sqlite3.Connection) -> None:
    position, _, _ = row_of(sql, "cust-1", 3)
    sql.execute("UPDATE events SET data = CAST('{}' AS BLOB) WHERE position = ?", (position,))
    result = baton(db, "export", "cust-1")
    assert result.exit_code == 1 and "changed: version 3" in result.stderr
    assert len(result.stdout.splitlines()) == 18  # still exported, for the investigation
