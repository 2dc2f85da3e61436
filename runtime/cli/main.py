"""``baton``: the operator's and auditor's command line.

An entry point: it reads ``Settings`` once (``BATON_STORE_URL`` and friends, as the
services do) and opens the stores through ``runtime.compose``. Commands:

- ``baton audit CUSTOMER [--as-of ISO]``: the timeline, ownership periods and promise
  fates, or the state at a moment;
- ``baton verify CUSTOMER`` / ``--all`` / ``--bundle FILE``: recompute hash chains;
- ``baton export CUSTOMER > bundle.jsonl``: the stored events plus the head hash;
- ``baton rebuild``: drop and rebuild the services' views from the store.

Exit codes: 0 ok; 1 a hash chain is broken (the first broken event is printed);
2 usage error, unknown customer or missing store.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table as _Table
from rich.text import Text

from runtime.audit.bundle import BundleError, export_lines, verify_bundle
from runtime.audit.history import FATE_LABELS, History, owner_as_of, replay
from runtime.audit.verify import ChainReport, StoreReport, verify_store, verify_stream
from runtime.config import Settings
from runtime.events import customer_stream, to_envelope
from runtime.store.port import EventStore, RecordedEvent

T = TypeVar("T")


class Table(_Table):
    """A rich table whose cells are plain text, never console markup (the data is user input)."""

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in cells), **kwargs)


EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2

FORMATS = ("table", "json", "csv")
SERVICES = ("intake", "routing", "followup")

app = typer.Typer(
    name="baton",
    help="Baton's command line: audit a customer's history, verify hash chains, export, rebuild views.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass
class Cli:
    """What every command shares: the settings (read once) and the consoles."""

    settings: Settings
    out: Console
    err: Console


def _cli(ctx: typer.Context) -> Cli:
    obj = ctx.find_root().obj
    assert isinstance(obj, Cli)
    return obj


@app.callback()
def main(ctx: typer.Context) -> None:
    """Reads the BATON_* environment once (BATON_STORE_URL names the event store)."""
    err = Console(stderr=True, highlight=False)
    try:
        settings = Settings()
    except ValidationError as exc:
        err.print(Text(f"error: invalid BATON_* settings: {exc}", style="bold red"))
        raise typer.Exit(EXIT_USAGE) from exc
    ctx.obj = Cli(settings, Console(highlight=False, soft_wrap=False), err)


def fail(cli: Cli, message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``message`` to stderr; the caller raises the returned exit."""
    cli.err.print(Text(f"error: {message}", style="bold red"))
    return typer.Exit(code)


def _run(work: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await work

    return asyncio.run(wrapped())


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:"):
        return None
    return Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))


def open_store(cli: Cli) -> EventStore:
    """The configured event store; a missing SQLite file is an error, never created."""
    from runtime.compose import open_event_store

    url = cli.settings.resolved_store_url()
    path = _sqlite_file(url)
    if path is not None and not path.is_file():
        raise fail(cli, f"no event store at {path} (set BATON_STORE_URL or BATON_DATA_DIR)")
    try:
        return open_event_store(cli.settings, _utc_now)
    except ValueError as exc:
        raise fail(cli, str(exc)) from exc


async def _with_store(cli: Cli, work: Callable[[EventStore], Awaitable[T]]) -> T:
    store = open_store(cli)
    try:
        return await work(store)
    finally:
        await store.close()


