"""What moves RPG's samples past the noise and mixture baselines (Zeng et al. 2026)?

A diverse collection of a model outside the zoo: a LayerNorm MLP on mnist1d (as in
rpg_parity.py), R independent runs, each trained to convergence with a plain loop and then
continued for E epochs with K checkpoints spread over them. RPG is fitted with several settings
through the public API (`pg.RPG(preset=..., **overrides)`, fit, sample), and every setting's
samples are scored by `paramgen.evaluate.evaluate`: the share that beats both baselines (above
the noise and mixture frontiers at their novelty, within 2 points of the originals' mean), the
mean accuracy, novelty and distance to the nearest checkpoint.

Two reference rows frame the numbers: the originals themselves (novelty against the *other*
checkpoints) and checkpoints of new independent runs (what a generator producing genuinely new
trained networks would score).

Settings on an aligned collection (pg.align into run 0's basin) are scored against the
checkpoints as given, and also against the aligned ones (the beatA / distA columns); a reference
row scores midpoints of aligned checkpoints of different runs.

    python benchmarks/novelty.py --steps 1200                    # every setting, ~6 min a fit
    python benchmarks/novelty.py --steps 1200 --only "run-state"  # an exact name: that one only
    python benchmarks/novelty.py --steps 1200 --only "sample seed"   # a substring: all matching

Results are cached per setting in --cache (JSON), so an interrupted run continues; fitted
generators are saved next to it, so settings that only sample differently reuse them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import paramgen as pg
from paramgen.data import load
from paramgen.evaluate import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from rpg_parity import LayerNormMLP, converged  # noqa: E402  (the parity benchmark's model)


def train_run(seed: int, epochs: int, spread: float, per_run: int, data) -> list[dict]:
    """One run: `epochs` epochs at lr 3e-3, then `spread` epochs at 1e-3 with `per_run`
    checkpoints spread uniformly over them."""
    x_tr, y_tr = data[0], data[1]
    model = converged(seed, epochs, x_tr, y_tr)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    steps_per_epoch = len(torch.randperm(len(x_tr)).split(64))
    total = max(per_run, round(spread * steps_per_epoch))
    save_at = {round((j + 1) * total / per_run) for j in range(per_run)}
    sds, step = [], 0
    while step < total:
        for idx in torch.randperm(len(x_tr)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
            step += 1
            if step in save_at:
                sds.append({k: v.clone() for k, v in model.state_dict().items()})
            if step >= total:
                break
    return sds


def collection(runs: int, per_run: int, epochs: int, spread: float, seed: int, data):
    sds, run_ids = [], []
    for r in range(runs):
        got = train_run(seed + r, epochs, spread, per_run, data)
        sds += got
        run_ids += [r] * len(got)
    return pg.CheckpointSet.from_state_dicts(sds, runs=run_ids)


# Collections and fit overrides of the settings that are re-sampled with other seeds below.
SEEDED: dict[str, dict] = {
    "run-state": dict(fit={"permutation_state": "run"}),
    "run-state, 3x checkpoints": dict(fit={"permutation_state": "run"}, collection="more"),
    "run-state, 6x checkpoints": dict(fit={"permutation_state": "run"}, collection="more6"),
    "aligned, checkpoint-state": dict(fit={"permutation_state": "checkpoint"},
                                      collection="aligned"),
    "aligned, run-state (RPG defaults + align auto)": dict(fit={}, collection="aligned"),
    "checkpoint-state": dict(fit={"permutation_state": "checkpoint"}),
}
# A setting: RPG config overrides, fit steps, sampling options, collection (default / "more").
SETTINGS: dict[str, dict] = {
    "checkpoint-state (cpu default)": dict(fit={}, sample={}),
    "checkpoint-state, ddpm": dict(fit={}, sample={"sampler": "ddpm"}, reuse="checkpoint-state (cpu default)"),
    "run-state": dict(fit={"permutation_state": "run"}, sample={}),
    "run-state, ddpm": dict(fit={"permutation_state": "run"}, sample={"sampler": "ddpm"},
                            reuse="run-state"),
    "run-state, temperature 1.5": dict(fit={"permutation_state": "run"}, sample={},
                                       temperature=1.5, reuse="run-state"),
    "no state": dict(fit={"permutation_state": "none"}, sample={}),
    "no state, ddpm": dict(fit={"permutation_state": "none"}, sample={"sampler": "ddpm"},
                           reuse="no state"),
    "epsilon objective, run-state": dict(fit={"permutation_state": "run",
                                              "prediction": "epsilon",
                                              "prototype_skip": False}, sample={}),
    "run-state, 3x checkpoints": dict(fit={"permutation_state": "run"}, sample={},
                                      collection="more"),
    "run-state, 2400 steps": dict(fit={"permutation_state": "run"}, sample={}, steps=2400),
    # Trained on the collection aligned into run 0's basin (pg.align, weight matching, one
    # permutation per run); scored against the checkpoints the user gave (and, stricter,
    # against the aligned ones, whose cross-run mixtures are accurate).
    "aligned, no state": dict(fit={"permutation_state": "none"}, sample={}, collection="aligned"),
    "aligned, checkpoint-state": dict(fit={"permutation_state": "checkpoint"}, sample={},
                                      collection="aligned"),
    "aligned, run-state (RPG defaults + align auto)": dict(fit={}, sample={},
                                                           collection="aligned"),
    "run-state, temperature 1.25": dict(fit={"permutation_state": "run"}, sample={},
                                        temperature=1.25, reuse="run-state"),
    "aligned, checkpoint-state, ddpm": dict(fit={"permutation_state": "checkpoint"},
                                            sample={"sampler": "ddpm"}, collection="aligned",
                                            reuse="aligned, checkpoint-state"),
    "aligned, checkpoint-state, temperature 1.25": dict(
        fit={"permutation_state": "checkpoint"}, sample={}, temperature=1.25,
        collection="aligned", reuse="aligned, checkpoint-state"),
    "run-state, 6x checkpoints": dict(fit={"permutation_state": "run"}, sample={},
                                      collection="more6"),
    "aligned, checkpoint-state, 3x checkpoints": dict(fit={"permutation_state": "checkpoint"},
                                                      sample={}, collection="aligned-more"),
    # The same generators sampled with other seeds: how much a beat count of 20 samples moves.
    **{f"{base}, sample seed {k}": dict(SEEDED[base], sample={"seed": k}, reuse=base)
       for base in ("run-state", "run-state, 3x checkpoints", "run-state, 6x checkpoints",
                    "aligned, checkpoint-state",
                    "aligned, run-state (RPG defaults + align auto)", "checkpoint-state")
       for k in (1, 2)},
    # New states at sampling: mixtures of the learned ones (with_state_mix).
    "checkpoint-state": dict(SEEDED["checkpoint-state"], sample={}),
    **{f"{base}, state mix {how}": dict(SEEDED[base], sample={}, mix=how, reuse=base)
       for base, hows in (("aligned, checkpoint-state", ("in-run", "any", "gauss")),
                          ("checkpoint-state", ("in-run", "any", "gauss")),
                          ("aligned, run-state (RPG defaults + align auto)", ("any", "gauss")))
       for how in hows},
    **{f"aligned, checkpoint-state, state mix in-run, sample seed {k}": dict(
        SEEDED["aligned, checkpoint-state"], sample={"seed": k}, mix="in-run",
        reuse="aligned, checkpoint-state") for k in (1, 2)},
    "learnable positions x50 lr, run-state": dict(
        fit={"permutation_state": "run", "position_embedding": "learnable",
             "position_lr_scale": 50.0}, sample={}),
}
# Collections a setting can train on: the benchmark's own (default), 3x or 6x the checkpoints
# per run over the same epochs (more, more6), and those aligned into the first run's basin.
ALIGNED_FROM = {"aligned": "default", "aligned-more": "more"}
MORE = {"more": 3, "more6": 6}  # checkpoints per run, as a multiple of --per-run


def with_temperature(temperature: float):
    """Scale the sampler's starting noise (benchmark-only patch of paramgen.methods.rpg)."""
    import paramgen.methods.rpg.sampling as rpg_module  # where RPG.sample looks it up

    original = rpg_module.run_sampler

    def patched(model_fn, noise, *args, **kwargs):
        return original(model_fn, noise * temperature, *args, **kwargs)

    rpg_module.run_sampler = patched
    return lambda: setattr(rpg_module, "run_sampler", original)


