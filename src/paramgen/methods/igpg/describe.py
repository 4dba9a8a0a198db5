"""The conditioning texts: an architecture described from its layout, and a dataset card.

IGPG conditions its prior on an architecture embedding (a standard text description of the
network, embedded by a language model) and a dataset embedding. Ours are both texts embedded by
the same offline sentence encoder:

* the architecture text lists the generated tensors in order, each with the kind of layer its
  shape implies (conv2d, conv1d, linear, norm, batch-norm statistic, embedding-like tensor) and,
  for a tensor inside an indexed container, its block index within the depth and its role
  there (``block 2 of 4 fc1 linear 24->24``), plus
  ``info["architecture"]`` free text when a collection gives it;
* the dataset text is ``info["dataset"]`` (or the collection's ``info["data"]`` name). Where the
  dataset is one paramgen can load, we append its card (description, input shape, classes,
  training-set size). IGPG mean-pools CLIP embeddings of a balanced image sample instead; we use
  the card because an image encoder does not fit non-image data (mnist1d) and ships no offline
  weights here, while the card is known without loading the data.
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor

from paramgen.methods.igpg.transfer import depths, split_block


def layer_kind(key: str, shape: tuple[int, ...]) -> str:
    """What a tensor is, guessed from its name and shape."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf in ("running_mean", "running_var"):
        return f"batchnorm {leaf.replace('_', ' ')} {shape[0]}"
    dims = "x".join(str(d) for d in shape)
    if leaf == "bias":
        return f"bias {dims}"
    if len(shape) == 4:
        return f"conv2d {shape[1]}->{shape[0]} kernel {shape[2]}x{shape[3]}"
    if len(shape) == 3:
        if leaf == "weight":
            return f"conv1d {shape[1]}->{shape[0]} kernel {shape[2]}"
        return f"tensor {dims}"
    if len(shape) == 2:
        return f"linear {shape[1]}->{shape[0]}" if leaf == "weight" else f"matrix {dims}"
    if len(shape) == 1:
        return f"norm {shape[0]}" if leaf == "weight" else f"vector {shape[0]}"
    return f"tensor {dims}"


def describe_architecture(layout: Mapping[str, tuple[tuple[int, ...], str]],
                          free_text: str | None = None) -> str:
    """A standard description of a network from its generated tensors {key: (shape, dtype)}."""
    total = 0
    parts = []
    blocks = depths(list(layout))
    for key, (shape, _) in layout.items():
        n = 1
        for d in shape:
            n *= int(d)
        total += n
        kind = layer_kind(key, tuple(int(d) for d in shape))
        p = split_block(key)
        # where the tensor sits in the depth and which role it has there: what a model of
        # another depth shares with this one
        parts.append(f"block {p[1] + 1} of {blocks[p[0]]} {p[2].rsplit('.', 1)[0]} {kind}"
                     if p else kind)
    head = f"network with {len(parts)} parameter tensors, {total} parameters"
    text = f"{head}: " + ", ".join(parts)
    if free_text:
        text = f"{free_text.strip()}. {text}"
    return text


def generated_layout(sd: Mapping[str, Tensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    from paramgen.tokenize import is_generated

    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in sd.items() if is_generated(v)}


def dataset_name(info: Mapping) -> str | None:
    """A collection's dataset text: ``info["dataset"]``, else its ``info["data"]`` name."""
    for key in ("dataset", "data"):
        value = info.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def dataset_text(name: str) -> str:
    """The text embedded for a dataset: the name, plus its card when paramgen knows it."""
    from paramgen import data

    try:
        card = data.DATASETS[data.loaders.canonical_name(name)]
    except ValueError:
        return f"dataset: {name}"
    shape = "x".join(str(d) for d in card.input_shape)
    # the canonical name, so that "Digits" and "digits" are one condition
    return (f"dataset: {card.name}. {card.description}; inputs of shape {shape}, "
            f"{card.num_classes} classes, {card.n_train} training examples")
