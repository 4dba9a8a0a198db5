"""What an adapter is: rank, targets, scaling, DoRA or not, and where the task head lives.

``LoraRecipe.parse("r=4,targets=q,v")`` reads the command line's ``--lora`` spec;
``recipe.peft_config(head_module)`` turns it into peft's ``LoraConfig``.

The task head: a binary task needs a 2-way classifier, which the base (pretrained on all classes)
does not have. ``head="adapter"`` (default) makes the head part of every adapter (peft's
``modules_to_save``): each task trains its own copy, saved in the PEFT folder. ``head="shared"``
keeps one frozen, seeded 2-way head in the base for every task, so the adapter is LoRA weights
only. docs/adapters.md has the measurements behind the default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["LoraRecipe", "HEAD_MODES", "json_config"]

HEAD_MODES = ("adapter", "shared")


@dataclass(frozen=True)
class LoraRecipe:
    """A LoRA (or DoRA) adapter layout. ``alpha`` defaults to 2 * r."""

    r: int = 4
    targets: tuple[str, ...] = ("q", "v")
    alpha: float | None = None
    dropout: float = 0.0
    dora: bool = False
    head: str = "adapter"

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoRA rank r must be a positive integer, got {self.r!r}")
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError(f"LoRA targets must be module names, got {self.targets!r}")
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if self.head not in HEAD_MODES:
            raise ValueError(f"head must be one of {HEAD_MODES}, got {self.head!r}")
        object.__setattr__(self, "targets", tuple(self.targets))

    @classmethod
    def parse(cls, spec: str, dora: bool = False, head: str = "adapter") -> "LoraRecipe":
        """Read ``"r=4,targets=q,v"`` (also ``alpha=8``, ``dropout=0.1``, ``head=shared``).

        A bare name after ``targets=`` continues the target list, so ``targets=q,k,v,r=8`` works.
        """
        fields: dict[str, Any] = {"dora": dora, "head": head}
        targets: list[str] = []
        key = None
        given: set[str] = set()
        for part in [p.strip() for p in str(spec).split(",") if p.strip()]:
            if "=" in part:
                key, value = (s.strip() for s in part.split("=", 1))
                if key in given:  # "r=2,r=4" would silently keep the last one
                    raise ValueError(f"--lora {spec!r}: {key!r} is given twice")
                given.add(key)
            elif key == "targets":
                value = part
            else:
                raise ValueError(f"--lora {spec!r}: {part!r} is not KEY=VALUE (keys: r, targets, "
                                 "alpha, dropout, head)")
            try:
                if key == "r":
                    fields["r"] = int(value)
                elif key == "targets":
                    targets.append(value)
                elif key == "alpha":
                    fields["alpha"] = float(value)
                elif key == "dropout":
                    fields["dropout"] = float(value)
                elif key == "head":
                    fields["head"] = value
                else:
                    raise ValueError(f"--lora {spec!r}: unknown key {key!r} (keys: r, targets, "
                                     "alpha, dropout, head)")
            except ValueError as exc:
                if "unknown key" in str(exc):
                    raise
                raise ValueError(f"--lora {spec!r}: bad value {value!r} for {key!r}") from None
        if targets:
            fields["targets"] = tuple(targets)
        return cls(**fields)

    @property
    def scale(self) -> float:
        return float(self.alpha if self.alpha is not None else 2 * self.r)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LoraRecipe":
        return cls(**{**d, "targets": tuple(d.get("targets", ("q", "v")))})

    def peft_config(self, head_module: str | None):
        """peft's ``LoraConfig`` for this recipe; ``head_module`` is saved with the adapter when
        the head is per task."""
        from peft import LoraConfig

        keep = [head_module] if self.head == "adapter" and head_module else None
        return LoraConfig(r=self.r, lora_alpha=self.scale, lora_dropout=self.dropout,
                          target_modules=list(self.targets), use_dora=self.dora,
                          modules_to_save=keep, bias="none")


def json_config(peft_config) -> dict[str, Any]:
    """A peft config as the plain dict written to ``adapter_config.json`` (sets become sorted
    lists, enums their string values), the form kept in a collection's info."""

    def plain(value: Any) -> Any:
        if isinstance(value, (set, frozenset)):
            return sorted(value)
        raise TypeError(f"adapter config value {value!r} cannot be written as JSON")

    d = peft_config.to_dict() if hasattr(peft_config, "to_dict") else dict(peft_config)
    return json.loads(json.dumps(d, default=plain, sort_keys=True))
