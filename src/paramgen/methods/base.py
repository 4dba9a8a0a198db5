"""The contract every parameter generator keeps, and what they share.

A generator learns a distribution over the state dicts of a collection and samples from it.
The public methods below are the same for every method (RPG, p-diff, IGPG and any added later):
they check their arguments here, at the API boundary, then call the method's hooks
(``_fit``, ``_sample``, ``_sample_to_files``):

* ``fit(collections, steps=None, seed=0, workdir=None, progress=True, callback=None)``: one
  CheckpointSet (or sequence of state dicts) or a list of them; a method declaring one
  collection refuses a list of several, a method declaring several accepts a single one too.
  Trains through the one engine (:mod:`paramgen.training`); ``callback(step, loss)`` after every
  step; with ``workdir`` it saves periodically and resumes from there;
* ``sample(n, *, seed=0, progress=False, **options)``: ``n`` state dicts with exactly the
  training keys, shapes and dtypes; ``sample_to_files(paths, ...)`` writes them to
  ``.safetensors`` files and ``sample_to_peft(out_dirs, ...)`` to PEFT folders. ``options`` are
  what the method declares in its class attribute ``options``
  (:class:`~paramgen.methods.options.MethodOptions`: RPG ``condition``, ``mode``, ...; IGPG
  ``like``, ``dataset``, ...); an unknown one is a ``TypeError`` and a missing required one a
  ``ValueError``, each naming what the method takes;
* ``save_pretrained(path)`` / ``from_pretrained(path)``: the generator folder, the same for
  every method (:mod:`paramgen.methods.folder`); ``load_generator`` loads any of them;
* ``collection_info``: what the training collection was (architecture, dataset, ...).

Shared here besides: the config a generator is built from (preset, config object or dict,
overrides), validation of conditions, and partial generation (a chosen subset of keys is
generated, the rest copied from a reference checkpoint).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import Tensor

from paramgen import io
from paramgen.adapters import export
from paramgen.config import GeneratorConfig
from paramgen.methods import folder
from paramgen.methods.options import (MethodOptions, accepted_options, check_count, check_seed,
                                      check_steps)
from paramgen.methods.registry import methods_where

# Older import paths: these lived here before the folder format and the data fingerprint got
# their own modules; methods and other code may still import them from base
# (data_fingerprint: from paramgen.methods.fingerprint).
from paramgen.methods.fingerprint import Fingerprint  # noqa: F401
from paramgen.methods.folder import (FORMAT, FORMAT_VERSION, load_generator,  # noqa: F401
                                     load_module, read_config, read_weights)


class Generator(ABC):
    """Learns a distribution over the state dicts of one architecture and samples from it."""

    method: str = ""
    config_cls: type[GeneratorConfig]
    default_preset: str = "cpu"
    # What this method takes (see paramgen.methods.options); a subclass declares its own.
    options: ClassVar[MethodOptions] = MethodOptions()

    def __init__(self, preset: str | None = None, config: GeneratorConfig | dict | None = None,
                 **overrides: Any):
        # With neither preset nor config, fit() may pick a preset from the collection.
        self._auto_preset = preset is None and config is None
        self._overrides = dict(overrides)
        self.preset = preset or (self.default_preset if config is None else None)
        self.config = self._initial_config(preset, config)
        self._condition_dim: int | None = None
        self._condition_range: tuple[float, float] | None = None
        self.collection_info: dict = {}
        self.history: list[dict] = []
        self.train_report = None
        self.train_seconds = 0.0
        self.tokenizer = None
        self.network = None
        # partial generation: the generated keys, every key in order, and the copied tensors
        self.generated_keys: list[str] = []
        self.key_order: list[str] = []
        self.reference: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ contract
    def fit(self, collections: Any, steps: int | None = None, seed: int = 0,
            workdir: str | os.PathLike | None = None, progress: bool = True,
            callback: Callable[[int, float], None] | None = None) -> "Generator":
        """Train on one collection (a CheckpointSet, or a sequence of state dicts) or a list of
        CheckpointSets (methods declaring ``collections="several"``)."""
        steps, seed = check_steps(steps), check_seed(seed)
        items = self._collection_list(collections)
        if not self.options.several_collections:
            if len(items) > 1:
                several = methods_where(lambda o: o.several_collections)
                raise ValueError(f"{type(self).__name__}.fit trains on one collection; got a list "
                                 f"of {len(items)} (methods that take several: "
                                 f"{', '.join(several) or 'none'})")
            return self._fit(items[0], steps=steps, seed=seed, workdir=workdir,
                             progress=progress, callback=callback)
        return self._fit(items, steps=steps, seed=seed, workdir=workdir, progress=progress,
                         callback=callback)

    @staticmethod
    def _collection_list(collections: Any) -> list:
        """One collection or a list of them -> a list of collections. A list of state dicts
        (mappings) is one collection, as ``fit`` has always taken."""
        if isinstance(collections, (list, tuple)):
            if not collections:
                raise ValueError("fit got an empty list: give a CheckpointSet or a list of them")
            if all(isinstance(c, Mapping) for c in collections):
                return [collections]
            return list(collections)
        return [collections]

    def sample(self, n: int = 1, *, seed: int = 0, progress: bool = False,
               **options: Any) -> Any:
        """``n`` new state dicts with exactly the training keys, shapes and dtypes.

        ``options``: what the method declares (``type(gen).options.sample``), e.g.
        ``condition=`` for RPG or ``like=``, ``dataset=`` for IGPG.
        """
        n, seed = check_count(n), check_seed(seed)
        options = accepted_options(self.options, options, f"{type(self).__name__}.sample")
        self._require_fitted()
        return self._sample(n, seed=seed, progress=progress, **options)

    def sample_to_files(self, paths: Sequence[str | os.PathLike], *, seed: int = 0,
                        progress: bool = False, metadata: dict[str, str] | None = None,
                        **options: Any) -> list[Path]:
        """Sample ``len(paths)`` models and write each to its ``.safetensors`` path."""
        if isinstance(paths, (str, os.PathLike)):
            raise TypeError(f"paths must be a list of file paths, got one path {str(paths)!r}: "
                            "wrap it in a list")
        paths = list(paths)
        if not paths:
            raise ValueError("sample_to_files: paths is empty")
        seed = check_seed(seed)
        options = accepted_options(self.options, options,
                                   f"{type(self).__name__}.sample_to_files", files=True)
        self._require_fitted()
        return self._sample_to_files(paths, seed=seed, progress=progress, metadata=metadata,
                                     **options)

    def sample_to_peft(self, out_dirs: Sequence[str | os.PathLike] | str | os.PathLike, *,
                       seed: int = 0, peft_config: Any = None,
                       **options: Any) -> list[Path]:
        """Sample adapters into PEFT folders (see paramgen.adapters.export.sample_to_peft)."""
        seed = check_seed(seed)
        options = accepted_options(self.options, options,
                                   f"{type(self).__name__}.sample_to_peft", files=True)
        return export.sample_to_peft(self, out_dirs, seed=seed, peft_config=peft_config,
                                     **options)

    # What a method implements: the public methods above have checked every argument.
    @abstractmethod
    def _fit(self, collections: Any, *, steps: int | None, seed: int, workdir: Any,
             progress: bool, callback: Callable[[int, float], None] | None) -> "Generator":
        """Train; ``collections`` is one collection, or a list for a method taking several."""

    @abstractmethod
    def _sample(self, n: int, *, seed: int, progress: bool, **options: Any) -> Any:
        """``n`` state dicts; ``options`` are among the declared ones."""

    def _sample_to_files(self, paths: list, *, seed: int, progress: bool,
                         metadata: dict[str, str] | None, **options: Any) -> list[Path]:
        """This default holds the models in memory first; a method may stream them instead."""
        models = self._sample(len(paths), seed=seed, progress=progress, **options)
        return [io.save_safetensors(p, sd, metadata) for p, sd in zip(paths, models)]

    # What a subclass adds to the generator folder, and how it is rebuilt from it.
    @abstractmethod
    def _saved_config(self) -> dict:
        """Method-specific entries of config.json (tokenizer layout, sizes, ...)."""

    @abstractmethod
    def _saved_tensors(self) -> dict[str, Tensor]:
        """Every tensor of model.safetensors (network weights, copied tensors)."""

    @abstractmethod
    def _restore(self, config: dict, tensors: dict[str, Tensor], where: Path) -> None:
        """Rebuild the trained generator from a folder's config and tensors."""

    @property
    def fitted(self) -> bool:
        """Whether the generator is trained (by ``fit`` or loaded) and can sample."""
        return getattr(self, "network", None) is not None

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"this {self.method} generator is not trained: call fit() or "
                               "from_pretrained()")

    # ------------------------------------------------------------------ config and engine
    def _initial_config(self, preset: str | None, config: Any) -> Any:
        """The config a generator is built with (a method whose fit chooses its settings from
        the collection, as RPG's does, may build it there instead)."""
        return resolve_config(self.config_cls, self.preset, config, self._overrides)

    def _engine(self):
        from paramgen.training import Engine, Runtime

        cfg = self.config
        return Engine(Runtime(device=cfg.device, autocast=cfg.autocast,
                              save_every=cfg.save_every,
                              save_every_seconds=cfg.save_every_seconds))

    def _run_engine(self, engine, *, seed: int, workdir, data_fingerprint: str, progress: bool,
                    callback) -> None:
        report = engine.fit(self, seed=seed, workdir=workdir, progress=progress,
                            callback=callback, desc=f"{self.method} fit",
                            identity={"data": data_fingerprint,
                                      "settings": self.config.training_fingerprint()})
        self.train_report = report
        self.history = report.history
        self.train_seconds = report.seconds

    @property
    def device(self) -> torch.device:
        """The device the config asks for, resolved (``auto``: CUDA when available)."""
        from paramgen.training import resolve_device

        return resolve_device(self.config.device)

    # ------------------------------------------------------------------ partial generation
    def _select_keys(self, ckpts) -> list[dict[str, Tensor]] | Any:
        """Decide the generated keys (config ``keys``) and keep the rest of the reference
        checkpoint; returns the collection restricted to the generated keys."""
        from paramgen.keys import resolve_keys
        from paramgen.tokenize import is_generated

        cfg = self.config
        ref_index = int(getattr(cfg, "reference", 0))
        if ref_index >= len(ckpts):
            raise ValueError(f"reference={ref_index} but the collection has {len(ckpts)} "
                             "checkpoints")
        reference_sd = ckpts[ref_index]
        self.key_order = list(reference_sd)
        spec = getattr(cfg, "keys", None)
        generated = resolve_keys(reference_sd, spec)
        if not any(is_generated(reference_sd[k]) for k in generated):
            raise ValueError(f"keys={spec!r} selects no floating-point tensor to generate "
                             f"(selected: {generated[:8]})")
        self.generated_keys = generated
        self.reference = {k: v.detach().clone() for k, v in reference_sd.items()
                          if k not in set(generated)}
        if not self.reference:
            return ckpts
        return _KeySubset(ckpts, generated)

    def _assemble(self, part: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A generated part -> the full state dict (generated + copied reference tensors)."""
        if not self.reference:
            return dict(part)
        return {k: part[k] if k in part else self.reference[k].clone() for k in self.key_order}

    # ------------------------------------------------------------------ conditions
    @property
    def condition_dim(self) -> int | None:
        """Length of the condition the generator was trained with, or None."""
        return self._condition_dim

    def _record_conditions(self, conditions: Tensor | None) -> None:
        self._condition_dim = None if conditions is None else int(conditions.shape[1])
        self._condition_range = None if conditions is None else (
            float(conditions.min()), float(conditions.max()))

    def _conditions(self, condition: Any, n: int, device: torch.device) -> Tensor | None:
        """Validate a user condition and give one row per sample, or None."""
        dim = self.condition_dim
        if condition is None:
            if dim is not None:
                raise ValueError(f"this generator was trained with conditions of size {dim}; "
                                 "pass condition= (e.g. task bits) to sample")
            return None
        if dim is None:
            raise ValueError("this generator was trained without conditions; "
                             "sample it with condition=None")
        try:
            if isinstance(condition, str):
                text = condition.strip()
                if not text or set(text) - {"0", "1"}:
                    raise ValueError(f"condition {condition!r}: a string condition is a bit "
                                     "string such as '0101010101'")
                condition = [float(c) for c in text]
            if isinstance(condition, (list, tuple)) and condition and \
                    isinstance(condition[0], Tensor):
                cond = torch.stack([c.reshape(-1).float() for c in condition])
            else:
                cond = torch.as_tensor(condition, dtype=torch.float32)
        except (TypeError, RuntimeError) as exc:
            raise ValueError(f"condition {condition!r} is not a vector of numbers: {exc}") from exc
        if cond.dim() == 1:
            cond = cond.unsqueeze(0)
        if cond.dim() != 2 or cond.shape[1] != dim:
            raise ValueError(f"condition must have size {dim} (one value per task bit or "
                             f"feature), got shape {tuple(cond.shape)}")
        if not torch.isfinite(cond).all():
            raise ValueError(f"condition has NaN or infinite values: {cond.tolist()[:2]}")
        if self._condition_range is not None:
            lo, hi = self._condition_range
            margin = max(hi - lo, 1.0)
            if float(cond.min()) < lo - margin or float(cond.max()) > hi + margin:
                raise ValueError(f"condition values {float(cond.min()):g}..{float(cond.max()):g} "
                                 f"lie far outside the training conditions' range {lo:g}..{hi:g}; "
                                 "the generator would be extrapolating blindly")
        if cond.shape[0] == 1:
            cond = cond.expand(n, dim)
        elif cond.shape[0] != n:
            raise ValueError(f"got {cond.shape[0]} conditions for n={n} samples; "
                             "give one condition, or one per sample")
        return cond.to(device)

    # ------------------------------------------------------------------ files
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the generator folder (``config.json`` + ``model.safetensors``), so that a crash at
        any instant leaves the old folder or the new one (:mod:`paramgen.methods.folder`)."""
        self._require_fitted()
        return folder.write_generator(self, path)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "Generator":
        """Rebuild a generator saved with :meth:`save_pretrained`, checking what it reads."""
        return folder.read_generator(cls, path)


class _KeySubset:
    """A view of a collection that shows only some keys of each checkpoint."""

    def __init__(self, ckpts, keys: Sequence[str]):
        self._ckpts, self._keys = ckpts, list(keys)
        self.conditions = getattr(ckpts, "conditions", None)
        self.runs = getattr(ckpts, "runs", None)
        self.info = getattr(ckpts, "info", None)

    def __len__(self) -> int:
        return len(self._ckpts)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        sd = self._ckpts[i]
        return {k: sd[k] for k in self._keys}

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def resolve_config(config_cls, preset: str | None, config: Any, overrides: dict) -> Any:
    """The config a generator is built with: a preset, a config object or dict, plus overrides."""
    if config is not None and preset is not None:
        raise ValueError("give either preset= or config=, not both")
    if isinstance(config, dict):
        return config_cls.from_dict({**config, **overrides})
    if config is None:
        return config_cls.from_preset(preset, **overrides)
    if not isinstance(config, config_cls):
        raise ValueError(f"config must be a {config_cls.__name__} or a dict, "
                         f"got {type(config).__name__}")
    return config.replace(**overrides) if overrides else config


def check_finite(tokens: Tensor, what: str) -> None:
    """Refuse to hand back non-finite generated values."""
    if not torch.isfinite(tokens).all():
        bad = int((~torch.isfinite(tokens)).sum())
        raise RuntimeError(f"{what}: {bad} generated values are NaN or infinite; the generator "
                           "is broken (retrain it, or check its files)")
