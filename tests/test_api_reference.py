"""docs/api.md is what scripts/api_reference.py reads off the code: a renamed, added or removed
public name, or a changed signature or first docstring line, fails here until the page is
regenerated."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "api_reference.py"


def _script():
    spec = importlib.util.spec_from_file_location("api_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_page_matches_the_code() -> None:
    module = _script()
    assert module.main(["--check"]) == 0, "run: python scripts/api_reference.py"


def test_api_page_lists_the_contract_with_descriptions() -> None:
    text = _script().render()
    for name in ("pg.CheckpointSet", "pg.RPG", "pg.IGPG", "pg.PDiff", "pg.load_generator",
                 ".sample(", ".fit(", ".sample_to_files(", ".sample_to_peft(", ".import_peft(",
                 "pg.align.align(", "pg.data.load("):
        assert name in text, name
    assert "(no description)" not in text