def with_state_mix(gen, how: str, n: int, seed: int):
    """Give `gen` n new permutation states, each a mixture of its learned ones, and return
    their indices (benchmark-only patch: the generator's state table grows by n rows).

    in-run: a random convex combination of two states of one run; any: of two states;
    gauss: a draw from the Gaussian of the learned states (their mean and covariance).
    """
    table = gen.network.states.weight.detach()
    runs = list(gen._state_runs)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        if how == "gauss":
            w = torch.randn(len(table), generator=g) / len(table) ** 0.5
            mean = table.mean(0)
            rows.append(mean + (w[:, None] * (table - mean)).sum(0))
            continue
        i = int(torch.randint(len(table), (1,), generator=g))
        pool = [j for j in range(len(table)) if j != i and (how == "any" or runs[j] == runs[i])]
        j = pool[int(torch.randint(len(pool), (1,), generator=g))]
        a = float(torch.rand(1, generator=g))
        rows.append(a * table[i] + (1 - a) * table[j])
    old, old_n = gen.network.states, gen._num_states
    grown = nn.Embedding(len(table) + n, table.shape[1])
    grown.weight.data = torch.cat([table, torch.stack(rows)])
    gen.network.states, gen._num_states = grown, len(table) + n

    def restore():
        gen.network.states, gen._num_states = old, old_n
    return list(range(len(table), len(table) + n)), restore