def _format(cli: Cli, value: str) -> str:
    if value not in FORMATS:
        raise fail(cli, f"--format must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _moment(cli: Cli, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise fail(cli, f"--as-of: not an ISO 8601 time: {text!r} (e.g. 2026-11-20T10:00:00Z)") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return buffer.getvalue()


def _print_json(cli: Cli, value: Any) -> None:
    cli.out.out(json.dumps(value, indent=2, ensure_ascii=False), highlight=False)


def _print_text(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _broken_line(report: ChainReport) -> str:
    assert report.broken is not None
    return f"hash chain BROKEN in {report.tenant_id}/{report.stream}: {report.broken.describe()}"


# --- audit -------------------------------------------------------------------------------


async def _names(store: EventStore, tenant: str) -> dict[str, str]:
    from runtime.commanding import load
    from runtime.domain.directory import DIRECTORY_STREAM, Directory, evolve_directory

    directory, _ = await load(store, tenant, DIRECTORY_STREAM, Directory(), evolve_directory)
    return {agent_id: agent.name for agent_id, agent in directory.agents.items() if agent.name}


def _who(agent_id: str | None, names: dict[str, str]) -> str:
    if not agent_id:
        return ""
    name = names.get(agent_id)
    return f"{agent_id} ({name})" if name and name != agent_id else agent_id


@dataclass
class _Loaded:
    records: list[RecordedEvent]
    names: dict[str, str]


async def _load_customer(cli: Cli, tenant: str, customer: str) -> _Loaded:
    async def work(store: EventStore) -> _Loaded:
        records = await store.read_stream(tenant, customer_stream(customer))
        if not records:
            raise fail(cli, f"no customer {customer!r} in tenant {tenant!r}")
        return _Loaded(records, await _names(store, tenant))

    return await _with_store(cli, work)


def _audit_document(history: History, report: ChainReport, tenant: str, names: dict[str, str]) -> dict[str, Any]:
    fates = {p.promise_id: p.label for p in history.promises}
    return {
        "tenant_id": tenant,
        "customer_id": history.customer_id,
        "version": history.state.version,
        "owner": history.state.owner.agent_id if history.state.owner else None,
        "chain": report.as_dict(),
        "agents": {agent_id: names[agent_id] for agent_id in sorted(names)},
        "timeline": [
            {**e.as_dict(), "promise_fate": fates.get(e.promise_id) if e.promise_id else None} for e in history.entries
        ],
        "ownership": [p.as_dict() for p in history.periods],
        "promises": [p.as_dict() for p in history.promises],
    }


TIMELINE_COLUMNS = (
    "version",
    "occurred_at",
    "event_type",
    "actor",
    "summary",
    "owner_after",
    "promise_id",
    "promise_fate",
    "event_id",
)


def _print_audit_table(cli: Cli, document: dict[str, Any], history: History, names: dict[str, str]) -> None:
    owner = history.state.owner
    chain = document["chain"]
    status = "[green]chain ok[/]" if chain["status"] == "ok" else "[bold red]chain BROKEN[/]"
    cli.out.print(
        f"[bold]Customer {escape(history.customer_id)}[/] (tenant {escape(document['tenant_id'])}): "
        f"{len(history.entries)} events, {status}, head {chain['head_hash'][:16]}…"
    )
    if owner:
        cli.out.print(
            f"Owner now: [bold]{escape(_who(owner.agent_id, names))}[/] since {_when(owner.since)} ({owner.cause})"
        )

    table = Table(title="Timeline", show_lines=False)
    for column in ("#", "time", "event", "actor", "what", "owner after"):
        table.add_column(column, overflow="fold")
    for row in document["timeline"]:
        what = row["summary"] + (f" [{row['promise_fate']}]" if row.get("promise_fate") else "")
        table.add_row(
            str(row["version"]),
            _when(datetime.fromisoformat(row["occurred_at"])),
            row["event_type"],
            row["actor"],
            what,
            _who(row["owner_after"], names),
        )
    cli.out.print(table)

    periods = Table(title="Ownership")
    for column in ("owner", "from", "to", "cause", "made owner by"):
        periods.add_column(column, overflow="fold")
    for period in history.periods:
        periods.add_row(
            _who(period.owner, names),
            _when(period.since),
            _when(period.until) or "now",
            period.cause + (f" ({period.handoff_id})" if period.handoff_id else ""),
            f"v{period.cause_version} {period.cause_event_id}",
        )
    cli.out.print(periods)

    promises = Table(title="Promises")
    for column in ("promise", "promised by", "due", "responsible", "fate", "settled", "escalations"):
        promises.add_column(column, overflow="fold")
    for fate in history.promises:
        escalations = ", ".join(f"L{e.level}→{_who(e.to_agent_id, names) or 'nobody'}" for e in fate.escalations)
        promises.add_row(
            fate.promise_id,
            _who(fate.promised_by, names),
            _when(fate.due_at),
            _who(fate.responsible_id, names),
            FATE_LABELS[fate.fate],
            _when(fate.resolved_at or fate.broken_at),
            escalations,
        )
    if history.promises:
        cli.out.print(promises)
    else:
        cli.out.print("No promises.")


@app.command()
def audit(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="The customer's id.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant (default: BATON_DEFAULT_TENANT).")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Show the state at this moment (ISO 8601, e.g. 2026-11-20T10:00Z).")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
) -> None:
    """A customer's history: every event, the owner after each, ownership periods and promise fates."""
    cli = _cli(ctx)
    output = _format(cli, output)
    tenant = tenant or cli.settings.default_tenant
    moment = _moment(cli, as_of) if as_of is not None else None
    loaded = _run(_load_customer(cli, tenant, customer))
    report = verify_stream(loaded.records, tenant, customer_stream(customer))
    envelopes = [to_envelope(r) for r in loaded.records]
    if moment is not None:
        _print_as_of(cli, owner_as_of(envelopes, moment, customer), report, tenant, customer, loaded.names, output)
    else:
        history = replay(envelopes, customer)
        document = _audit_document(history, report, tenant, loaded.names)
        if output == "json":
            _print_json(cli, document)
        elif output == "csv":
            _print_text(_csv(document["timeline"], TIMELINE_COLUMNS))
        else:
            _print_audit_table(cli, document, history, loaded.names)
    if not report.ok:
        cli.err.print(Text(_broken_line(report), style="bold red"))
        raise typer.Exit(EXIT_BROKEN)


def _print_as_of(
    cli: Cli,
    at: Any,
    report: ChainReport,
    tenant: str,
    customer: str,
    names: dict[str, str],
    output: str,
) -> None:
    document = {"tenant_id": tenant, "customer_id": customer, **at.as_dict(), "chain": report.as_dict()}
    if document["owner"] is not None:
        document["owner"]["name"] = names.get(document["owner"]["agent_id"])
    if output == "json":
        _print_json(cli, document)
        return
    cause = at.cause_event
    row = {
        "as_of": document["as_of"],
        "owner": at.owner,
        "owner_name": names.get(at.owner or ""),
        "since": at.since.isoformat() if at.since else None,
        "cause": at.state.owner.cause if at.state.owner else None,
        "cause_event_id": cause.event_id if cause else None,
        "cause_event_type": cause.event_type if cause else None,
        "cause_version": cause.version if cause else None,
        "events_applied": at.events_applied,
    }
    if output == "csv":
        _print_text(_csv([row], list(row)))
        return
    table = Table(title=Text(f"Customer {customer} as of {_when(at.moment)}"), show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    if at.owner is None:
        table.add_row("owner", "nobody yet (before the first contact)")
    else:
        table.add_row("owner", _who(at.owner, names))
        table.add_row("since", _when(at.since))
        why = at.state.owner.cause
        table.add_row("why", why + (f" ({at.state.owner.handoff_id})" if at.state.owner.handoff_id else ""))
        if cause is not None:
            table.add_row("made owner by", f"v{cause.version} {cause.event_type} {cause.event_id}: {cause.summary}")
    table.add_row("events up to then", str(at.events_applied))
    promises = ", ".join(f"{p.promise_id} ({p.status}, due {_when(p.due_at)})" for p in at.state.open_promises)
    table.add_row("open promises", promises or "none")
    cli.out.print(table)


# --- verify / export ------------------------------------------------------------------------


def _report_verdict(cli: Cli, report: ChainReport, output: str) -> None:
    if output == "json":
        _print_json(cli, report.as_dict())
    elif output == "csv":
        row = report.as_dict()
        broken = row.pop("broken") or {}
        row.update({f"broken_{k}": v for k, v in broken.items()})
        _print_text(_csv([row], list(row)))
    elif report.ok:
        cli.out.print(
            f"[green]ok[/]: {escape(report.tenant_id)}/{escape(report.stream)}: {report.events} events chain to head "
            f"v{report.head_version} {report.head_hash}"
        )
    if not report.ok:
        cli.err.print(Text(_broken_line(report), style="bold red"))
        raise typer.Exit(EXIT_BROKEN)


async def _verify_all(cli: Cli, store: EventStore) -> StoreReport:
    with Progress(
        SpinnerColumn(),
        TextColumn("verifying"),
        BarColumn(),
        TextColumn("{task.fields[events]} events, {task.fields[streams]} streams"),
        TimeElapsedColumn(),
        console=cli.err,
        transient=False,
    ) as progress:
        task = progress.add_task("verify", total=None, events=0, streams=0)

        def advance(events: int, streams: int) -> None:
            progress.update(task, events=events, streams=streams)

        report = await verify_store(store, progress=advance)
        progress.update(task, total=1, completed=1, events=report.events, streams=report.streams)
    return report


@app.command()
def verify(
    ctx: typer.Context,
    customer: Annotated[str | None, typer.Argument(help="The customer whose chain to verify.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant (default: BATON_DEFAULT_TENANT).")] = None,
    all_streams: Annotated[bool, typer.Option("--all", help="Verify every stream of the store.")] = False,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Verify an export bundle (no database needed).")
    ] = None,
    head: Annotated[
        str | None, typer.Option("--head", help="A head hash kept from an earlier export: it must be in the chain.")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
) -> None:
    """Recompute hash chains; exit 1 and name the first broken event (changed, removed, reordered)."""
    cli = _cli(ctx)
    output = _format(cli, output)
    chosen = sum((customer is not None, all_streams, bundle is not None))
    if chosen != 1:
        raise fail(cli, "name exactly one of: a CUSTOMER, --all, or --bundle FILE")
    if bundle is not None:
        try:
            text = bundle.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(cli, f"cannot read {bundle}: {exc}") from exc
        try:
            report = verify_bundle(text.splitlines(), head)
        except BundleError as exc:
            cli.err.print(Text(f"bundle {bundle} is not intact: {exc}", style="bold red"))
            raise typer.Exit(EXIT_BROKEN) from exc
        _report_verdict(cli, report, output)
        return
    if all_streams:
        store_report = _run(_with_store(cli, lambda store: _verify_all(cli, store)))
        _print_store_report(cli, store_report, output)
        if not store_report.ok:
            raise typer.Exit(EXIT_BROKEN)
        return
    assert customer is not None
    tenant = tenant or cli.settings.default_tenant
    loaded = _run(_load_customer(cli, tenant, customer))
    _report_verdict(cli, verify_stream(loaded.records, tenant, customer_stream(customer), head), output)


def _print_store_report(cli: Cli, report: StoreReport, output: str) -> None:
    if output == "json":
        _print_json(
            cli,
            {
                "status": "ok" if report.ok else "broken",
                "events": report.events,
                "streams": report.streams,
                "broken": [r.as_dict() for r in report.broken],
            },
        )
    elif output == "csv":
        rows = [
            {"tenant_id": r.tenant_id, "stream": r.stream, **(r.broken.as_dict() if r.broken else {})}
            for r in report.broken
        ]
        _print_text(_csv(rows, ("tenant_id", "stream", "kind", "version", "event_id", "event_type", "detail")))
    elif report.ok:
        cli.out.print(f"[green]ok[/]: {report.events} events in {report.streams} streams, every chain holds")
    for broken in report.broken:
        cli.err.print(Text(_broken_line(broken), style="bold red"))
    if not report.ok:
        cli.err.print(Text(f"{len(report.broken)} of {report.streams} streams are broken", style="bold red"))


@app.command()
def export(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="The customer to export.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant (default: BATON_DEFAULT_TENANT).")] = None,
) -> None:
    """Write the customer's stored events as JSON lines plus a last line with the head hash (to stdout)."""
    cli = _cli(ctx)
    tenant = tenant or cli.settings.default_tenant
    loaded = _run(_load_customer(cli, tenant, customer))
    stream = customer_stream(customer)
    for line in export_lines(loaded.records, tenant, stream, _utc_now()):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    report = verify_stream(loaded.records, tenant, stream)
    if not report.ok:
        cli.err.print(Text(f"exported, but {_broken_line(report)}", style="bold red"))
        raise typer.Exit(EXIT_BROKEN)
    cli.err.print(f"exported {report.events} events; head v{report.head_version} {report.head_hash}")


