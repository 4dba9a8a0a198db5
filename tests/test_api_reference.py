"""docs/api.md is what scripts/api_reference.py reads off the code: a renamed, added or removed
public name, or a changed signature or first docstring line, fails here until the page is
regenerated."""

from __future__ import annotations

from repo_scripts import load_script


def _script():
    return load_script("scripts/api_reference.py")


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
