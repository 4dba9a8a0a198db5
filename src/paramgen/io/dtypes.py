"""Data types: the one table of safetensors header codes, and the names manifests and generator
configs spell dtypes with."""

from __future__ import annotations

import torch

# Built with getattr so an older torch that lacks a type (float8, unsigned ints) still imports
# this module.
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    code: getattr(torch, name)
    for code, name in [
        ("F64", "float64"), ("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"),
        ("I64", "int64"), ("I32", "int32"), ("I16", "int16"), ("I8", "int8"),
        ("U8", "uint8"), ("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64"),
        ("BOOL", "bool"), ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"),
        ("C64", "complex64"),
    ]
    if hasattr(torch, name)
}
# dtype -> safetensors code, for writers.
SAFETENSORS_CODES: dict[torch.dtype, str] = {dtype: code
                                             for code, dtype in SAFETENSORS_DTYPES.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32: the spelling manifests and configs use."""
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str, where: str = "dtype") -> torch.dtype:
    """Inverse of `dtype_name`; a ValueError naming `where` for anything else."""
    dt = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"{where}: unknown dtype {name!r}")
    return dt