# --- rebuild ----------------------------------------------------------------------------------


def service_projections() -> dict[str, list[Any]]:
    """The projections each service's consumers keep (as wired in its bootstrap)."""
    from runtime.domain.projections import DirectoryProjection, OwnershipProjection
    from services.followup.domain import FollowupProjection

    return {
        "intake": [OwnershipProjection()],
        "routing": [OwnershipProjection(), DirectoryProjection()],
        "followup": [FollowupProjection(), DirectoryProjection()],
    }


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def _running_services(settings: Settings, services: Sequence[str]) -> list[str]:
    ports = {"intake": settings.intake_port, "routing": settings.routing_port, "followup": settings.followup_port}
    return [f"{s} ({settings.host}:{ports[s]})" for s in services if _answers(settings.host, ports[s])]


async def _rebuild(cli: Cli, services: Sequence[str]) -> list[dict[str, Any]]:
    from runtime.compose import open_view_store
    from runtime.rebuild import RebuildStats, rebuild_view

    projections = service_projections()
    results: list[dict[str, Any]] = []

    async def work(store: EventStore) -> None:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[events]} events read, {task.fields[applied]} applied, {task.fields[docs]} docs"),
            TimeElapsedColumn(),
            console=cli.err,
        ) as progress:
            for service in services:
                views = open_view_store(cli.settings, service, _utc_now)
                try:
                    for projection in projections[service]:
                        task = progress.add_task(
                            f"{service}/{projection.view}", total=None, events=0, applied=0, docs=0
                        )

                        def advance(stats: RebuildStats, task: Any = task) -> None:
                            progress.update(
                                task, events=stats.events_read, applied=stats.events_applied, docs=stats.documents
                            )

                        stats = await rebuild_view(store, views, projection, progress=advance)
                        advance(stats)
                        progress.update(task, total=1, completed=1)
                        results.append(
                            {
                                "service": service,
                                "view": stats.view,
                                "events_read": stats.events_read,
                                "events_applied": stats.events_applied,
                                "documents": stats.documents,
                            }
                        )
                finally:
                    await views.close()

    await _with_store(cli, work)
    return results


