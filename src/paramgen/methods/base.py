"""The contract every parameter generator keeps, and what they share.

A generator learns a distribution over the state dicts of one collection and samples from it:

* ``fit(ckpts, steps=None, seed=0, workdir=None, progress=True, callback=None)``: trains through
  the one engine (:mod:`paramgen.training`); ``callback(step, loss)`` after every step;
* ``sample(n, condition=None, seed=0, ...)``: ``n`` state dicts with exactly the training keys,
  shapes and dtypes; ``sample_to_files(paths, ...)`` writes them to ``.safetensors`` files;
* ``save_pretrained(path)`` / ``from_pretrained(path)``: a folder with ``config.json`` and
  ``model.safetensors`` (diffusers-style), the same for every method; ``load_generator`` loads
  any of them;
* ``collection_info``: what the training collection was (architecture, dataset, ...).

Shared here: the config a generator is built from (preset, config object or dict, overrides),
validation of conditions, partial generation (a chosen subset of keys is generated, the rest
copied from a reference checkpoint), and the generator folder format with its checks on load
(checksum of the weights, no NaN or Inf, every tensor the config names).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from paramgen import io
from paramgen.config import GeneratorConfig
from paramgen.durable import read_committed_json, write_pair

FORMAT = "paramgen.generator"
FORMAT_VERSION = 1


class Generator(ABC):
    """Learns a distribution over the state dicts of one architecture and samples from it."""

    method: str = ""
    config_cls: type[GeneratorConfig]
    default_preset: str = "cpu"

    def __init__(self, preset: str | None = None, config: GeneratorConfig | dict | None = None,
                 **overrides: Any):
        # With neither preset nor config, fit() may pick a preset from the collection.
        self._auto_preset = preset is None and config is None
        self._overrides = dict(overrides)
        self.config = resolve_config(self.config_cls, preset or (
            self.default_preset if config is None else None), config, overrides)
        self.preset = preset or (self.default_preset if config is None else None)
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
    @abstractmethod
    def fit(self, ckpts, steps: int | None = None, seed: int = 0,
            workdir: str | os.PathLike | None = None, progress: bool = True,
            callback=None) -> "Generator":
        """Train on a CheckpointSet; with ``workdir``, save periodically and resume from there."""

    @abstractmethod
    def sample(self, n: int, condition: Any = None, seed: int = 0,
               **options: Any) -> list[dict[str, Tensor]]:
        """``n`` new state dicts with exactly the training keys, shapes and dtypes."""

    def sample_to_files(self, paths: Sequence[str | os.PathLike], condition: Any = None,
                        seed: int = 0, metadata: dict[str, str] | None = None,
                        **options: Any) -> list[Path]:
        """Sample ``len(paths)`` models and write each to its ``.safetensors`` path.

        This default holds the models in memory first; RPG overrides it to stream the values
        to disk as they are generated.
        """
        models = self.sample(len(paths), condition=condition, seed=seed, **options)
        return [io.save_safetensors(p, sd, metadata) for p, sd in zip(paths, models)]

    def sample_to_peft(self, out_dirs: Sequence[str | os.PathLike], condition: Any = None,
                       seed: int = 0, **options: Any) -> list[Path]:
        """Sample adapters into PEFT folders (see paramgen.adapters.export.sample_to_peft)."""
        from paramgen.adapters.export import sample_to_peft

        return sample_to_peft(self, out_dirs, condition=condition, seed=seed, **options)

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
        return getattr(self, "network", None) is not None

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"this {self.method} generator is not trained: call fit() or "
                               "from_pretrained()")

    # ------------------------------------------------------------------ config and engine
    def _choose_preset(self, ckpts) -> None:
        """With no preset and no config given, a method may pick one from the collection."""
        preset = self.auto_preset_for(ckpts) if self._auto_preset else None
        if preset is not None and preset != self.preset:
            self.preset = preset
            self.config = self.config_cls.from_preset(preset, **self._overrides)

    def auto_preset_for(self, ckpts) -> str | None:
        return None

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
        """Write ``model.safetensors`` and ``config.json`` (which names the weights' checksum),
        crash-consistently (:func:`paramgen.durable.write_pair`)."""
        self._require_fitted()
        path = Path(path)
        tensors = dict(self._saved_tensors())
        tensors.update({f"reference.{k}": v for k, v in self.reference.items()})
        config = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "method": self.method,
            "preset": self.preset, "config": self.config.to_dict(),
            "condition_dim": self._condition_dim,
            "condition_range": list(self._condition_range) if self._condition_range else None,
            "generated_keys": self.generated_keys, "key_order": self.key_order,
            "collection_info": self.collection_info,
            **self._saved_config(),
        }
        write_pair(path / "model.safetensors", tensors, path / "config.json", config)
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "Generator":
        """Rebuild a generator saved with :meth:`save_pretrained`, checking what it reads."""
        path = Path(path)
        config = read_config(path, cls.method)
        tensors = read_weights(path, config)
        where = path / "config.json"
        try:
            gen = cls(config=cls.config_cls.from_dict(config["config"]))
        except KeyError as exc:
            raise ValueError(f"{where} lacks the entry {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        gen.preset = config.get("preset")
        gen.collection_info = dict(config.get("collection_info") or {})
        gen._condition_dim = config.get("condition_dim")
        rng = config.get("condition_range")
        gen._condition_range = tuple(rng) if rng else None
        gen.generated_keys = list(config.get("generated_keys") or [])
        gen.key_order = list(config.get("key_order") or [])
        gen.reference = {}
        for k in gen.key_order:
            if k in set(gen.generated_keys):
                continue
            name = f"reference.{k}"
            if name in tensors:
                gen.reference[k] = tensors[name]
        try:
            gen._restore(config, tensors, path)
        except KeyError as exc:
            raise ValueError(f"{where} lacks the entry {exc}") from exc
        return gen


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def read_config(path: str | os.PathLike, method: str | None = None) -> dict:
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: {path} is not a saved generator "
                                "(save one with save_pretrained or `paramgen train`)")
    try:
        config = read_committed_json(cfg_path, path / "model.safetensors")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{cfg_path} is not a paramgen generator config (format {got!r})")
    version = config.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{cfg_path} has format_version {version!r}; this paramgen reads up to "
                         f"{FORMAT_VERSION}: upgrade paramgen")
    if not isinstance(config.get("config"), dict):
        raise ValueError(f"{cfg_path}: 'config' must be a mapping of settings")
    if method is not None and config.get("method") != method:
        raise ValueError(f"{cfg_path} holds a {config.get('method')!r} generator, not {method!r}")
    return config


def read_weights(path: Path, config: dict) -> dict[str, Tensor]:
    """model.safetensors beside a config: checksum, readability, finite values."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found beside {path / 'config.json'}")
    digest = config.get("weights_sha256")
    if digest is not None and _sha256(weights) != digest:
        raise ValueError(f"{weights} does not match the checksum in {path / 'config.json'}: "
                         "the file was changed or damaged after it was saved")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights} is not a readable safetensors file: {exc}") from exc
    for k, v in tensors.items():
        if v.is_floating_point() and v.numel() and not torch.isfinite(v).all():
            raise ValueError(f"{weights}: tensor {k!r} holds NaN or infinite values")
    return tensors


