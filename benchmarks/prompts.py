"""How often a free-form prompt is read exactly right, refused, or read wrongly.

Reads ``benchmarks/data/prompts_eval.json`` (prompts written apart from the grammar's own
examples, each with the bits a person would expect: "dev", which the rules were tuned on;
"heldout", written after that tuning, measured once, then used for four generic fixes; "fresh",
written after those and never tuned on) and reads every prompt with each backend:

* ``rules``: the deterministic grammar alone;
* ``auto``: the rules, then the offline sentence encoder for words the rules do not know
  (needs ``pip install "paramgen[text]"``; skipped with a note otherwise).

Outcomes: right (exactly the expected bits), refused (a PromptError: the user is asked to
rephrase), wrong (other bits; the worst outcome). ``paramgen generate`` prints what it
understood for every answer, so a wrong answer is never silent.

    python benchmarks/prompts.py            # the table
    python benchmarks/prompts.py --show     # plus every refused or wrong prompt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "prompts_eval.json"


def evaluate(rows: list[dict], backend: str) -> dict:
    from paramgen.prompts import PromptError, read_prompt

    counts = {"right": 0, "refused": 0, "wrong": 0}
    misses = []
    for row in rows:
        try:
            reading = read_prompt(row["prompt"], row["classes"], backend=backend)
        except PromptError as exc:
            counts["refused"] += 1
            misses.append(("refused", row, exc.reason.splitlines()[0]))
            continue
        if reading.bits == row["bits"]:
            counts["right"] += 1
        else:
            counts["wrong"] += 1
            misses.append(("wrong", row, f"understood: {reading.understood}"))
    return {"n": len(rows), **counts, "misses": misses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="prompt set (default: %(default)s)")
    parser.add_argument("--show", action="store_true", help="list every refused or wrong prompt")
    args = parser.parse_args()

    import torch

    from paramgen import text

    torch.set_num_threads(1)
    data = json.loads(args.data.read_text(encoding="utf-8"))
    splits = [s for s in ("dev", "heldout", "fresh") if s in data]
    backends = ["rules", "auto"] if text.available() else ["rules"]
    if not text.available():
        print(f"(semantic backend not installed: {text.INSTALL_HINT}; showing rules only)")
    print(f"{'split':<8} {'backend':<7} {'n':>4} {'right':>7} {'refused':>8} {'wrong':>7} "
          f"{'ms/prompt':>10}")
    shown = []
    for split in splits:
        for backend in backends:
            if backend == "auto":
                evaluate(data[split][:1], backend)  # load the encoder outside the timing
            start = time.perf_counter()
            result = evaluate(data[split], backend)
            ms = 1000 * (time.perf_counter() - start) / max(result["n"], 1)
            n = result["n"]
            print(f"{split:<8} {backend:<7} {n:>4} {100 * result['right'] / n:>6.1f}% "
                  f"{100 * result['refused'] / n:>7.1f}% {100 * result['wrong'] / n:>6.1f}% "
                  f"{ms:>10.1f}")
            shown.append((split, backend, result["misses"]))
    if args.show:
        for split, backend, misses in shown:
            for outcome, row, why in misses:
                print(f"[{split}/{backend}] {outcome:<7} {row['classes']:<7} {row['prompt']!r} "
                      f"expected {row['bits']}: {why}")


if __name__ == "__main__":
    main()
