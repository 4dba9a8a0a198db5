"""A user's own model and data on the command line: ``--model FILE.py:CLASS``, ``--model-args``,
``--in-shape``, ``--data FILE.npz|FILE.pt``, and checkpoint folders that are not CheckpointSets
(a plain folder of state dicts, one subfolder per run).

Shared by `import`, `train`, `align` and `eval`, so each says the same thing the same way.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

MODEL_HELP = ("your own architecture, as FILE.py:CLASS (a torch.nn.Module subclass whose "
              "state_dict has the checkpoints' keys and shapes). Note: FILE.py is imported, so "
              "its code runs, as `python FILE.py` would run it; give only files you trust")
# Why the command line reads .pt by default while the library asks for allow_pickle=True: the
# command reads with torch.load(weights_only=True), torch's mode for files from elsewhere, and a
# user pointing `train --ckpts` at a folder of their own .pt files has already said they want it.
PICKLE_NOTE = (".pt/.pth files are read with torch.load(weights_only=True), torch's mode for "
               "loading files from elsewhere: its restricted unpickler rebuilds only tensors and "
               "plain containers and refuses any other object, so it does not run the file's "
               "code; convert to .safetensors to avoid pickles altogether")


def add_model_arguments(parser: argparse.ArgumentParser, what: str,
                        in_shape: bool = True) -> None:
    """--model, --model-args (and --in-shape) with `what` saying what the model is used for."""
    parser.add_argument("--model", metavar="FILE.py:CLASS", default=None,
                        help=f"{MODEL_HELP}; {what}")
    parser.add_argument("--model-args", metavar="JSON", default=None,
                        help="keyword arguments for CLASS, as a JSON object, e.g. "
                             "'{\"hidden\": 32}' (default: none)")
    if in_shape:
        parser.add_argument("--in-shape", metavar="D[,D...]", default=None,
                            help="shape of one input example for --model, e.g. 64 or 1,8,8 "
                                 "(default: the collection's, or the first Linear layer's "
                                 "in_features)")


def load_model(spec: str, model_args: str | None = None) -> nn.Module:
    """An instance of CLASS from FILE.py (``--model FILE.py:CLASS``), in eval mode."""
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise ValueError(f"--model {spec!r}: expected FILE.py:CLASS, e.g. --model net.py:Net")
    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"--model {spec}: no such file {path}")
    kwargs = parse_model_args(model_args)
    module_name = f"paramgen_user_model_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ValueError(f"--model {spec}: {path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    # Runs the user's file: the help of --model says so.
    loader_spec.loader.exec_module(module)
    cls = getattr(module, name, None)
    if cls is None:
        found = sorted(k for k, v in vars(module).items()
                       if isinstance(v, type) and issubclass(v, nn.Module)
                       and v.__module__ == module_name)
        raise ValueError(f"--model {spec}: {path} defines no {name!r}; its nn.Module classes: "
                         f"{', '.join(found) or 'none'}")
    try:
        model = cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"--model {spec}: {name}(**--model-args) failed: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model {spec}: {name} is not a torch.nn.Module "
                         f"(got {type(model).__name__})")
    return model.eval()


def parse_model_args(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--model-args {text!r}: not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"--model-args {text!r}: expected a JSON object such as "
                         "'{\"hidden\": 32}'")
    return value


def check_fits(model: nn.Module, ckpts: Any, spec: str, where: str) -> None:
    """The model's state dict against the collection's keys and shapes, in command words."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(shape) for k, (shape, _) in ckpts.spec.items()}
    if own == theirs:
        return
    missing, extra = sorted(set(theirs) - set(own)), sorted(set(own) - set(theirs))
    shapes = [f"{k} {list(own[k])} vs {list(theirs[k])}" for k in sorted(set(own) & set(theirs))
              if own[k] != theirs[k]]
    parts = [f"keys only in the checkpoints: {', '.join(missing[:5])}" if missing else "",
             f"keys only in the model: {', '.join(extra[:5])}" if extra else "",
             f"other shapes (model vs checkpoints): {'; '.join(shapes[:5])}" if shapes else ""]
    raise ValueError(f"--model {spec} does not fit the checkpoints of {where} "
                     f"({'; '.join(p for p in parts if p)}); check CLASS and --model-args")


