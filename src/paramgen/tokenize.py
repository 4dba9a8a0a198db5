"""Parameter tokenization: state dict <-> fixed-size tokens, with an exact inverse.

Every non-empty floating tensor is generated, 0-d scalars (a learned temperature) included: it is
normalised by the mean and std of that tensor over the whole collection (BatchNorm
``running_var`` goes through ``log`` first, because variances span orders of magnitude and must
stay positive), flattened, and cut into tokens of ``token_size`` values; the last token of a
layer is padded and the padding is masked out of every loss. Integer and boolean buffers
(``num_batches_tracked``) are copied from a reference checkpoint, never generated.

``center=True`` (``Tokenizer.fit``) normalises each value by the collection's mean of that value
instead of the tensor's mean, and by the std of what remains over the tensor: for a collection of
fine-tunes of one model (a task grid) the tokens then hold only what differs between the models,
at unit scale, and the shared start is kept in the tokenizer (``offsets``).

Tied tensors (one parameter under two keys, such as an embedding shared with the output layer)
are recognised as keys equal in every checkpoint of the collection: the first is generated, the
others are written as copies of it (``Tokenizer.tied``), so generated models stay tied.

Three ways to cut, the RPG paper's tokenization ablation:
  * ``layer``   (default) each tensor is cut on its own; a token never spans two tensors.
  * ``flat``    all tensors are concatenated, then cut; tokens may span tensors.
  * ``channel`` each output channel (first dimension) of a tensor of two or more dimensions is
                cut on its own, so a token never spans two channels.

Each token carries a position (layer index, index within layer) for the position embedding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from paramgen.io import SafetensorsStreamWriter, dtype_name, parse_dtype

MODES = ("layer", "flat", "channel")
LOG_TRANSFORM_SUFFIXES = ("running_var",)
_LOG_EPS = 1e-12
_LAYOUT = "tokenizer layout"  # named in errors about an unknown dtype
_FLATTEN_PIECE = 1 << 20  # values Tokenizer.flatten and .tokenize handle at a time


def slot_mask(valid: Tensor, token_size: int) -> Tensor:
    """Bool [..., token_size]: which slots of tokens holding ``valid`` [...] values each are
    values (a token's values fill its first slots; the rest is padding)."""
    return torch.arange(token_size, device=valid.device) < valid[..., None]


def is_generated(tensor: Tensor) -> bool:
    """Whether a tensor of a state dict is generated (else it is copied)."""
    return tensor.is_floating_point() and tensor.numel() > 0


@dataclass
class LayerLayout:
    """Where one generated tensor lives in the token sequence and how it is normalised."""

    key: str
    shape: list[int]
    dtype: str
    log_transform: bool
    mean: float
    std: float
    # Each chunk is (start, length) into the flattened tensor; a chunk is cut into tokens on its
    # own. ``layer`` mode has one chunk per tensor, ``channel`` mode one per output channel.
    chunks: list[list[int]] = field(default_factory=list)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class Tokenizer:
    """Turns state dicts of one architecture into token tensors [L, T] and back.

    Build it with :meth:`fit` over a collection (the normalisation statistics come from there),
    or from a saved layout with :meth:`from_config`.
    """

    def __init__(self, token_size: int = 256, mode: str = "layer",
                 layers: Sequence[LayerLayout] = (), copied: Mapping[str, Tensor] | None = None,
                 key_order: Sequence[str] = (), tied: Mapping[str, str] | None = None,
                 offsets: Mapping[str, Tensor] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"tokenization mode must be one of {MODES}, got {mode!r}")
        if token_size < 1:
            raise ValueError(f"token_size must be a positive integer, got {token_size}")
        self.token_size = int(token_size)
        self.mode = mode
        self.layers = list(layers)
        self.copied = dict(copied or {})
        self.key_order = list(key_order)
        # key -> the generated key it is tied to (equal in every training checkpoint).
        self.tied = dict(tied or {})
        # key -> the collection's mean of each value, flattened (center=True), subtracted before
        # the layer's std; {} when each tensor is normalised by its scalar mean.
        self.offsets = {k: v.reshape(-1) for k, v in (offsets or {}).items()}
        self._build_index()

    # ----------------------------------------------------------------------------- building
    @classmethod
    def fit(cls, state_dicts: Iterable[Mapping[str, Tensor]], token_size: int = 256,
            mode: str = "layer", center: bool = False) -> "Tokenizer":
        """Compute per-layer statistics over a collection and lay out the tokens; ``center``:
        each value centred on its own mean over the collection (module docstring)."""
        sums: dict[str, float] = {}
        value_sums: dict[str, Tensor] = {}  # center: per-value sums over the collection
        num_sds = 0
        sq_sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        reference: dict[str, Tensor] | None = None
        tied: dict[str, str] = {}
        for sd in state_dicts:
            num_sds += 1
            if reference is None:
                reference = {k: v.detach().clone() for k, v in sd.items()}
                tied = cls._tie_candidates(reference)
            elif list(sd.keys()) != list(reference.keys()):
                raise ValueError("state dicts of the collection have different keys: "
                                 f"{sorted(set(sd) ^ set(reference))}")
            else:
                for key, value in sd.items():
                    ref = reference[key]
                    if value.shape != ref.shape or value.dtype != ref.dtype:
                        raise ValueError(
                            f"state dicts of the collection differ at key {key!r}: shape "
                            f"{list(value.shape)} {value.dtype} here, {list(ref.shape)} "
                            f"{ref.dtype} in the first")
                tied = {k: src for k, src in tied.items() if torch.equal(sd[k], sd[src])}
            for key, value in sd.items():
                if not is_generated(reference[key]):
                    continue
                x = cls._forward_transform(key, value.detach().double())
                sums[key] = sums.get(key, 0.0) + float(x.sum())
                sq_sums[key] = sq_sums.get(key, 0.0) + float((x * x).sum())
                counts[key] = counts.get(key, 0) + x.numel()
                if center:
                    flat = x.reshape(-1)
                    value_sums[key] = value_sums[key] + flat if key in value_sums else flat
        if reference is None:
            raise ValueError("cannot fit a tokenizer on an empty collection")
        layers = []
        offsets: dict[str, Tensor] = {}
        for key, value in reference.items():
            if not is_generated(value) or key in tied:
                continue
            mean = sums[key] / counts[key]
            var = max(sq_sums[key] / counts[key] - mean * mean, 0.0)
            if center:  # the spread around each value's own mean
                offsets[key] = value_sums[key] / num_sds
                var = max((sq_sums[key] - num_sds * float((offsets[key] ** 2).sum()))
                          / counts[key], 0.0)
                mean = 0.0
            std = math.sqrt(var)
            # A tensor constant over the whole collection has no spread to normalise by.
            if not std > 1e-12 * max(1.0, abs(mean)):
                std = 1.0
            layers.append(LayerLayout(
                key=key, shape=list(value.shape), dtype=dtype_name(value.dtype),
                log_transform=key.endswith(LOG_TRANSFORM_SUFFIXES), mean=mean, std=std,
                chunks=cls._chunks(value.shape, mode)))
        copied = {k: v for k, v in reference.items() if not is_generated(v)}
        return cls(token_size, mode, layers, copied, key_order=list(reference.keys()), tied=tied,
                   offsets={k: v.float() for k, v in offsets.items()})

    @staticmethod
    def _tie_candidates(sd: Mapping[str, Tensor]) -> dict[str, str]:
        """key -> earlier generated key with the same shape, dtype and values in `sd`."""
        first_of: dict[tuple, list[str]] = {}
        tied: dict[str, str] = {}
        for key, value in sd.items():
            if not is_generated(value) or value.numel() < 2:
                continue  # equal scalars are common and mean nothing
            group = first_of.setdefault((tuple(value.shape), value.dtype), [])
            src = next((k for k in group if torch.equal(sd[k], value)), None)
            if src is None:
                group.append(key)
            else:
                tied[key] = src
        return tied

    @staticmethod
    def _chunks(shape: Sequence[int], mode: str) -> list[list[int]]:
        numel = math.prod(shape)
        if mode == "channel" and len(shape) >= 2:
            row = numel // shape[0]
            return [[c * row, row] for c in range(shape[0])]
        return [[0, numel]]

    @staticmethod
    def _forward_transform(key: str, x: Tensor) -> Tensor:
        if key.endswith(LOG_TRANSFORM_SUFFIXES):
            return torch.log(x.clamp_min(_LOG_EPS))
        return x

    def _build_index(self) -> None:
        """Lay the tokens out: how many values each token holds, and each token's position.

        Only O(tokens) tables are kept (no per-value index), so a tokenizer for a 10M-parameter
        model costs a few MB, and sampling can stream tokens without materialising the model.
        In every mode the valid values of a token are a prefix of it, and the valid values of all
        tokens, read in order, are the normalised tensors concatenated in layer order.
        """
        T = self.token_size
        self.num_values = sum(layer.numel for layer in self.layers)
        valid: list[Tensor] = []
        positions: list[Tensor] = []
        if self.mode == "flat":
            total = self.num_values
            n_tokens = math.ceil(total / T) if total else 0
            if n_tokens:
                counts = torch.full((n_tokens,), T, dtype=torch.int32)
                counts[-1] = total - (n_tokens - 1) * T
                valid.append(counts)
                # Tokens may span layers; the layer coordinate is that of the token's first value
                # and the in-layer coordinate counts the tokens starting in that layer.
                ends = torch.tensor([l.numel for l in self.layers]).cumsum(0)
                layer_of = torch.searchsorted(ends, torch.arange(n_tokens) * T, right=True)
                first = torch.searchsorted(layer_of, layer_of)
                positions.append(torch.stack([layer_of, torch.arange(n_tokens) - first], 1))
        else:
            for i, layer in enumerate(self.layers):
                j = 0
                for _, length in layer.chunks:
                    n = math.ceil(length / T)
                    counts = torch.full((n,), T, dtype=torch.int32)
                    counts[-1] = length - (n - 1) * T
                    valid.append(counts)
                    positions.append(torch.stack(
                        [torch.full((n,), i), torch.arange(j, j + n)], 1))
                    j += n
        self.token_valid = torch.cat(valid) if valid else torch.zeros(0, dtype=torch.int32)
        self.positions = (torch.cat(positions) if positions
                          else torch.zeros(0, 2, dtype=torch.long)).long().view(-1, 2)
        self._mask: Tensor | None = None

    # ----------------------------------------------------------------------------- shapes
    @property
    def num_tokens(self) -> int:
        return int(self.token_valid.shape[0])

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def generated_keys(self) -> list[str]:
        return [l.key for l in self.layers]

    def mask_rows(self, start: int, end: int) -> Tensor:
        """Bool [end - start, T]: which slots of tokens ``start:end`` hold values (not padding)."""
        return slot_mask(self.token_valid[start:end], self.token_size)

    @property
    def mask(self) -> Tensor:
        """Bool [L, T]: True where a token slot holds a value, False on padding."""
        if self._mask is None:
            self._mask = self.mask_rows(0, self.num_tokens)
        return self._mask

    # ----------------------------------------------------------------------------- transforms
    def flatten(self, sd: Mapping[str, Tensor]) -> Tensor:
        """The normalised generated values of one state dict as one float32 vector."""
        out = torch.empty(self.num_values, dtype=torch.float32)
        offset = 0
        for layer in self.layers:
            if layer.key not in sd:
                raise KeyError(f"state dict has no key {layer.key!r} that the tokenizer expects")
            value = sd[layer.key]
            if list(value.shape) != layer.shape:
                raise ValueError(f"key {layer.key!r} has shape {list(value.shape)}, "
                                 f"the tokenizer expects {layer.shape}")
            flat = value.detach().cpu().reshape(-1)
            # In pieces: float64 copies of a whole large layer would cost 16+ bytes a value.
            for start in range(0, layer.numel, _FLATTEN_PIECE):
                x = self._forward_transform(layer.key, flat[start:start + _FLATTEN_PIECE].double())
                if layer.key in self.offsets:
                    x = x - self.offsets[layer.key][start:start + x.numel()].double()
                out[offset + start:offset + start + x.numel()] = (x - layer.mean) / layer.std
            offset += layer.numel
        return out

    def denormalize(self, layer: LayerLayout, values: Tensor, start: int = 0) -> Tensor:
        """Normalised values of ``layer`` (the slice from value ``start``) -> values in the
        layer's own dtype."""
        v = values.double() * layer.std + layer.mean
        if layer.key in self.offsets:
            v = v + self.offsets[layer.key][start:start + v.numel()].double()
        if layer.log_transform:
            v = torch.exp(v)
        return v.to(parse_dtype(layer.dtype, _LAYOUT))

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Inverse of :meth:`flatten`, plus the copied tensors: a complete state dict."""
        if flat.dim() != 1 or flat.numel() != self.num_values:
            raise ValueError(f"expected a flat vector of {self.num_values} values, "
                             f"got shape {tuple(flat.shape)}")
        builder = StateDictBuilder(self)
        offset = 0
        for layer in self.layers:
            builder.put(layer, 0, self.denormalize(layer, flat[offset:offset + layer.numel]))
            offset += layer.numel
        return builder.result()

    def tokenize(self, sd: Mapping[str, Tensor]) -> Tensor:
        """One state dict -> tokens [L, T] (float32; padding is zero, see ``mask``)."""
        flat = self.flatten(sd)
        tokens = torch.zeros(self.num_tokens, self.token_size)
        # A block of tokens at a time: a boolean index over all of [L, T] would build an index
        # tensor of 16 bytes per value.
        ends = self.token_valid.cumsum(0, dtype=torch.int64)
        block = max(1, _FLATTEN_PIECE // self.token_size)
        for start in range(0, self.num_tokens, block):
            end = min(start + block, self.num_tokens)
            first = int(ends[start - 1]) if start else 0
            tokens[start:end][self.mask_rows(start, end)] = flat[first:int(ends[end - 1])]
        return tokens

    def detokenize(self, tokens: Tensor) -> dict[str, Tensor]:
        """Tokens [L, T] -> state dict with the original keys, shapes and dtypes."""
        if tuple(tokens.shape) != (self.num_tokens, self.token_size):
            raise ValueError(f"expected tokens of shape {(self.num_tokens, self.token_size)}, "
                             f"got {tuple(tokens.shape)}")
        builder = StateDictBuilder(self)
        stream = Detokenizer(self, builder)
        stream.feed(tokens.detach().cpu())
        stream.close()
        return builder.result()

    # ----------------------------------------------------------------------------- persistence
    def to_config(self) -> dict:
        return {
            "token_size": self.token_size,
            "mode": self.mode,
            "key_order": self.key_order,
            "layers": [asdict(l) for l in self.layers],
            "copied": {k: {"shape": list(v.shape), "dtype": dtype_name(v.dtype)}
                       for k, v in self.copied.items()},
            "tied": dict(self.tied),
            **({"centered": sorted(self.offsets)} if self.offsets else {}),
        }

    def copied_tensors(self) -> dict[str, Tensor]:
        """The tensors the tokenizer keeps, for saving beside model weights: the copied ones
        under a ``copied.`` prefix, the offsets of ``center`` under ``offset.``."""
        out = {f"copied.{k}": v for k, v in self.copied.items()}
        out.update({f"offset.{k}": v for k, v in self.offsets.items()})
        return out

    @classmethod
    def from_config(cls, config: Mapping, tensors: Mapping[str, Tensor]) -> "Tokenizer":
        """Rebuild a tokenizer from :meth:`to_config` and the saved ``copied.*`` tensors. A
        malformed layout (an edited or damaged config) is a ValueError naming the field."""
        check_layout(config)
        copied = {}
        for key, meta in config["copied"].items():
            name = f"copied.{key}"
            value = tensors.get(name)
            if not isinstance(value, Tensor) or value.numel() != math.prod(meta["shape"]):
                raise ValueError(f"{_LAYOUT}: the saved tensors lack the copied tensor {key!r} "
                                 f"of shape {meta['shape']}")
            copied[key] = value.to(parse_dtype(meta["dtype"], _LAYOUT)).reshape(meta["shape"])
        layers = [LayerLayout(**l) for l in config["layers"]]
        numel = {l.key: l.numel for l in layers}
        offsets = {}
        for key in config.get("centered") or []:
            value = tensors.get(f"offset.{key}")
            if key not in numel or not isinstance(value, Tensor) or value.numel() != numel[key]:
                raise ValueError(f"{_LAYOUT}: the saved tensors lack the offsets of the "
                                 f"centred tensor {key!r} ({numel.get(key)} values)")
            offsets[key] = value.float()
        return cls(config["token_size"], config["mode"], layers, copied, config["key_order"],
                   tied=config.get("tied") or {}, offsets=offsets)


def _is_int(v: object, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_shape(v: object) -> bool:
    return isinstance(v, list) and all(_is_int(s) for s in v)


def check_layout(config: object) -> None:
    """Every field of a saved tokenizer layout has its type, range and consistency, or a
    ValueError names the field."""
    def bad(name: str, what: str) -> ValueError:
        return ValueError(f"{_LAYOUT}: {name} {what}")

    if not isinstance(config, Mapping):
        raise bad("config", f"must be an object, got {type(config).__name__}")
    for name, kind in (("layers", list), ("copied", Mapping), ("key_order", list)):
        if not isinstance(config.get(name), kind):
            raise bad(repr(name), f"must be a {kind.__name__}")
    if not _is_int(config.get("token_size"), 1):
        raise bad("'token_size'", f"must be a positive int, got {config.get('token_size')!r}")
    if config.get("mode") not in MODES:
        raise bad("'mode'", f"must be one of {MODES}, got {config.get('mode')!r}")
    names = {f.name for f in fields(LayerLayout)}
    generated = []
    for i, layer in enumerate(config["layers"]):
        where = f"layers[{i}]"
        if not isinstance(layer, Mapping) or set(layer) != names:
            raise bad(where, f"must have exactly the fields {sorted(names)}")
        if not isinstance(layer["key"], str) or not _is_shape(layer["shape"]):
            raise bad(where, "needs a string 'key' and a 'shape' of non-negative ints")
        if not parse_dtype(layer["dtype"], f"{_LAYOUT}: {where}").is_floating_point:
            raise bad(where, f"dtype {layer['dtype']!r} is not a floating type")
        if not isinstance(layer["log_transform"], bool):
            raise bad(where, "'log_transform' must be true or false")
        for stat in ("mean", "std"):
            v = layer[stat]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(where, f"{stat!r} must be a finite number, got {v!r}")
        if not layer["std"] > 0:
            raise bad(where, f"'std' must be positive, got {layer['std']!r}")
        numel = math.prod(layer["shape"])
        chunks = layer["chunks"]
        if not (isinstance(chunks, list) and chunks and all(
                isinstance(c, list) and len(c) == 2 and _is_int(c[0]) and _is_int(c[1], 1)
                for c in chunks)) or sum(c[1] for c in chunks) != numel:
            raise bad(where, f"'chunks' must be [start, length] pairs covering its {numel} "
                             "values")
        generated.append(layer["key"])
    for key, meta in config["copied"].items():
        if not isinstance(meta, Mapping) or not _is_shape(meta.get("shape")):
            raise bad(f"copied[{key!r}]", "needs a 'shape' of non-negative ints and a 'dtype'")
        parse_dtype(meta.get("dtype"), f"{_LAYOUT}: copied[{key!r}]")
    tied = config.get("tied") or {}
    if not isinstance(tied, Mapping) or not all(
            isinstance(k, str) and v in generated for k, v in tied.items()):
        raise bad("'tied'", "must map keys to generated keys")
    order = config["key_order"]
    expected = set(generated) | set(config["copied"]) | set(tied)
    if not all(isinstance(k, str) for k in order) or len(set(order)) != len(order) or (
            set(order) != expected or len(order) != len(generated) + len(config["copied"])
            + len(tied)):
        raise bad("'key_order'", "must list every generated, copied and tied key exactly once")


class StateDictBuilder:
    """A sink for :class:`Detokenizer`: fills preallocated tensors, then gives the state dict."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.generated = {l.key: torch.empty(l.numel, dtype=parse_dtype(l.dtype, _LAYOUT))
                          for l in tokenizer.layers}

    def put(self, layer: LayerLayout, start: int, values: Tensor) -> None:
        self.generated[layer.key][start:start + values.numel()] = values

    def result(self) -> dict[str, Tensor]:
        shapes = {l.key: l.shape for l in self.tokenizer.layers}
        out: dict[str, Tensor] = {}
        for key in self.tokenizer.key_order:
            if key in self.generated:
                out[key] = self.generated[key].view(shapes[key])
            elif key in self.tokenizer.tied:
                out[key] = out[self.tokenizer.tied[key]].clone()
            else:
                out[key] = self.tokenizer.copied[key].clone()
        return out


