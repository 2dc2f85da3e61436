"""The timeline page in headless Chromium, offline (a file: URL), with negative controls
proving that a script error or an attempt to load anything would be caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.audit.history import replay
from runtime.audit.timeline_page import render_timeline_page
from runtime.audit.verify import verify_stream
from tests.audit.browser import INSTALL_HINT, Rendered, chromium, render
from tests.audit.scenario import AGENTS, at, envelopes_of, records_of

pytestmark = [pytest.mark.slow, pytest.mark.skipif(chromium() is None, reason=INSTALL_HINT)]


def page() -> str:
    records = records_of()
    return render_timeline_page(replay(envelopes_of(), "cust-1"), verify_stream(records), "acme", AGENTS, at(300))


def open_page(html: str, tmp_path: Path, name: str = "timeline.html") -> Rendered:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return render(path.as_uri(), tmp_path / f"profile-{name}")


def test_the_page_renders_offline_without_errors(tmp_path: Path) -> None:
    rendered = open_page(page(), tmp_path)
    assert rendered.console == []
    assert rendered.body_attribute("data-js-errors") == "0"
    assert rendered.body_attribute("data-rendered") == "yes"
    dom = rendered.dom
    for name in ("Ana Alves", "Ben Brennan", "Cleo Castillo", "Sam Okafor"):
        assert name in dom
    assert "3 owners: Ana Alves (ana), Ben Brennan (ben), Cleo Castillo (cleo)" in dom  # written by the script
    assert dom.count('type="checkbox"') == 6  # filters built by the script


def test_a_script_error_would_be_caught(tmp_path: Path) -> None:
    broken = page().replace("var detail = ", "undefinedFunction(); var detail = ")
    rendered = open_page(broken, tmp_path, "broken.html")
    assert rendered.body_attribute("data-js-errors") == "1"
    assert any("undefinedFunction" in line for line in rendered.console)


def test_loading_anything_from_elsewhere_would_be_refused(tmp_path: Path) -> None:
    leaky = page().replace("</main>", '<img src="https://cdn.example.invalid/logo.png"></main>')
    rendered = open_page(leaky, tmp_path, "leaky.html")
    assert any("Content Security Policy" in line for line in rendered.console), rendered.console