@app.command()
def rebuild(
    ctx: typer.Context,
    service: Annotated[
        list[str] | None, typer.Option("--service", help="Only this service's views (repeatable).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if a service answers on its port (unsafe, see docs).")
    ] = False,
    output: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
) -> None:
    """Drop and rebuild every service view from the event store. Stop the services first."""
    cli = _cli(ctx)
    output = _format(cli, output)
    services = list(dict.fromkeys(service or SERVICES))
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise fail(cli, f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    running = _running_services(cli.settings, services)
    if running and not force:
        raise fail(
            cli,
            f"still running: {', '.join(running)}. Stop the services before a rebuild "
            "(their consumers write the same views), or pass --force.",
        )
    if not yes and not typer.confirm(f"Drop and rebuild the views of {', '.join(services)}?", err=True):
        raise fail(cli, "nothing rebuilt")
    results = _run(_rebuild(cli, services))
    if output == "json":
        _print_json(cli, results)
    elif output == "csv":
        _print_text(_csv(results, ("service", "view", "events_read", "events_applied", "documents")))
    else:
        table = Table(title="Rebuilt views")
        for column in ("service", "view", "events read", "events applied", "documents"):
            table.add_column(column)
        for row in results:
            table.add_row(
                row["service"], row["view"], str(row["events_read"]), str(row["events_applied"]), str(row["documents"])
            )
        cli.out.print(table)
