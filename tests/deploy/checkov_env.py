"""checkov in a virtual environment of its own, beside the project's.

checkov pins some packages older than requirements.lock does (``packaging<24``) and pulls
about a hundred packages (~290 MB), so it does not go into the project's environment: it
lives in ``<project venv>/tools/checkov``, installed from the pinned
``checkov-requirements.txt`` beside this file, and is re-made whenever that file changes.

``python -m tests.deploy.checkov_env`` creates or updates it (about 40 s the first time)
and prints the path of its ``checkov``; the deploy tests call :func:`ensure` themselves.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("checkov-requirements.txt")
REPO = Path(__file__).resolve().parents[2]


def tools_dir() -> Path:
    """Where checkov's environment lives: under the active virtual environment (or .venv)."""
    base = Path(sys.prefix) if sys.prefix != sys.base_prefix else REPO / ".venv"
    return base / "tools" / "checkov"


def _digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def checkov_path() -> Path:
    return tools_dir() / "bin" / "checkov"


def is_current() -> bool:
    """Whether the environment exists and was made from the current requirements."""
    marker = tools_dir() / ".requirements-sha256"
    return checkov_path().is_file() and marker.is_file() and marker.read_text().strip() == _digest()


def ensure(quiet: bool = True) -> Path:
    """Create or update checkov's environment if needed; the path of its checkov."""
    venv = tools_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / "checkov.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time
        if is_current():
            return checkov_path()
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        subprocess.run([*pip, *(["-q"] if quiet else []), "-r", str(REQUIREMENTS)], check=True)
        (venv / ".requirements-sha256").write_text(_digest() + "\n")
    return checkov_path()


if __name__ == "__main__":
    print(ensure(quiet=False))
