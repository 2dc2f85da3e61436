"""Import rules: the hexagon's walls, checked by parsing every module with ``ast``.

Every ``.py`` file under contracts/, runtime/ and services/ is parsed; every import is
checked, at module level or nested in a function, including ``importlib.import_module``
and ``__import__`` calls with a literal name:

1. contracts/ imports only the standard library, pydantic and itself.
2. Domain modules (``services/*/domain.py``, ``services/*/domain/``, ``runtime/domain*``)
   are pure: the standard library without I/O, clocks or randomness, pydantic, contracts
   and domain modules.
3. Only the MongoDB adapter imports pymongo/bson/motor, only the SQLite adapter imports
   sqlite3, only the bus plumbing and entry points import nats (nats-py).
4. Web and messaging frameworks and the concrete store adapters are imported only by
   entry points and composition roots; a service never imports another service, and
   runtime/ and contracts/ never import services/.

The rules are data (the constants below); ``test_checker_catches_planted_violations``
proves the checker can fail.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("contracts", "runtime", "services")

# --- the rules, as data ---------------------------------------------------------------
# Paths are globs relative to the repository root: '*' stays within one folder, '**'
# crosses folders.

STDLIB = frozenset(sys.stdlib_module_names)

CONTRACTS = ("contracts/**",)
CONTRACTS_MAY_IMPORT = frozenset({"pydantic", "contracts"})  # besides the standard library

DOMAIN = (
    "services/*/domain.py",
    "services/*/domain/**",
    "runtime/domain*.py",
    "runtime/domain*/**",
)
# Domain modules may import these packages (and any domain module) besides the stdlib...
DOMAIN_MAY_IMPORT = frozenset({"pydantic", "contracts"})
# ...except these standard modules: I/O, processes, clocks, randomness.
DOMAIN_FORBIDDEN_STDLIB = frozenset(
    {
        "asyncio",
        "socket",
        "ssl",
        "selectors",
        "sqlite3",
        "os",
        "shutil",
        "tempfile",
        "subprocess",
        "multiprocessing",
        "threading",
        "signal",
        "time",
        "random",
        "secrets",
        "urllib",
        "http",
        "smtplib",
        "ftplib",
    }
)

ENTRY_POINTS = (
    "services/*/__main__.py",
    "services/*/app.py",
    "services/*/bootstrap.py",
    "services/*/*_routes.py",  # HTTP routes a service's app mounts (e.g. webhook_routes.py)
    "runtime/devrun.py",
)
COMPOSITION_ROOTS = (
    "runtime/compose.py",  # the shared composition helper
    "runtime/web.py",  # shared HTTP entry-point plumbing
)
SYSTEM_ENTRY_POINTS = ("runtime/cli/**",)  # the `baton` CLI: an entry point for the whole system
# ...the only runtime/ files that may import services/, and only their pure domain modules
# (the projections a rebuild replays).
BUS = ("runtime/bus/**",)  # the FastStream/nats adapter
MONGODB_ADAPTER = ("runtime/store/mongodb.py", "runtime/store/mongodb/**")
SQLITE_ADAPTER = ("runtime/store/sqlite.py", "runtime/store/sqlite/**")
WIRING = ENTRY_POINTS + COMPOSITION_ROOTS + BUS

# Imported module (or package prefix) -> the only files allowed to import it. A module
# inside a restricted package may always import its own package.
RESTRICTED: dict[str, tuple[str, ...]] = {
    "pymongo": MONGODB_ADAPTER,
    "bson": MONGODB_ADAPTER,
    "motor": MONGODB_ADAPTER,
    "sqlite3": SQLITE_ADAPTER,
    "nats": BUS + ENTRY_POINTS,
    "fastapi": WIRING,
    "faststream": WIRING,
    "starlette": WIRING,
    "uvicorn": WIRING,
    "runtime.store.sqlite": WIRING,
    "runtime.store.mongodb": WIRING,
}

SERVICES_PACKAGE = "services"


# --- the checker ----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    module: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module!r}: {self.rule}"


@dataclass(frozen=True)
class Import:
    line: int
    module: str
    # For 'from X import a, b': X.a and X.b, which may be modules themselves.
    submodules: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        return (self.module, *self.submodules)


@cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for token in re.split(r"(\*\*|\*)", pattern):
        if token == "**":
            parts.append(".*")
        elif token == "*":
            parts.append("[^/]*")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


def matches(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether a root-relative POSIX path matches any of the globs."""
    return any(_glob_regex(p).fullmatch(path) for p in patterns)


