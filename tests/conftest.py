"""Fixtures shared by the suites: a real NATS server started on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.natsserver import NatsServer, start_nats


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real nats-server with JetStream for the session; tests isolate by stream name."""
    data: Path = tmp_path_factory.mktemp("nats")
    server = start_nats(data, log_path=data / "nats.log")
    yield server
    server.stop()
