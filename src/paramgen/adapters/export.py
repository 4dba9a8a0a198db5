"""Generated adapters out as PEFT folders, for any generator trained on adapter weights.

The generator samples state dicts with exactly the keys of its training adapters (peft's
``adapter_model.safetensors`` keys); the adapter config comes from the collection the generator
was trained on (``info["peft_config"]``, kept by ``paramgen collect --lora`` and
``CheckpointSet.import_peft``) or from ``peft_config=`` (a dict, a PEFT folder or its
``adapter_config.json``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

__all__ = ["resolve_peft_config", "sample_to_peft"]


def resolve_peft_config(generator: Any, peft_config: Any = None) -> dict[str, Any]:
    """The adapter config samples are written with (see the module docstring)."""
    from paramgen.adapters.folders import ADAPTER_CONFIG, read_adapter_config

    if peft_config is None:
        info = getattr(generator, "collection_info", None) or {}
        peft_config = info.get("peft_config")
        if peft_config is None:
            raise ValueError(
                f"this {type(generator).__name__} generator was not trained on an adapter "
                "collection (its collection info has no 'peft_config'); collect one with "
                "`paramgen collect --lora` or CheckpointSet.import_peft, or pass "
                "peft_config= (a PEFT folder or its adapter_config.json)")
    if isinstance(peft_config, (str, os.PathLike)):
        path = Path(peft_config)
        path = path / ADAPTER_CONFIG if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"peft_config {str(peft_config)!r}: {path} does not exist")
        peft_config = read_adapter_config(path)
    if not isinstance(peft_config, dict) or "peft_type" not in peft_config:
        raise ValueError(f"peft_config must be a PEFT adapter config with a 'peft_type', got "
                         f"{type(peft_config).__name__}")
    return dict(peft_config)


def sample_to_peft(generator: Any, out_dirs: Sequence[str | os.PathLike] | str | os.PathLike,
                   seed: int = 0, peft_config: Any = None, **options: Any) -> list[Path]:
    """Sample ``len(out_dirs)`` adapters and write each as a PEFT folder (adapter_config.json +
    adapter_model.safetensors), loadable with ``peft.PeftModel.from_pretrained(base, folder)``.

    ``options`` (what the generator declares: ``condition=``, ``steps=``, ...) go to
    ``generator.sample``. Returns the folders.
    """
    from paramgen.adapters.folders import write_peft_folder

    if isinstance(out_dirs, (str, os.PathLike)):
        out_dirs = [out_dirs]
    dirs = [Path(d) for d in out_dirs]
    if not dirs:
        raise ValueError("sample_to_peft: out_dirs is empty")
    config = resolve_peft_config(generator, peft_config)
    samples = generator.sample(len(dirs), seed=seed, **options)
    if not any("lora_" in k for k in samples[0]):
        shown = ", ".join(list(samples[0])[:4])
        raise ValueError(f"the generator's samples hold no LoRA weights (keys {shown}, ...): it "
                         "was trained on whole models, not adapters")
    meta = {"paramgen_seed": str(seed)}
    condition = options.get("condition")
    if isinstance(condition, str):
        meta["paramgen_condition"] = condition
    return [write_peft_folder(d, sd, config, metadata=meta) for d, sd in zip(dirs, samples)]
