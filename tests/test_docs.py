"""The README stays true to the code: its configuration table is generated from Settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import Settings
from runtime.config_doc import BEGIN, END, env_var, render_table, table_in, with_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_configuration_table_matches_settings() -> None:
    table = table_in(README.read_text(encoding="utf-8"))
    assert table == render_table(), (
        "README.md's configuration table differs from runtime.config.Settings; "
        "run `make docs` and commit the result"
    )


def test_table_lists_every_setting_with_default_and_description() -> None:
    table = render_table()
    rows = table.splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        row = next(r for r in rows if r.startswith(f"| `{env_var(Settings, name)}` |"))
        assert field.description, f"Settings.{name} needs a description"
        assert row.count("|") - row.count("\\|") == 5
    assert "| `BATON_DATA_DIR` | Path | `.data` |" in table
    assert "| `BATON_STORE_URL` | str | *(empty)* |" in table


def test_with_table_replaces_only_between_the_markers() -> None:
    doc = f"intro\n{BEGIN}\nold\n{END}\noutro\n"
    new = with_table(doc, "| a |\n")
    assert new == f"intro\n{BEGIN}\n| a |\n{END}\noutro\n"
    assert table_in(new) == "| a |\n"
    with pytest.raises(ValueError, match="markers"):
        table_in("no markers here")


def test_readme_quick_start_is_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make run", "make test"]
