"""The semantic prompt backend and paramgen.text (the offline all-MiniLM-L6-v2 encoder).

Runs wherever the ``paramgen[text]`` extra is installed (CI installs ``.[test]``, which
includes it) and is skipped with the reason elsewhere. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from paramgen import text
from paramgen.cli import main
from paramgen.prompts import (
    CIFAR10_CLASSES,
    AmbiguousPromptError,
    PromptError,
    parse_prompt,
    read_prompt,
)

pytestmark = [
    pytest.mark.text,
    pytest.mark.skipif(not text.available(),
                       reason=f"the offline text encoder is not installed ({text.INSTALL_HINT})"),
]

EVAL = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "prompts_eval.json"


def cifar(*positive: str) -> str:
    return "".join("1" if c in positive else "0" for c in CIFAR10_CLASSES)


def test_encode_gives_unit_vectors_and_sensible_neighbours() -> None:
    vectors = text.encode(["a photo of a dog", "a puppy", "a cargo ship", "a photo of a dog"])
    assert vectors.shape == (4, 384) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(4), atol=1e-4)
    assert torch.equal(vectors[0], vectors[3])  # same text, same (cached) vector
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.1  # a dog is closer to a puppy than to a ship
    assert text.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="sequence of strings"):
        text.encode("a dog")


def test_semantic_reads_unknown_words_and_says_how() -> None:
    reading = read_prompt("spot the poodles", "cifar10", backend="semantic")
    assert reading.bits == cifar("dog")
    assert len(reading.notes) == 1 and "'poodles' read as" in reading.notes[0]
    assert "dog -> 0000010000" in reading.understood
    # The rest of the grammar keeps its meaning around the word it read.
    assert parse_prompt("animals except poodles", "cifar10", backend="semantic") == cifar(
        "bird", "cat", "deer", "frog", "horse")
    assert parse_prompt("helicopters or canoes", "cifar10", backend="auto") == cifar(
        "airplane", "ship")


def test_semantic_leaves_rule_readable_prompts_to_the_rules() -> None:
    for prompt, classes in [("odd digits", "digits"), ("things that can fly", "cifar10"),
                            ("things that live in water", "cifar10")]:
        reading = read_prompt(prompt, classes, backend="auto")
        assert reading.bits == parse_prompt(prompt, classes) and reading.notes == ()


def test_unclear_words_are_refused_with_the_closest_readings() -> None:
    with pytest.raises(AmbiguousPromptError) as info:
        read_prompt("vans", "cifar10", backend="auto")
    readings = info.value.readings["vans"]
    assert len(readings) == 3
    assert all(isinstance(p, str) and isinstance(s, float) for p, _, s in readings)
    assert "closest readings" in str(info.value) and "'vans'" in str(info.value)
    # Words with no meaning for these classes are refused, not forced onto the nearest class.
    for prompt, classes in [("lucky", "digits"), ("purple elephants", "digits"),
                            ("reptiles", "cifar10")]:
        with pytest.raises(PromptError):
            read_prompt(prompt, classes, backend="auto")


def test_words_of_another_class_set_keep_the_rules_error() -> None:
    with pytest.raises(PromptError, match="only has a meaning for digit classes"):
        read_prompt("I need a detector for sevens", "cifar10", backend="auto")


def test_generate_prints_what_the_semantic_reader_understood(capsys) -> None:
    assert main(["generate", "--dry-run", "--classes", "cifar10",
                 "--prompt", "I want a model that flags poodles"]) == 0
    out = capsys.readouterr().out
    assert "understood: dog -> 0000010000" in out and "'poodles' read as" in out


def test_auto_on_the_prompt_eval_set() -> None:
    # docs/prompts.md's table: >= 90% exactly right on each half, at most one read wrongly.
    data = json.loads(EVAL.read_text(encoding="utf-8"))
    for half in ("dev", "heldout", "fresh"):
        right = wrong = 0
        for row in data[half]:
            try:
                bits = read_prompt(row["prompt"], row["classes"], backend="auto").bits
            except PromptError:
                continue
            right += bits == row["bits"]
            wrong += bits != row["bits"]
        assert right >= 0.9 * len(data[half]) and wrong <= 1, (half, right, wrong)
