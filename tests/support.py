"""Helpers for tests that run real processes: polling, free ports, service processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import httpx

from runtime.natsserver import free_port

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent


async def eventually(
    probe: Callable[[], Awaitable[T]],
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "condition not met",
) -> T:
    """Poll ``probe`` until it returns a truthy value (or raises no AssertionError)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = await probe()
            if value:
                return value
        except (AssertionError, httpx.HTTPError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s; last error: {last!r}")
        await asyncio.sleep(interval)


def unique_bus(prefix: str = "t") -> dict[str, str]:
    """Settings that give a test its own JetStream stream and subjects on a shared server."""
    tag = uuid4().hex[:12]
    return {"BATON_NATS_STREAM": f"EV_{tag}", "BATON_SUBJECT_PREFIX": f"{prefix}{tag}.events"}


@dataclass
class ServiceProcess:
    """One service running as a real process (``python -m services.<name>``)."""

    name: str
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **extra_env: str) -> ServiceProcess:
        env = {**os.environ, **self.env, **extra_env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    async def wait_ready(self, timeout: float = 30.0) -> None:
        async def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"{self.url}/readyz")).status_code == 200

        await eventually(ready, timeout, message=f"{self.name} ready\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class System:
    """NATS (shared) plus the three services, each in its own process, on one SQLite store."""

    data_dir: Path
    env: dict[str, str]
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @classmethod
    def create(cls, tmp_path: Path, nats_url: str, **overrides: str) -> System:
        data_dir = tmp_path / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in ("intake", "routing", "followup")}
        env = {
            "BATON_DATA_DIR": str(data_dir),
            "BATON_STORE_URL": f"sqlite:///{data_dir / 'baton.db'}",
            "BATON_NATS_URL": nats_url,
            "BATON_INTAKE_PORT": str(ports["intake"]),
            "BATON_ROUTING_PORT": str(ports["routing"]),
            "BATON_FOLLOWUP_PORT": str(ports["followup"]),
            "BATON_RELAY_INTERVAL_SECONDS": "0.2",
            "BATON_LOG_LEVEL": "INFO",
            **unique_bus(),
            **overrides,
        }
        system = cls(data_dir, env)
        for name, port in ports.items():
            system.services[name] = ServiceProcess(name, env, port, tmp_path / f"{name}.log")
        return system

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    async def start(self, *names: str) -> None:
        for name in names or tuple(self.services):
            self.services[name].start()
        for name in names or tuple(self.services):
            await self.services[name].wait_ready()

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()

    @property
    def store_url(self) -> str:
        return self.env["BATON_STORE_URL"]


def settings_env(env: dict[str, str]) -> Any:
    """Settings built from a test's environment mapping (not the process environment)."""
    from runtime.config import Settings

    fields = {k.removeprefix("BATON_").lower(): v for k, v in env.items() if k.startswith("BATON_")}
    return Settings(**fields)