class Detokenizer:
    """Streaming inverse of :meth:`Tokenizer.tokenize`: feed tokens in order, a block at a time.

    Each block's values are denormalised and cast at once and handed to ``sink.put(layer,
    start, values)`` (``start`` counts values within the layer), so no more than one block is
    ever held here: a model of any size can be written out as its tokens are generated.
    """

    def __init__(self, tokenizer: Tokenizer, sink) -> None:
        self.tokenizer = tokenizer
        self.sink = sink
        self.next_token = 0
        self._layer = 0
        self._filled = 0  # values of the current layer already handed to the sink

    def feed(self, tokens: Tensor) -> None:
        """The next ``tokens.shape[0]`` tokens [k, T] of the model."""
        tk = self.tokenizer
        start, end = self.next_token, self.next_token + tokens.shape[0]
        if tokens.dim() != 2 or tokens.shape[1] != tk.token_size or end > tk.num_tokens:
            raise ValueError(f"tokens {tuple(tokens.shape)} do not fit at token {start} of "
                             f"{tk.num_tokens} (token size {tk.token_size})")
        values = tokens[tk.mask_rows(start, end)]
        self.next_token = end
        while values.numel():
            layer = tk.layers[self._layer]
            take = min(layer.numel - self._filled, values.numel())
            done = self._filled
            self.sink.put(layer, done, tk.denormalize(layer, values[:take], done))
            values = values[take:]
            self._filled += take
            if self._filled == layer.numel:
                self._layer += 1
                self._filled = 0

    def close(self) -> None:
        if self.next_token != self.tokenizer.num_tokens:
            raise ValueError(f"the model was cut short: {self.next_token} of "
                             f"{self.tokenizer.num_tokens} tokens given")


