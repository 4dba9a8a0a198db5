"""The config base every generator's settings derive from.

A generator config is one flat dataclass (so ``--set key=value`` and ``config.json`` stay simple),
whose fields fall into four groups, marked on the field:

* ``model``    what the networks are: changing one means another generator;
* ``training`` how it learns: part of what a resumed run must agree with;
* ``sampling`` how samples are drawn: free to change at any time, even after training;
* ``runtime``  where and how it runs (device, save cadence): free to change, resume included.

Only the model and training groups go into the resume fingerprint, so moving a run to another
device or saving more often never refuses a resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar, Mapping

GROUPS = ("model", "training", "sampling", "runtime")


def setting(default: Any, group: str = "model", **kwargs: Any) -> Any:
    """A config field with its group (``model`` / ``training`` / ``sampling`` / ``runtime``)."""
    if group not in GROUPS:
        raise ValueError(f"unknown setting group {group!r}; known: {GROUPS}")
    if isinstance(default, (list, dict, set)):
        kwargs["default_factory"] = lambda: type(default)(default)
    else:
        kwargs["default"] = default
    return dataclasses.field(metadata={"group": group}, **kwargs)


def training(default: Any) -> Any:
    return setting(default, "training")


def sampling(default: Any) -> Any:
    return setting(default, "sampling")


def runtime(default: Any) -> Any:
    return setting(default, "runtime")


class GeneratorConfig:
    """Mixin for generator config dataclasses: presets, dict round trip, validation helpers."""

    NAME: ClassVar[str] = "generator"
    PRESETS: ClassVar[dict[str, dict]] = {}
    TUPLE_FIELDS: ClassVar[tuple[str, ...]] = ()

    # -------------------------------------------------------------- construction
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "GeneratorConfig":
        """The settings of a named preset, with ``overrides`` applied and checked."""
        if name not in cls.PRESETS:
            raise ValueError(f"unknown {cls.NAME} preset {name!r}; known: {sorted(cls.PRESETS)}")
        return cls.from_dict({**cls.PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "GeneratorConfig":
        """Settings from a mapping (e.g. a saved config.json); unknown names are an error."""
        if not isinstance(values, Mapping):
            raise ValueError(f"a {cls.NAME} config must be a mapping of settings, got "
                             f"{type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.NAME} config keys {unknown}; known: {sorted(known)}")
        try:
            return cls(**values)
        except TypeError as exc:  # a value of the wrong kind, e.g. a list where a number belongs
            raise ValueError(f"bad {cls.NAME} config: {exc}") from exc

    def to_dict(self) -> dict:
        """Every setting by name, JSON-ready."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes: Any) -> "GeneratorConfig":
        """A copy with ``changes`` applied and checked."""
        return type(self).from_dict({**self.to_dict(), **changes})

    # -------------------------------------------------------------- groups
    @classmethod
    def fields_of(cls, *groups: str) -> list[str]:
        """The names of the settings in ``groups`` (model, training, sampling, runtime)."""
        return [f.name for f in dataclasses.fields(cls)
                if f.metadata.get("group", "model") in groups]

    def group(self, *groups: str) -> dict:
        """The settings of ``groups`` by name."""
        d = self.to_dict()
        return {k: d[k] for k in self.fields_of(*groups)}

    def training_fingerprint(self) -> str:
        """What a resumed run must agree with: the model and training settings, nothing else."""
        text = json.dumps(self.group("model", "training"), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -------------------------------------------------------------- validation helpers
    def _check_choices(self, choices: Mapping[str, tuple]) -> None:
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{type(self).__name__}.{name} must be one of {allowed}, "
                                 f"got {value!r}")

    def _check_positive(self, *names: str, allow_zero: bool = False) -> None:
        for name in names:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                value >= 0 if allow_zero else value >= 1)
            if not ok or (isinstance(value, float) and not value.is_integer()):
                need = "a non-negative integer" if allow_zero else "a positive integer"
                raise ValueError(f"{type(self).__name__}.{name} must be {need}, got {value!r}")
            setattr(self, name, int(value))

    def _check_finite(self, *names: str, low: float | None = None,
                      high: float | None = None) -> None:
        import math

        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value):
                raise ValueError(f"{type(self).__name__}.{name} must be a finite number, "
                                 f"got {value!r}")
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"{type(self).__name__}.{name} must be in "
                                 f"[{low}, {high}], got {value!r}")

    def _check_channels(self, name: str, first_one: bool = True) -> None:
        value = getattr(self, name)
        if not isinstance(value, (list, tuple)) or not value or \
                not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in value):
            raise ValueError(f"{type(self).__name__}.{name} must be a non-empty list of "
                             f"positive integers, got {value!r}")
        if first_one and (value[0] != 1 or len(value) < 2):
            raise ValueError(f"{type(self).__name__}.{name} must start at 1 and widen, e.g. "
                             f"[1, 32, 64], got {list(value)}")
        setattr(self, name, tuple(int(c) for c in value))


@dataclasses.dataclass
class SharedSettings(GeneratorConfig):
    """Settings every generator has: what it generates, and how the engine runs it."""

    # Partial generation: which tensors are generated (None = every floating tensor; key names,
    # prefixes, globs or "last-norm-K": paramgen.keys); the rest is copied from checkpoint
    # ``reference`` of the collection.
    keys: list[str] | str | None = setting(None)
    reference: int = setting(0)
    autocast: str = runtime("auto")           # auto (bf16 on CUDA) | bf16 | off
    device: str = runtime("auto")             # auto | cpu | cuda | cuda:N
    save_every: int = runtime(500)            # steps between saves of the training state
    save_every_seconds: float = runtime(60.0)  # ... or seconds, whichever comes first

    def _check_shared(self) -> None:
        if isinstance(self.keys, (list, tuple)):
            self.keys = [str(k) for k in self.keys]
        elif self.keys is not None and not isinstance(self.keys, str):
            raise ValueError(f"{type(self).__name__}.keys must be None, a string or a list of "
                             f"key patterns, got {self.keys!r}")
        self._check_positive("reference", allow_zero=True)
        self._check_positive("save_every")
        self._check_finite("save_every_seconds", low=1e-3)
        self._check_choices({"autocast": ("auto", "bf16", "off")})
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"{type(self).__name__}.device must be a device name such as "
                             f"auto, cpu or cuda, got {self.device!r}")