def load_generator(path: str | os.PathLike) -> Generator:
    """Load any saved generator, whatever its method."""
    from paramgen.methods.registry import get_method

    config = read_config(path)
    name = config.get("method")
    try:
        cls = get_method(str(name))
    except ValueError as exc:
        raise ValueError(f"{Path(path) / 'config.json'}: {exc}") from exc
    return cls.from_pretrained(path)


def load_module(module: torch.nn.Module, tensors: Mapping[str, Tensor], prefix: str,
                where: Path) -> None:
    """Load the ``prefix.*`` tensors of a generator folder into a freshly built module, exactly:
    every name present and of its shape, nothing extra."""
    own = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    want = module.state_dict()
    missing = sorted(set(want) - set(own))
    unexpected = sorted(set(own) - set(want))
    wrong = sorted(k for k in set(want) & set(own) if want[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{where / 'model.safetensors'} does not match its config.json "
                         f"({prefix}): missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"wrong shape {wrong[:5]}")
    module.load_state_dict(own)
    module.eval()


def check_finite(tokens: Tensor, what: str) -> None:
    """Refuse to hand back non-finite generated values."""
    if not torch.isfinite(tokens).all():
        bad = int((~torch.isfinite(tokens)).sum())
        raise RuntimeError(f"{what}: {bad} generated values are NaN or infinite; the generator "
                           "is broken (retrain it, or check its files)")


# Tensors of this many bytes or more are fingerprinted by their rows' sums (float64), not by
# every byte: hashing a few GB byte by byte costs more than it is worth for a resume check.
FINGERPRINT_SUMS_FROM = 1 << 28


class Fingerprint:
    """:func:`data_fingerprint` built up a piece at a time, with the same digest.

    ``add(t)`` hashes a whole tensor (or None); ``begin(shape, dtype)`` then ``feed(part)`` hash
    a tensor given in slices along its first dimension (a checkpoint's tokens as they are made,
    never all held at once). Both feed the hash the same bytes, so the digest of a collection
    does not depend on how it was held.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._by_sums = False

    def add(self, tensor: Tensor | None) -> None:
        if tensor is None:
            self._hash.update(b"none")
            return
        self.begin(tuple(tensor.shape), tensor.dtype)
        self.feed(tensor)

    def begin(self, shape: Sequence[int], dtype: torch.dtype) -> None:
        """Start a tensor of ``shape`` and ``dtype`` whose slices follow through :meth:`feed`."""
        shape = tuple(int(s) for s in shape)
        self._hash.update(str((shape, str(dtype))).encode())
        size = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        self._by_sums = size >= FINGERPRINT_SUMS_FROM

    def feed(self, part: Tensor) -> None:
        """The next slice (along the first dimension) of the tensor begun, or all of it."""
        part = part.detach().cpu().contiguous()
        if self._by_sums:  # a row's sum does not depend on the rows around it: slices agree
            self._hash.update(part.sum(dim=-1, dtype=torch.float64).numpy())
        else:  # the buffer itself: no copy of the data
            self._hash.update(part.reshape(-1).view(torch.uint8).numpy())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:16]


def data_fingerprint(*tensors: Tensor | None) -> str:
    """A short hash identifying training data (shape, and every value)."""
    fingerprint = Fingerprint()
    for t in tensors:
        fingerprint.add(t)
    return fingerprint.hexdigest()