class SafetensorsSink:
    """A sink for :class:`Detokenizer` that writes the model straight to a ``.safetensors`` file
    (copied tensors included, in the state dict's key order) without holding it in memory."""

    def __init__(self, tokenizer: Tokenizer, path, metadata: Mapping[str, str] | None = None
                 ) -> None:
        self.tokenizer = tokenizer
        layouts = {l.key: l for l in tokenizer.layers}
        # Values of tie sources, kept until their tied copies are written (later in the file).
        self._held: dict[str, list[Tensor]] = {src: [] for src in tokenizer.tied.values()}
        entries = []
        for key in tokenizer.key_order:
            if key in layouts or key in tokenizer.tied:
                lay = layouts[tokenizer.tied.get(key, key)]
                entries.append((key, lay.shape, parse_dtype(lay.dtype, _LAYOUT)))
            else:
                v = tokenizer.copied[key]
                entries.append((key, list(v.shape), v.dtype))
        self.writer = SafetensorsStreamWriter(path, entries, dict(metadata or {}))

    def _copy_due(self) -> None:
        tk = self.tokenizer
        while (name := self.writer.next_name) is not None and (name in tk.copied
                                                               or name in tk.tied):
            if name in tk.copied:
                self.writer.write(name, tk.copied[name])
            else:
                for part in self._held[tk.tied[name]]:
                    self.writer.write(name, part)

    def put(self, layer: LayerLayout, start: int, values: Tensor) -> None:
        self._copy_due()
        self.writer.write(layer.key, values)
        if layer.key in self._held:
            self._held[layer.key].append(values.detach().cpu().clone())

    def close(self):
        self._copy_due()
        return self.writer.close()

    def abort(self) -> None:
        self.writer.abort()
