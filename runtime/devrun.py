"""``make run``: start NATS and the three services on this machine, stop them on Ctrl-C.

Run as ``python -m runtime.devrun``. It reads :class:`runtime.config.Settings` once,
starts a local nats-server with JetStream (data under ``<data_dir>/nats``, so it
survives restarts), then ``python -m services.intake``, ``services.routing`` and
``services.followup`` as child processes, with the environment passed through and
``BATON_NATS_URL`` pointing at that server. It waits until every service answers
``GET /readyz`` with 200 and prints where everything is. Every child (nats-server too)
runs in a session and process group of its own, so a Ctrl-C in the terminal reaches only
the launcher, which then stops the services first and NATS last.

Service output goes to the terminal, each line prefixed with the service's name, and
to ``<data_dir>/logs/<service>.log``; nats-server logs to ``<data_dir>/logs/nats-server.log``.

Ctrl-C, SIGTERM or SIGHUP stops every process it started: SIGTERM to each process
group, up to 10 seconds' grace, then SIGKILL (grandchildren included: no orphans). If a
child dies on its own, it says which one and shuts everything down with a non-zero exit
status.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from runtime.config import Settings
from runtime.natsserver import NatsServer, start_nats

DEFAULT_NATS_PORT = 4222
DEFAULT_NATS_MONITOR_PORT = 8222
STOP_TIMEOUT_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.2

# name -> module run with ``python -m``; the port comes from Settings.<name>_port.
SERVICES: dict[str, str] = {
    "intake": "services.intake",
    "routing": "services.routing",
    "followup": "services.followup",
}


# --- pure helpers ---------------------------------------------------------------------


def nats_port(nats_url: str, default: int = DEFAULT_NATS_PORT) -> int:
    """The port of the first server in a (comma-separated) NATS URL, else ``default``.

    >>> nats_port("nats://127.0.0.1:4333,nats://10.0.0.2:4222")
    4333
    >>> nats_port("localhost")
    4222
    """
    first = nats_url.split(",", maxsplit=1)[0].strip()
    if not first:
        return default
    if "://" not in first:
        first = f"nats://{first}"
    try:
        port = urlsplit(first).port
    except ValueError as exc:
        raise ValueError(f"invalid port in NATS URL {nats_url!r}") from exc
    return port if port is not None else default


def client_host(bind_host: str) -> str:
    """The host a client on this machine uses to reach a server bound to ``bind_host``."""
    if bind_host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    if ":" in bind_host and not bind_host.startswith("["):
        return f"[{bind_host}]"
    return bind_host


@dataclass(frozen=True)
class ServiceSpec:
    """One child service: its name, the module run with ``python -m``, its HTTP port."""

    name: str
    module: str
    port: int

    def base_url(self, host: str) -> str:
        return f"http://{client_host(host)}:{self.port}"

    def command(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", self.module]


def parse_service_overrides(values: Iterable[str]) -> dict[str, str]:
    """``["intake=my.fake"]`` -> ``{"intake": "my.fake"}`` (the ``--service`` option)."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, module = value.partition("=")
        if not sep or not name or not module:
            raise ValueError(f"--service expects NAME=MODULE, got {value!r}")
        if name not in SERVICES:
            raise ValueError(f"unknown service {name!r}; expected one of {', '.join(SERVICES)}")
        out[name] = module
    return out


def service_specs(settings: Settings, overrides: Mapping[str, str] | None = None) -> list[ServiceSpec]:
    """The services to start, in start order, with their ports from ``settings``."""
    modules = {**SERVICES, **(overrides or {})}
    return [ServiceSpec(name, modules[name], int(getattr(settings, f"{name}_port"))) for name in SERVICES]


def busy_ports(ports: Mapping[str, int], host: str = "127.0.0.1") -> list[str]:
    """Descriptions of the ``ports`` (label -> port) that something already listens on."""
    busy = []
    for label, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                busy.append(f"{label} port {port}")
    return busy


def banner(specs: Sequence[ServiceSpec], host: str, nats: NatsServer, data_dir: Path) -> str:
    """What ``make run`` prints once everything is ready."""
    by_name = {s.name: s for s in specs}
    api = by_name["intake"].base_url(host)
    port = by_name["intake"].port
    lines = [
        "",
        "Baton is running.",
        f"  API (intake)    {api}",
        f"  API docs        {api}/docs",
        f"  routing         {by_name['routing'].base_url(host)}",
        f"  followup        {by_name['followup'].base_url(host)}",
        f"  NATS            {nats.url}  (monitoring {nats.monitor_url})",
        f"  data folder     {data_dir}",
        f"  logs            {data_dir / 'logs'}",
        "",
        "Open a contact, then read the customer:",
        f"  curl -X POST localhost:{port}/v1/customers/cust-1/contacts "
        "-H 'content-type: application/json' -d '{\"agent_id\":\"alice\"}'",
        f"  curl localhost:{port}/v1/customers/cust-1",
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when ``GET url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, http.client.HTTPException):
        return False


