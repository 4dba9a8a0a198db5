"""Write docs/api.md: paramgen's public names, each with its signature and the first line of its
docstring, read from the code itself so the page cannot drift from it.

    python scripts/api_reference.py            # rewrite docs/api.md
    python scripts/api_reference.py --check    # exit 1 if docs/api.md is not what the code says

tests/test_api_reference.py runs the check.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"

# (section, module, names): what a user reaches as pg.X or through the public subpackages.
# A class lists its public methods and properties below its own line.
SECTIONS: list[tuple[str, str, list[str]]] = [
    ("Collections", "paramgen", ["CheckpointSet", "CheckpointWriter"]),
    ("Generators", "paramgen", ["Generator", "RPG", "PDiff", "IGPG", "load_generator",
                                "register_method"]),
    ("Generator settings", "paramgen", ["RPGConfig", "PDiffConfig", "IGPGConfig"]),
    ("One basin (`pg.align`)", "paramgen.align", ["align", "basin_test", "barrier",
                                                  "prepare_for_training"]),
    ("Datasets and tasks (`pg.data`)", "paramgen.data", ["load", "list_datasets", "relabel",
                                                        "all_tasks", "parse_bits",
                                                        "parse_task_spec"]),
    ("Architectures (`pg.zoo`)", "paramgen.zoo", ["create", "list_models", "register"]),
    ("Metrics (`pg.metrics`)", "paramgen.metrics", ["accuracy", "balanced_accuracy", "predict"]),
    ("Prompts (`pg.prompts`)", "paramgen.prompts", ["parse_prompt", "read_prompt",
                                                   "describe_bits"]),
    ("Evaluation (`paramgen.evaluate`)", "paramgen.evaluate", ["evaluate", "write_report",
                                                              "novelty", "lmc",
                                                              "noise_baseline",
                                                              "mixture_baseline"]),
]


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    line = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    return line or "(no description)"


def _signature(obj: object) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    return sig.replace("'", "")


# The engine's hooks (docs/architecture.md, *Training engine*): public for the engine, not for
# a user of a generator.
ENGINE_HOOKS = {"training_stages", "training_modules", "training_loss", "on_stage_start",
                "on_stage_end", "save_due"}


def _members(cls: type) -> list[tuple[str, object]]:
    """A class's own public methods and properties, inherited ones from paramgen included."""
    seen, out = set(ENGINE_HOOKS), []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("paramgen"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if callable(value) or isinstance(value, property):
                seen.add(name)
                out.append((name, value))
    return sorted(out)


def render() -> str:
    lines = ["# paramgen API", "",
             "Every public name, its signature and what it does, written by "
             "`python scripts/api_reference.py` from the code's own docstrings (a test fails when "
             "this page and the code disagree). `import paramgen as pg`; the generator contract "
             "is docs/architecture.md, *Generator*.", ""]
    for title, module_name, names in SECTIONS:
        module = importlib.import_module(module_name)
        lines += [f"## {title}", ""]
        for name in names:
            obj = getattr(module, name)
            prefix = "pg" if module_name == "paramgen" else module_name.replace("paramgen", "pg")
            if inspect.isclass(obj):
                lines.append(f"- **`{prefix}.{name}{_signature(obj)}`**: {_first_line(obj)}")
                for member, value in _members(obj):
                    if isinstance(value, property):
                        lines.append(f"  - `.{member}` (property): {_first_line(value)}")
                    else:
                        lines.append(f"  - `.{member}{_signature(value)}`: "
                                     f"{_first_line(value)}")
            else:
                lines.append(f"- **`{prefix}.{name}{_signature(obj)}`**: {_first_line(obj)}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when docs/api.md differs from what the code says")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.is_file() or DOC.read_text() != text:
            print(f"{DOC} is out of date: run python scripts/api_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
