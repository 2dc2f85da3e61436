"""The ``make run`` launcher: its helpers, its supervisor, and the real thing end to end.

The end-to-end tests run ``python -m runtime.devrun`` as a subprocess with a real
nats-server but fake services (tiny HTTP servers written to a temporary folder and
passed with ``--service NAME=MODULE``), then stop it the way a person would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.config import Settings
from runtime.devrun import (
    SERVICES,
    Console,
    ServiceSpec,
    Supervisor,
    banner,
    busy_ports,
    client_host,
    nats_port,
    parse_service_overrides,
    service_specs,
)
from runtime.natsserver import NatsServer, free_port

REPO = Path(__file__).resolve().parents[1]


# --- helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("nats://127.0.0.1:4222", 4222),
        ("nats://127.0.0.1:5333", 5333),
        ("nats://user:secret@nats.example:7422", 7422),
        ("tls://a:4001, nats://b:4002", 4001),
        ("127.0.0.1:6222", 6222),
        ("nats://localhost", 4222),
        ("localhost", 4222),
        ("", 4222),
    ],
)
def test_nats_port(url: str, port: int) -> None:
    assert nats_port(url) == port


def test_nats_port_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="invalid port"):
        nats_port("nats://host:notaport")


def test_client_host() -> None:
    assert client_host("0.0.0.0") == "127.0.0.1"
    assert client_host("::") == "127.0.0.1"
    assert client_host("127.0.0.1") == "127.0.0.1"
    assert client_host("::1") == "[::1]"
    assert client_host("myhost") == "myhost"


def test_service_specs_take_ports_from_settings() -> None:
    settings = Settings(intake_port=9100, routing_port=9101, followup_port=9102)
    specs = service_specs(settings)
    assert specs == [
        ServiceSpec("intake", "services.intake", 9100),
        ServiceSpec("routing", "services.routing", 9101),
        ServiceSpec("followup", "services.followup", 9102),
    ]
    assert specs[0].command("py") == ["py", "-m", "services.intake"]
    overridden = service_specs(settings, {"routing": "fake.routing"})
    assert [s.module for s in overridden] == [
        "services.intake",
        "fake.routing",
        "services.followup",
    ]


def test_parse_service_overrides() -> None:
    assert parse_service_overrides(["intake=a.b", "followup=c"]) == {
        "intake": "a.b",
        "followup": "c",
    }
    with pytest.raises(ValueError, match="NAME=MODULE"):
        parse_service_overrides(["intake"])
    with pytest.raises(ValueError, match="unknown service"):
        parse_service_overrides(["billing=x"])


def test_banner_says_where_everything_is(tmp_path: Path) -> None:
    specs = service_specs(Settings())
    nats = NatsServer(
        process=None,  # type: ignore[arg-type]
        url="nats://127.0.0.1:4222",
        monitor_url="http://127.0.0.1:8222",
        config_path=tmp_path / "x.conf",
    )
    text = banner(specs, "0.0.0.0", nats, tmp_path)
    for expected in (
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/docs",
        "http://127.0.0.1:8001",
        "http://127.0.0.1:8002",
        "nats://127.0.0.1:4222",
        str(tmp_path),
        "curl -X POST localhost:8000/v1/customers/cust-1/contacts "
        "-H 'content-type: application/json' -d '{\"agent_id\":\"alice\"}'",
        "curl localhost:8000/v1/customers/cust-1",
    ):
        assert expected in text


def test_busy_ports() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        free = free_port()
        assert busy_ports({"a": taken, "b": free}) == [f"a port {taken}"]


class _ClosedPipe:
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_console_survives_a_closed_pipe() -> None:
    # `make run | tee log` then Ctrl-C: tee dies first; the shutdown must still happen.
    console = Console(_ClosedPipe())  # type: ignore[arg-type]
    console.say("stopping services ...")
    console.say("stopped.")
    assert console.broken


# --- the supervisor -------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait until ``pid`` has exited."""
    return _wait_for(lambda: not _alive(pid), timeout)


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# A child that prints, starts a grandchild and records both pids. IGNORE_TERM makes it
# shrug off SIGTERM so that only SIGKILL stops it.
CHILD = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    if os.environ.get("IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.environ["PID_FILE"], "w") as f:
        f.write(f"{os.getpid()} {grandchild.pid}")
    print("hello from child", flush=True)
    time.sleep(600)
    """
)


def _start_child(sup: Supervisor, tmp_path: Path, name: str, **env: str) -> tuple[int, int]:
    pid_file = tmp_path / f"{name}.pid"
    sup.start(name, [sys.executable, "-c", CHILD], {**os.environ, "PID_FILE": str(pid_file), **env})
    assert _wait_for(lambda: pid_file.exists() and pid_file.read_text().count(" ") == 1)
    pid, grandchild = (int(x) for x in pid_file.read_text().split())
    return pid, grandchild


class _Capture:
    def __init__(self) -> None:
        self.text = ""
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        with self._lock:
            self.text += s
        return len(s)

    def flush(self) -> None:
        pass


def test_supervisor_prefixes_output_logs_it_and_stops_the_whole_group(tmp_path: Path) -> None:
    out = _Capture()
    sup = Supervisor(Console(out), tmp_path / "logs")  # type: ignore[arg-type]
    pid, grandchild = _start_child(sup, tmp_path, "svc")
    assert _wait_for(lambda: "svc      | hello from child" in out.text)
    assert sup.dead() == []
    started = time.monotonic()
    sup.stop_all(timeout=5)
    assert time.monotonic() - started < 5
    assert not _alive(pid)
    assert _wait_for(lambda: not _alive(grandchild)), "grandchild survived: orphan"
    assert "hello from child" in (tmp_path / "logs" / "svc.log").read_text()


def test_supervisor_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    out = _Capture()
    sup = Supervisor(Console(out))  # type: ignore[arg-type]
    stubborn, stubborn_child = _start_child(sup, tmp_path, "stubborn", IGNORE_TERM="1")
    polite, _ = _start_child(sup, tmp_path, "polite")
    started = time.monotonic()
    sup.stop_all(timeout=1.0)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5
    assert "stubborn did not stop within 1s: SIGKILL" in out.text
    for pid in (stubborn, stubborn_child, polite):
        assert _gone(pid)


def test_supervisor_reports_dead_children(tmp_path: Path) -> None:
    sup = Supervisor(Console(_Capture()))  # type: ignore[arg-type]
    sup.start("quitter", [sys.executable, "-c", "raise SystemExit(3)"])
    assert _wait_for(lambda: [c.name for c in sup.dead()] == ["quitter"])
    assert sup.dead()[0].process.returncode == 3
    sup.stop_all(timeout=1)


# --- end to end: python -m runtime.devrun with fake services ---------------------------

FAKE_SERVICE = textwrap.dedent(
    """
    import os, signal, subprocess, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    def serve(name):
        port = int(os.environ[f"BATON_{name.upper()}_PORT"])
        mode = os.environ.get(f"FAKE_{name.upper()}", "")
        record = os.path.join(os.environ["FAKE_DIR"], name)
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(record + ".pid", "w") as f:
            f.write(f"{os.getpid()} {grandchild.pid}")
        with open(record + ".env", "w") as f:
            f.write(os.environ["BATON_NATS_URL"])

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                ok = self.path == "/readyz"
                self.send_response(200 if ok else 404)
                self.end_headers()
                self.wfile.write(b"ok" if ok else b"")

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        print(f"{name} listening on {port}", flush=True)
        if mode == "die":
            threading.Timer(1.5, lambda: os._exit(3)).start()
        server.serve_forever()
        print(f"{name} stopped", flush=True)
    """
)


class Launcher:
    """``python -m runtime.devrun`` in its own session, its output collected."""

    def __init__(self, tmp_path: Path, **fake_env: str) -> None:
        self.dir = tmp_path / "fakes"
        self.dir.mkdir()
        (self.dir / "fake_common.py").write_text(FAKE_SERVICE)
        overrides = []
        for name in SERVICES:
            (self.dir / f"fake_{name}.py").write_text(
                f"from fake_common import serve\nserve({name!r})\n"
            )
            overrides += ["--service", f"{name}=fake_{name}"]
        self.nats_port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.dir), str(REPO)]),
            "FAKE_DIR": str(self.dir),
            "BATON_DATA_DIR": str(tmp_path / "data"),
            "BATON_NATS_URL": f"nats://127.0.0.1:{self.nats_port}",
            "BATON_INTAKE_PORT": str(free_port()),
            "BATON_ROUTING_PORT": str(free_port()),
            "BATON_FOLLOWUP_PORT": str(free_port()),
            **fake_env,
        }
        self.data_dir = tmp_path / "data"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runtime.devrun",
                "--nats-monitor-port",
                str(free_port()),
                "--ready-timeout",
                "30",
                "--stop-timeout",
                "5",
                *overrides,
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._out: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            self._out.append(raw.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self._out)

    def wait_output(self, text: str, timeout: float = 60.0) -> None:
        if not _wait_for(lambda: text in self.output or self.process.poll() is not None, timeout):
            pytest.fail(f"no {text!r} after {timeout}s:\n{self.output}")
        _wait_for(lambda: text in self.output, 1.0)
        assert text in self.output, f"launcher exited without {text!r}:\n{self.output}"

    def pids(self) -> list[int]:
        found = []
        for name in SERVICES:
            found += [int(x) for x in (self.dir / f"{name}.pid").read_text().split()]
        return found

    def wait(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def launcher_factory(tmp_path: Path) -> Iterator[Callable[..., Launcher]]:
    started: list[Launcher] = []

    def make(**fake_env: str) -> Launcher:
        launcher = Launcher(tmp_path, **fake_env)
        started.append(launcher)
        return launcher

    yield make
    for launcher in started:
        launcher.kill()
        pid_files = list(launcher.dir.glob("*.pid"))
        for pid_file in pid_files:  # never leave a fake behind, even when a test failed
            for pid in (int(x) for x in pid_file.read_text().split()):
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.nats
def test_ctrl_c_stops_everything(launcher_factory: Callable[..., Launcher]) -> None:
    launcher: Launcher = launcher_factory()
    launcher.wait_output("Press Ctrl-C to stop.")
    out = launcher.output
    assert "Baton is running." in out
    assert f"NATS            nats://127.0.0.1:{launcher.nats_port}" in out
    assert "/docs" in out and "curl localhost:" in out
    assert "intake   | intake listening on" in out
    nats_url = (launcher.dir / "intake.env").read_text()
    assert nats_url == f"nats://127.0.0.1:{launcher.nats_port}"
    pids = launcher.pids()
    assert all(_alive(pid) for pid in pids)
    assert (launcher.data_dir / "nats" / "jetstream").is_dir()

    # Ctrl-C in a terminal signals the whole foreground process group.
    os.killpg(launcher.process.pid, signal.SIGINT)
    assert launcher.wait() == 0, launcher.output
    for pid in pids:
        assert _gone(pid), f"pid {pid} survived:\n{launcher.output}"
    assert not _port_open(launcher.nats_port)
    assert "intake   | intake stopped" in launcher.output
    assert (launcher.data_dir / "logs" / "routing.log").read_text().startswith("routing listening")


@pytest.mark.slow
@pytest.mark.nats
def test_a_dead_service_stops_everything_with_an_error(
    launcher_factory: Callable[..., Launcher],
) -> None:
    launcher: Launcher = launcher_factory(FAKE_ROUTING="die")
    code = launcher.wait(60)
    out = launcher.output
    assert code != 0, out
    assert "routing exited" in out, out
    assert "status 3" in out, out
    for pid in launcher.pids():
        assert _gone(pid), f"pid {pid} survived:\n{out}"
    assert not _port_open(launcher.nats_port)


@pytest.mark.slow
@pytest.mark.nats
def test_sigterm_stops_everything(launcher_factory: Callable[..., Launcher]) -> None:
    launcher: Launcher = launcher_factory()
    launcher.wait_output("Press Ctrl-C to stop.")
    pids = launcher.pids()
    launcher.process.send_signal(signal.SIGTERM)  # the launcher only, as `kill <pid>` does
    assert launcher.wait() == 0, launcher.output
    for pid in pids:
        assert _gone(pid), f"pid {pid} survived"
    assert not _port_open(launcher.nats_port)