# --- output -------------------------------------------------------------------------


class Console:
    """Serialises writes to the terminal from the log-pump threads and the main thread."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = False

    def write(self, text: str) -> None:
        """Write and flush; never raises (a closed terminal or pipe must not stop a shutdown)."""
        stream = self._stream or sys.stdout
        with self._lock:
            if self.broken:
                return
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                self.broken = True

    def say(self, message: str) -> None:
        self.write(f"devrun   | {message}\n")


def _pump(source: IO[bytes], prefix: str, console: Console, log_file: IO[bytes] | None) -> None:
    """Copy a child's output line by line to the console (prefixed) and its log file."""
    with contextlib.suppress(ValueError, OSError):
        for raw in iter(source.readline, b""):
            if log_file is not None:
                log_file.write(raw)
                log_file.flush()
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            console.write(f"{prefix}| {line}\n")


# --- the supervisor -----------------------------------------------------------------


@dataclass
class Child:
    """A started child process."""

    name: str
    process: subprocess.Popen[bytes]
    threads: list[threading.Thread] = field(default_factory=list)
    log_file: IO[bytes] | None = None


class Supervisor:
    """Starts child processes in their own process groups and stops all of them.

    Each child is the leader of a new session (so a Ctrl-C in the terminal reaches only
    the launcher, which then stops the children in order), and ``stop_all`` signals the
    whole group, so grandchildren are stopped too.
    """

    def __init__(self, console: Console | None = None, log_dir: Path | None = None) -> None:
        self.console = console or Console()
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.stopping = False

    def start(self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        """Start ``command`` with its output prefixed by ``name``."""
        log_file = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_file = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        child = Child(name, process, log_file=log_file)
        assert process.stdout is not None
        pump = threading.Thread(
            target=_pump,
            args=(process.stdout, f"{name:<9}", self.console, log_file),
            name=f"log-{name}",
            daemon=True,
        )
        pump.start()
        child.threads.append(pump)
        self.children.append(child)
        return child

    def dead(self) -> list[Child]:
        """Children that have exited."""
        return [c for c in self.children if c.process.poll() is not None]

    def stop_all(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM every child's process group, wait up to ``timeout``, then SIGKILL."""
        self.stopping = True
        for child in reversed(self.children):
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.process.wait(remaining)
            except subprocess.TimeoutExpired:
                self.console.say(f"{child.name} did not stop within {timeout:g}s: SIGKILL")
        for child in self.children:
            # SIGKILL the group even when the leader has exited: no orphaned grandchildren.
            _signal_group(child.process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(5)
        for child in self.children:
            for thread in child.threads:
                thread.join(2)
            if child.process.stdout is not None:
                child.process.stdout.close()
            if child.log_file is not None:
                child.log_file.close()


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    """Send ``signum`` to the process group led by ``process`` (ignore it if gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


class StopRequested:
    """Set by SIGINT, SIGTERM or SIGHUP; the main loop checks it between short sleeps."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum


class StartupFailed(Exception):
    """A child died or did not become ready while starting."""


def wait_ready(
    spec: ServiceSpec,
    host: str,
    child: Child,
    *,
    console: Console,
    stop: Callable[[], bool],
    timeout: float = READY_TIMEOUT_SECONDS,
) -> bool:
    """Poll ``GET /readyz`` until 200; False if a stop was requested meanwhile."""
    url = f"{spec.base_url(host)}/readyz"
    started = time.monotonic()
    next_note = started + 5.0
    while not http_ok(url):
        if stop():
            return False
        code = child.process.poll()
        if code is not None:
            raise StartupFailed(f"{spec.name} exited with status {code} before it was ready")
        now = time.monotonic()
        if now - started > timeout:
            raise StartupFailed(f"{spec.name} not ready at {url} after {timeout:g}s")
        if now >= next_note:
            console.say(f"still waiting for {spec.name} ({now - started:.0f}s) ...")
            next_note = now + 5.0
        time.sleep(POLL_SECONDS)
    elapsed = time.monotonic() - started
    console.say(f"{spec.name} is ready at {spec.base_url(host)} ({elapsed:.1f}s)")
    return True


# --- main -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.devrun",
        description="Start NATS and Baton's three services locally; Ctrl-C stops them.",
    )
    parser.add_argument(
        "--nats-monitor-port",
        type=int,
        default=DEFAULT_NATS_MONITOR_PORT,
        help="nats-server's HTTP monitoring port (default %(default)s).",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=READY_TIMEOUT_SECONDS,
        help="Seconds each service may take to answer /readyz (default %(default)s).",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=STOP_TIMEOUT_SECONDS,
        help="Seconds of grace after SIGTERM before SIGKILL (default %(default)s).",
    )
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME=MODULE",
        help="Run MODULE instead of the real service NAME (for the launcher's own tests).",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    try:
        overrides = parse_service_overrides(args.service)
        settings = Settings()
        port = nats_port(settings.nats_url)
    except ValueError as exc:
        console.say(f"error: {exc}")
        return 2

    stop = StopRequested()
    stop.install()
    data_dir = settings.data_dir.resolve()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    specs = service_specs(settings, overrides)
    host = settings.host

    ports = {"NATS": port, "NATS monitoring": args.nats_monitor_port}
    ports |= {spec.name: spec.port for spec in specs}
    busy = busy_ports(ports)
    if busy:
        console.say(
            "error: already in use: " + ", ".join(busy) + ". Is another 'make run' running? "
            "Change ports with BATON_NATS_URL, BATON_INTAKE_PORT, BATON_ROUTING_PORT, "
            "BATON_FOLLOWUP_PORT."
        )
        return 1

    console.say(f"starting nats-server with JetStream on port {port} (data in {data_dir / 'nats'})")
    try:
        nats = start_nats(
            data_dir=data_dir / "nats",
            port=port,
            monitor_port=args.nats_monitor_port,
            log_path=log_dir / "nats-server.log",
            new_session=True,
        )
    except (OSError, RuntimeError) as exc:
        console.say(f"error: nats-server did not start: {exc} (see {log_dir / 'nats-server.log'})")
        return 1

    supervisor = Supervisor(console, log_dir)
    env = {
        **os.environ,
        "BATON_NATS_URL": nats.url,
        "BATON_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
        # Every service learns every port (the values Settings resolved here).
        **{f"BATON_{spec.name.upper()}_PORT": str(spec.port) for spec in specs},
    }
    status = 0
    try:
        status = _run(
            specs=specs,
            host=host,
            supervisor=supervisor,
            nats=nats,
            env=env,
            stop=stop,
            ready_timeout=args.ready_timeout,
            data_dir=data_dir,
        )
    finally:
        console.say("stopping services ...")
        supervisor.stop_all(args.stop_timeout)
        console.say("stopping nats-server ...")
        nats.stop(args.stop_timeout)
        console.say("stopped." if status == 0 else f"stopped (exit status {status}).")
    return status


def _run(
    *,
    specs: Sequence[ServiceSpec],
    host: str,
    supervisor: Supervisor,
    nats: NatsServer,
    env: Mapping[str, str],
    stop: StopRequested,
    ready_timeout: float,
    data_dir: Path,
) -> int:
    """Start the services, wait until ready, then watch them until a stop or a death."""
    console = supervisor.console
    children: dict[str, Child] = {}
    try:
        for spec in specs:
            if stop:
                return 0
            console.say(f"starting {spec.name}: python -m {spec.module} (port {spec.port})")
            children[spec.name] = supervisor.start(spec.name, spec.command(), env)
        for spec in specs:
            ready = wait_ready(
                spec,
                host,
                children[spec.name],
                console=console,
                stop=lambda: bool(stop),
                timeout=ready_timeout,
            )
            if not ready:
                return 0
    except StartupFailed as exc:
        console.say(f"error: {exc} (see {data_dir / 'logs'})")
        return 1

    console.write(banner(specs, host, nats, data_dir))
    while not stop:
        if nats.process.poll() is not None and not stop:
            code = nats.process.returncode
            console.say(f"error: nats-server exited unexpectedly with status {code}")
            return 1
        for child in supervisor.dead():
            console.say(
                f"error: {child.name} exited unexpectedly with status {child.process.returncode} "
                f"(log: {data_dir / 'logs' / (child.name + '.log')}); shutting everything down"
            )
            return 1
        time.sleep(POLL_SECONDS)
    return 0


def _exit(status: int) -> None:
    """Exit with ``status`` even when stdout is a pipe that has closed (``make run | tee``)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        # Point stdout at /dev/null so the interpreter's final flush cannot fail.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(status)


if __name__ == "__main__":
    _exit(main())