def parse_in_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"--in-shape {text!r}: expected positive sizes such as 64 or 1,8,8")
    return shape


def example_input(model: nn.Module, ckpts: Any, in_shape: str | None) -> torch.Tensor:
    """A batch of two noise inputs for tracing `model`: --in-shape, else the collection's
    in_shape, else the first Linear layer's in_features."""
    shape = parse_in_shape(in_shape) or tuple(ckpts.info.get("in_shape") or ())
    if not shape:
        first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d,
                                                                   nn.Conv2d))), None)
        if not isinstance(first, nn.Linear):
            raise ValueError("--model: give --in-shape (the shape of one input example, e.g. "
                             "1,8,8); it cannot be read from a model whose first layer is not "
                             "Linear")
        shape = (first.in_features,)
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, *shape, generator=gen)


DATA_HELP = ("the test data: a built-in dataset name (digits, mnist1d, ...) or your own "
             "tensors in FILE.npz or FILE.pt holding x_test and y_test (integer class labels); "
             ".pt is read with torch.load(weights_only=True)")


def load_data(value: str | None) -> str | tuple[torch.Tensor, torch.Tensor] | None:
    """--data: a dataset name as it is, or (x_test, y_test) read from FILE.npz / FILE.pt."""
    if value is None or not value.endswith((".npz", ".pt", ".pth")):
        return value
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"--data {value}: no such file")
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors come in many types
            raise ValueError(f"--data {value}: could not be read with "
                             f"torch.load(weights_only=True) ({type(exc).__name__}: {exc})"
                             ) from None
        if not isinstance(obj, dict):
            raise ValueError(f"--data {value}: holds a {type(obj).__name__}; expected a dict "
                             "with x_test and y_test")
        tensors = obj
    missing = [k for k in ("x_test", "y_test") if k not in tensors]
    if missing:
        raise ValueError(f"--data {value}: no {' or '.join(missing)} (it holds "
                         f"{', '.join(sorted(map(str, tensors))) or 'nothing'})")
    x, y = tensors["x_test"], tensors["y_test"]
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"--data {value}: x_test and y_test must be arrays/tensors")
    if x.shape[0] != y.shape[0] or y.dim() != 1:
        raise ValueError(f"--data {value}: x_test has {x.shape[0]} rows and y_test shape "
                         f"{list(y.shape)}; expected one integer label per row")
    if y.dtype.is_floating_point:
        if not torch.equal(y, y.round()):
            raise ValueError(f"--data {value}: y_test must hold integer class labels")
    return x.float(), y.long()


def is_plain_folder(path: str | Path) -> bool:
    """A folder that is not a CheckpointSet but holds state dict files, or run subfolders."""
    from paramgen.checkpoints import MANIFEST
    from paramgen.checkpoints.format import PICKLE_SUFFIXES, SAFE_SUFFIXES

    path = Path(path)
    if not path.is_dir() or (path / MANIFEST).exists():  # a damaged set is still a set
        return False
    suffixes = SAFE_SUFFIXES + PICKLE_SUFFIXES

    def holds(d: Path) -> bool:
        return any(p.is_file() and p.suffix in suffixes for p in d.iterdir())

    return holds(path) or any(d.is_dir() and not d.name.startswith(".") and holds(d)
                              for d in path.iterdir())


def found_line(ckpts: Any, folder: str | Path) -> str:
    """What an import found: checkpoints, runs, keys, parameters."""
    names = sorted({ckpts.provenance(i).get("run_name", "") for i in range(len(ckpts))})
    runs = len(set(ckpts.runs))
    per_run = f" ({', '.join(names)})" if runs > 1 and len(names) <= 6 else ""
    return (f"found {len(ckpts)} checkpoints in {runs} run{'s' if runs != 1 else ''}{per_run} "
            f"in {folder}: {len(ckpts.keys)} keys, {ckpts.num_params:,} parameters each")


def open_collection(path: str | Path, say=print) -> Any:
    """A CheckpointSet folder, or a plain folder of state dicts imported in memory (saying what
    was found)."""
    from paramgen.checkpoints import CheckpointSet

    if is_plain_folder(path):
        ckpts = CheckpointSet.import_folder(path, allow_pickle=True)  # see PICKLE_NOTE
        say(found_line(ckpts, path))
        return ckpts
    return CheckpointSet.load(path)