def within(module: str, prefix: str) -> bool:
    """Whether ``module`` is ``prefix`` or one of its submodules."""
    return module == prefix or module.startswith(prefix + ".")


def module_name(path: str) -> tuple[str, bool]:
    """Dotted name of a root-relative ``.py`` path, and whether it is a package."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join([*base, node.module] if node.module else base)


def imports_of(tree: ast.AST, module: str, is_package: bool) -> list[Import]:
    """Every import in ``tree`` (nested ones too), relative ones made absolute."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, is_package)
            subs = tuple(f"{target}.{a.name}" for a in node.names if a.name != "*")
            found.append(Import(node.lineno, target, subs))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("__import__", "import_module")
                )
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.append(Import(node.lineno, node.args[0].value))
    return found


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _service_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == SERVICES_PACKAGE:
        return parts[1]
    return None


def check_file(path: str, source: str) -> list[Violation]:
    """The rule violations of one file (``path`` relative to the repository root)."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        return [Violation(path, exc.lineno or 0, "", f"cannot parse: {exc.msg}")]
    me, is_package = module_name(path)
    in_contracts = matches(path, CONTRACTS)
    in_domain = matches(path, DOMAIN)
    my_service = _service_of(me)
    out: set[Violation] = set()

    def bad(imp: Import, name: str, rule: str) -> None:
        out.add(Violation(path, imp.line, name, rule))

    for imp in imports_of(tree, me, is_package):
        top = _top(imp.module)
        # 1. contracts: stdlib, pydantic, contracts.
        if in_contracts and top not in STDLIB and top not in CONTRACTS_MAY_IMPORT:
            bad(imp, imp.module, "contracts may import only the standard library and pydantic")
        # 2. domain purity.
        if in_domain:
            if top in STDLIB:
                if top in DOMAIN_FORBIDDEN_STDLIB:
                    bad(imp, imp.module, "domain code is pure: no I/O, clock or randomness")
            elif top not in DOMAIN_MAY_IMPORT and not _is_domain_module(imp.module):
                bad(
                    imp,
                    imp.module,
                    "domain code may import only the standard library, pydantic, "
                    "contracts and domain modules",
                )
        names = imp.names()
        # 3 and 4. restricted libraries and adapters (reported once per import).
        for prefix, allowed in RESTRICTED.items():
            hit = next((n for n in names if within(n, prefix)), None)
            if hit and not within(me, prefix) and not matches(path, allowed):
                bad(imp, hit, f"only {', '.join(allowed)} may import {prefix}")
        # 4. services never import another service; runtime/contracts never services.
        hit = next((n for n in names if _service_of(n) is not None), None)
        if hit is not None:
            target_service = _service_of(hit)
            if my_service is None and _top(me) in ("runtime", "contracts"):
                if not (matches(path, SYSTEM_ENTRY_POINTS) and _is_domain_module(hit)):
                    bad(imp, hit, f"{_top(me)}/ must not import services/ (the CLI: only their domain modules)")
            elif my_service is not None and target_service != my_service:
                bad(imp, hit, f"services/{my_service} must not import services/{target_service}")
    return sorted(out)


def _is_domain_module(module: str) -> bool:
    """Whether a dotted module name is one of the domain modules."""
    parts = module.split(".")
    if parts[0] == SERVICES_PACKAGE:
        return len(parts) >= 3 and parts[2] == "domain"
    return parts[0] == "runtime" and len(parts) >= 2 and parts[1].startswith("domain")


def python_files(root: Path) -> list[Path]:
    files = []
    for top in SCANNED:
        if (root / top).is_dir():
            files += [p for p in (root / top).rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files)


def check_tree(root: Path) -> list[Violation]:
    """Every violation in contracts/, runtime/ and services/ under ``root``."""
    violations = []
    for file in python_files(root):
        rel = file.relative_to(root).as_posix()
        violations += check_file(rel, file.read_text(encoding="utf-8"))
    return violations


# --- the tests ------------------------------------------------------------------------


def test_import_rules() -> None:
    files = python_files(ROOT)
    assert any(f.parts[-2:] == ("contracts", "events.py") for f in files), "scanned nothing?"
    violations = check_tree(ROOT)
    assert not violations, "import rules broken:\n" + "\n".join(map(str, violations))


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def test_checker_catches_planted_violations(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "contracts/bad.py": """
                import json
                import fastapi
                from pydantic import BaseModel
                from . import events

                def later():
                    import httpx
            """,
            "services/intake/domain.py": """
                import time
                from datetime import datetime
                from contracts.events import ContactOpened
                from runtime.store import sqlite
                from fastapi import FastAPI
                from .rules import check
            """,
            "services/routing/domain/__init__.py": """
                from ...intake import domain  # services.intake.domain
                from .policy import choose
                from services.routing.domain import ownership
            """,
            "services/routing/projector.py": """
                import importlib
                import pymongo, nats
                import services.followup.app
                from services.routing import domain

                def load():
                    return importlib.import_module("sqlite3")
            """,
            "runtime/store/port.py": "import sqlite3\n",
            "runtime/core.py": "from services.intake import app\nfrom runtime.bus import x\n",
            "runtime/domain_rules.py": "import random\nfrom runtime.config import Settings\n",
            # allowed: adapters, entry points, composition roots, the bus
            "runtime/store/sqlite.py": "import sqlite3\n",
            "runtime/store/mongodb/__init__.py": "import pymongo\nfrom . import codec\n",
            "runtime/store/mongodb/codec.py": "import bson\nfrom runtime.store.mongodb import x\n",
            "runtime/bus/relay.py": "import nats\nfrom faststream.nats import NatsBroker\n",
            "runtime/compose.py": "from runtime.store.mongodb import MongoEventStore\n",
            "runtime/web.py": "import uvicorn\nfrom starlette.requests import Request\n",
            "services/intake/app.py": """
                from fastapi import FastAPI
                from runtime.store.sqlite import SqliteEventStore
                from services.intake.domain import decide
            """,
            "services/intake/__main__.py": "import nats\nimport os\n",
            "runtime/cli/main.py": """
                from services.followup.domain import FollowupProjection
                from services.followup.app import create_followup_app
            """,
        },
    )
    found = {(v.path, v.line, v.module) for v in check_tree(tmp_path)}
    assert found == {
        ("contracts/bad.py", 2, "fastapi"),
        ("contracts/bad.py", 7, "httpx"),
        ("services/intake/domain.py", 1, "time"),
        ("services/intake/domain.py", 4, "runtime.store"),
        ("services/intake/domain.py", 4, "runtime.store.sqlite"),
        ("services/intake/domain.py", 5, "fastapi"),
        ("services/intake/domain.py", 6, "services.intake.rules"),
        ("services/routing/domain/__init__.py", 1, "services.intake"),
        ("services/routing/projector.py", 2, "pymongo"),
        ("services/routing/projector.py", 2, "nats"),
        ("services/routing/projector.py", 3, "services.followup.app"),
        ("services/routing/projector.py", 7, "sqlite3"),
        ("runtime/store/port.py", 1, "sqlite3"),
        ("runtime/core.py", 1, "services.intake"),
        ("runtime/domain_rules.py", 1, "random"),
        ("runtime/domain_rules.py", 2, "runtime.config"),
        ("runtime/cli/main.py", 2, "services.followup.app"),
    }, "\n".join(map(str, check_tree(tmp_path)))


def test_violations_name_file_line_and_rule(tmp_path: Path) -> None:
    _plant(tmp_path, {"services/routing/domain.py": "x = 1\ny = 2\nimport asyncio\n"})
    (violation,) = check_tree(tmp_path)
    assert str(violation) == (
        "services/routing/domain.py:3: imports 'asyncio': "
        "domain code is pure: no I/O, clock or randomness"
    )


@pytest.mark.parametrize(
    ("path", "patterns", "expected"),
    [
        ("services/intake/app.py", ENTRY_POINTS, True),
        ("services/intake/http/app.py", ENTRY_POINTS, False),
        ("runtime/bus/deep/x.py", BUS, True),
        ("runtime/busy.py", BUS, False),
        ("services/routing/domain/rules.py", DOMAIN, True),
        ("runtime/domain.py", DOMAIN, True),
        ("runtime/domains/x.py", DOMAIN, True),
        ("services/routing/domainish.py", DOMAIN, False),
    ],
)
def test_globs(path: str, patterns: tuple[str, ...], expected: bool) -> None:
    assert matches(path, patterns) is expected