def score_samples(samples, ckpts, data, noise_scales, aligned=None) -> dict:
    """Scores against `ckpts` (the checkpoints the user gave). With `aligned` (the same
    checkpoints permuted into one basin), also the beat count against the aligned collection's
    baselines and the distance to the nearest aligned checkpoint (novelty, which compares
    predictions, is the same against both: a permutation keeps every model's function)."""
    res = _scores(samples, ckpts, data, noise_scales)
    if aligned is not None:
        res["aligned"] = _scores(samples, aligned, data, noise_scales)
    return res


def _scores(samples, ckpts, data, noise_scales) -> dict:
    rep = evaluate(samples, ckpts, data=(data[2], data[3]), model=LayerNormMLP(),
                   noise_scales=noise_scales, plots=False)
    won = rep.beats_both
    return {"n": len(rep.generated_scores), "beat": sum(won),
            "share": sum(won) / max(1, len(won)),
            "mean": 100 * statistics.mean(rep.generated_scores),
            "std": 100 * statistics.pstdev(rep.generated_scores),
            "novelty": statistics.mean(rep.generated_novelty),
            "distance": statistics.mean(rep.generated_distance),
            "orig_mean": 100 * rep.original_summary["mean"],
            "orig_novelty": statistics.mean(v for v in rep.original_novelty if v == v),
            "orig_beat": sum(beat_originals(rep)), "orig_n": len(rep.original_scores),
            "orig_distance": statistics.mean(rep.original_distance)}


def aligned_mixtures(aligned: pg.CheckpointSet, count: int, seed: int) -> list[dict]:
    """Midpoints of `count` seeded pairs of aligned checkpoints from different runs: what a
    generator that only interpolates the aligned runs would produce."""
    import random

    runs = aligned.runs
    pairs = [(i, j) for i in range(len(aligned)) for j in range(i + 1, len(aligned))
             if runs[i] != runs[j]]
    random.Random(seed).shuffle(pairs)
    out = []
    for i, j in pairs[:count]:
        a, b = aligned[i], aligned[j]
        out.append({k: (a[k] + b[k]) / 2 if a[k].is_floating_point() else a[k] for k in a})
    return out


def beat_originals(rep) -> list[bool]:
    """The originals judged like generated models, each against the *other* checkpoints."""
    from paramgen.evaluation.novelty import beats

    return beats(rep.original_novelty, rep.original_scores, rep.frontiers,
                 rep.original_summary["mean"], rep.beat_margin)


