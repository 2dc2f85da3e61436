"""Headless Chromium for page tests, and a tiny in-thread HTTP server for an ASGI app."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "chromium is not installed (Debian/Ubuntu: apt-get install -y chromium)"


def chromium() -> str | None:
    """The path of a Chromium-compatible browser, or None."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class Rendered:
    """The DOM after the page loaded and its scripts ran, and what the console said."""

    dom: str
    console: list[str]

    def body_attribute(self, name: str) -> str | None:
        match = re.search(r"<body\b[^>]*\b" + re.escape(name) + r'="([^"]*)"', self.dom)
        return match.group(1) if match else None


def render(url: str, profile: Path, timeout: float = 60.0) -> Rendered:
    """Load ``url`` in headless Chromium; the DOM it dumps and its console messages."""
    binary = chromium()
    assert binary is not None, INSTALL_HINT
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"chromium exited with {done.returncode}:\n{stderr[-3000:]}"
    console = [line for line in stderr.splitlines() if ":CONSOLE" in line]
    return Rendered(done.stdout.decode(errors="replace"), console)


@contextmanager
def serve(app: Any, port: int) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a background thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
