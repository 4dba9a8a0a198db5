"""Which settings an RPG fit uses, decided in one place and built once.

``RPG(preset=...)`` or ``RPG(config=...)``: that preset or config, plus keyword overrides.
``RPG()`` with neither: the collection decides. Preset ``cpu``, or ``cpu-tasks`` when the
checkpoints carry conditions (a task grid), plus what the size rule (``presets.SIZE_RULES``)
adds for the number of generated values, plus the overrides, which win over both. The config
is built from these in one step: no intermediate config is made and replaced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from paramgen.methods.base import resolve_config
from paramgen.methods.rpg.config import RPGConfig
from paramgen.methods.rpg.presets import size_settings
from paramgen.tokenize import is_generated


@dataclass(frozen=True)
class CollectionFacts:
    """What the automatic choice reads of a collection."""

    conditioned: bool        # the checkpoints carry conditions (a task grid)
    generated_values: int    # values RPG generates per checkpoint (floating-point tensors)

    @classmethod
    def of(cls, ckpts) -> "CollectionFacts":
        values = sum(v.numel() for v in ckpts[0].values() if is_generated(v))
        return cls(getattr(ckpts, "conditions", None) is not None, int(values))


@dataclass(frozen=True)
class Choice:
    preset: str | None       # None for a config given as such
    config: RPGConfig
    size_settings: dict      # what the size rule added ({} unless RPG() chose for a collection)


def auto_preset(conditioned: bool) -> str:
    """The preset ``RPG()`` starts from: ``cpu``, or ``cpu-tasks`` for a task grid."""
    return "cpu-tasks" if conditioned else "cpu"


def choose_config(preset: str | None, config: RPGConfig | dict | None,
                  overrides: dict[str, Any], facts: CollectionFacts | None = None) -> Choice:
    """The final settings of a fit from what the user gave and, for ``RPG()`` (neither preset
    nor config), the collection's ``facts``; without facts, ``RPG()``'s settings before it has
    seen a collection (preset ``cpu`` plus the overrides)."""
    if preset is not None or config is not None:
        return Choice(preset, resolve_config(RPGConfig, preset, config, overrides), {})
    preset = auto_preset(facts is not None and facts.conditioned)
    added = {}
    if facts is not None:
        # The rule's window and steps follow the token count: the token size that will be used
        # (the user's, else the rule's, else the preset's).
        added = size_settings(facts.generated_values, overrides.get("token_size"))
    return Choice(preset, RPGConfig.from_preset(preset, **{**added, **overrides}), added)


def check_override_names(overrides: dict[str, Any]) -> None:
    """Refuse unknown setting names at once, for ``RPG()``, whose config is built only when it
    sees its collection (values are checked then, by the config itself)."""
    known = {f.name for f in dataclasses.fields(RPGConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {RPGConfig.NAME} config keys {unknown}; known: {sorted(known)}")