def save_result(path: Path, key: str, name: str, res: dict) -> None:
    """Merge one result into the cache file (another run of this script may share it)."""
    cache = json.loads(path.read_text()) if path.is_file() else {}
    cache.setdefault(key, {})[name] = res
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1))
    tmp.replace(path)


def row(name: str, r: dict, fit_s: float | None) -> str:
    fit = f"{fit_s:5.0f}" if fit_s is not None else "    -"
    al = r.get("aligned")
    vs_aligned = f"{al['beat']:4d} {al['distance']:8.4f}" if al else f"{'-':>4s} {'-':>8s}"
    return (f"{name:48s} {r['n']:3d} {r['beat']:4d} {100 * r['share']:6.0f}% {r['mean']:7.2f} "
            f"{r['mean'] - r['orig_mean']:+6.2f} {r['std']:5.2f} {r['novelty']:7.3f} "
            f"{r['distance']:8.4f} {vs_aligned} {fit}")


def matches(name: str, only: list[str] | None, skip: list[str]) -> bool:
    """--only/--skip: an exact setting name selects that setting alone, anything else is a
    substring."""
    def hit(o: str) -> bool:
        return o == name or (o not in SETTINGS and o in name)
    return (not only or any(hit(o) for o in only)) and not any(hit(o) for o in skip)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--per-run", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=60, help="convergence epochs per run")
    ap.add_argument("--spread", type=float, default=5.0, help="epochs the checkpoints span")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="RPG fit steps (preset's default)")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--only", nargs="*", default=None, help="settings to run (substrings)")
    ap.add_argument("--skip", nargs="*", default=[], help="settings to leave out (substrings)")
    ap.add_argument("--cache", default="runs/novelty_bench.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)

    data = load("mnist1d")
    cache_path = Path(args.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    key = f"{args.runs}x{args.per_run}/{args.epochs}/{args.spread}/{args.preset}/{args.steps}/" \
          f"{args.samples}/{args.seed}"
    results = cache.setdefault(key, {})
    noise_scales = [0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]

    t0 = time.time()
    folder = cache_path.parent / (f"novelty_collection_{args.runs}x{args.per_run}_{args.epochs}_"
                                  f"{args.spread:g}_{args.seed}")
    if (folder / "manifest.json").is_file():  # the collection takes minutes: keep it
        sets = {"default": pg.CheckpointSet.load(folder)}
    else:
        sets = {"default": collection(args.runs, args.per_run, args.epochs, args.spread,
                                      args.seed, data)}
        sets["default"].save(folder)
    print(f"collection: {args.runs} runs x {args.per_run} checkpoints over {args.spread:g} "
          f"epochs ({time.time() - t0:.0f} s); LayerNorm MLP, "
          f"{sets['default'].num_params} parameters, mnist1d", flush=True)
    if "new independent runs" not in results:
        fresh = collection(3, args.per_run, args.epochs, args.spread, args.seed + 1000, data)
        results["new independent runs"] = {**score_samples(list(fresh), sets["default"], data,
                                                           noise_scales), "fit_s": None}
        save_result(cache_path, key, "new independent runs", results["new independent runs"])
    gens: dict[str, object] = {}
    gen_dir = cache_path.parent / "novelty_generators" / key.replace("/", "_")

    def get_set(which: str) -> pg.CheckpointSet:
        if which in sets:
            return sets[which]
        if which in MORE:
            per_run = MORE[which] * args.per_run
            more = cache_path.parent / (f"novelty_collection_{args.runs}x{per_run}_"
                                        f"{args.epochs}_{args.spread:g}_{args.seed}")
            if (more / "manifest.json").is_file():
                sets[which] = pg.CheckpointSet.load(more)
            else:
                sets[which] = collection(args.runs, per_run, args.epochs, args.spread,
                                         args.seed, data)
                sets[which].save(more)
        elif which in ALIGNED_FROM:
            t = time.time()
            sets[which] = pg.align(get_set(ALIGNED_FROM[which]), model=LayerNormMLP(),
                                   example_input=data[0][:2])
            print(f"  (aligned {len(sets[which])} checkpoints into run 0's basin by weight "
                  f"matching, one permutation per run: {time.time() - t:.1f} s)", flush=True)
        else:
            raise ValueError(f"unknown collection {which!r}")
        return sets[which]

    print(f"\n{'setting':48s} {'n':>3s} {'beat':>4s} {'share':>7s} {'mean':>7s} {'vs orig':>6s} "
          f"{'std':>5s} {'novelty':>7s} {'distance':>8s} {'beatA':>4s} {'distA':>8s} {'fit s':>5s}")
    first = results["new independent runs"]
    ref = dict(first, n=first["orig_n"], beat=first["orig_beat"],
               share=first["orig_beat"] / first["orig_n"], mean=first["orig_mean"],
               std=0.0, novelty=first["orig_novelty"], distance=first["orig_distance"])
    ref.pop("aligned", None)
    print(row("originals (vs the other ckpts)", ref, None), flush=True)
    print(row("new independent runs", first, None), flush=True)
    mix_name = "mixtures of aligned pairs (reference)"
    if matches(mix_name, args.only, args.skip) or any("aligned" in n and matches(n, args.only, args.skip)
                                                     for n in SETTINGS):
        if mix_name not in results:
            mixed = aligned_mixtures(get_set("aligned"), args.samples, args.seed)
            results[mix_name] = {**score_samples(mixed, sets["default"], data, noise_scales,
                                                 aligned=get_set("aligned")), "fit_s": None}
            save_result(cache_path, key, mix_name, results[mix_name])
        print(row(mix_name, results[mix_name], None), flush=True)
    for name, s in SETTINGS.items():
        if not matches(name, args.only, args.skip):
            continue
        if name in results:
            print(row(name, results[name], results[name]["fit_s"]), flush=True)
            continue
        which = s.get("collection", "default")
        ckpts = get_set(which)
        # Aligned settings are scored against the checkpoints the user gave (the unaligned
        # ones), and also against the aligned collection the generator saw.
        score_on = sets[ALIGNED_FROM[which]] if which in ALIGNED_FROM else ckpts
        aligned = ckpts if which in ALIGNED_FROM else None
        base = s.get("reuse")
        fit_s = None
        saved = gen_dir / (base or name).replace(" ", "_").replace(",", "")
        if base and base in gens:
            gen = gens[base]
        elif base and (saved / "config.json").is_file():
            gen = pg.RPG.from_pretrained(saved)
        else:
            try:
                gen = pg.RPG(preset=args.preset, **s["fit"])
            except (TypeError, ValueError) as err:  # e.g. a setting this version lacks
                print(f"{name:48s} skipped: {err}", flush=True)
                continue
            t = time.time()
            gen.fit(ckpts, steps=s.get("steps", args.steps), seed=args.seed, progress=False)
            fit_s = time.time() - t
            gens[name] = gen
            gen.save_pretrained(saved)  # a later "reuse" setting samples it again
        restore = with_temperature(s["temperature"]) if "temperature" in s else None
        extra = {}
        if "mix" in s:
            extra["state"], restore = with_state_mix(gen, s["mix"], args.samples,
                                                    s["sample"].get("seed", args.seed))
        try:
            samples = gen.sample(args.samples, **{"seed": args.seed, **s["sample"], **extra})
        finally:
            if restore:
                restore()
        res = score_samples(samples, score_on, data, noise_scales, aligned=aligned)
        res["fit_s"] = fit_s
        res["fit_steps"] = s.get("steps", args.steps)
        results[name] = res
        save_result(cache_path, key, name, res)
        print(row(name, res, fit_s), flush=True)
    print("\nbeat = above the noise and mixture frontiers at its novelty and within 2 points of "
          "the originals' mean accuracy; novelty = 1 - max IoU of wrong test predictions over the "
          "training checkpoints; distance = L2 to the nearest checkpoint / mean checkpoint norm.")


if __name__ == "__main__":
    main()
