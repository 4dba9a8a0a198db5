"""Does p-diff sample one model or a distribution? Its collapse and a fix at the cause.

p-diff's autoencoder adds latent noise sigma_z = 0.1 during training (p-diff eq. 5). Its
encoder's latents of one collection spread about 1e-4 (tanh-bounded, nearly constant), so the
noise is ~1000x the signal, the decoder learns to ignore the latent and every sample decodes to
the same model. The fix prototyped here scales the noise to the latents' spread:

    z + sigma_z * randn            (as published)
    z + sigma_z * std_batch(z) * randn   (fixed: std per latent dimension over the batch,
                                          detached; sigma_z then means "10% of the spread")

now p-diff's default (`relative_latent_noise`). A second part, also the default
(`standardize_coordinates`), standardises every parameter *coordinate* across
the collection before p-diff sees it (subtract the mean checkpoint, divide by each coordinate's
std over the checkpoints; inverted after sampling): checkpoints of one run differ by ~0.1% of
their values, far below what the autoencoder reconstructs, so without it the decoder cannot tell
them apart whatever the latent noise. For cnn-s on digits (a `paramgen collect` collection) and a LayerNorm
MLP on mnist1d (not in the zoo, as in rpg_parity.py), it prints per variant: accuracy mean / std
of the originals and samples, the spread of the latents, the mean pairwise parameter distance
(samples vs originals), and the samples' mean distance to the nearest checkpoint.

    python benchmarks/pdiff_spread.py                 # both collections, every variant
    python benchmarks/pdiff_spread.py --only mlp --samples 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import paramgen as pg
from paramgen.evaluation.core import build_model, load_data_for, load_into, predictions, score
from paramgen.evaluation.novelty import ParamSpace

sys.path.insert(0, str(Path(__file__).parent))
from rpg_parity import LayerNormMLP, make_collection  # noqa: E402

def pairwise_spread(space: ParamSpace, sds) -> float:
    """Mean pairwise L2 distance between models / the originals' mean norm."""
    m = space.flatten(sds).to(torch.float64)
    d = torch.cdist(m, m, compute_mode="donot_use_mm_for_euclid_dist")
    n = len(sds)
    return float(d.sum() / (n * (n - 1))) / space.scale if n > 1 else float("nan")


VARIANTS = {"published": "published sigma_z", "fixed": "spread-scaled sigma_z",
            "standardised": "standardised + scaled"}


def measure(name: str, ckpts, model, x, y, samples: int, preset: str, variant: str) -> str:
    # The fix lives in paramgen.methods.pdiff (config standardize_coordinates and
    # relative_latent_noise, both on by default); the variants switch its parts off.
    settings = {"published": dict(standardize_coordinates=False, relative_latent_noise=False),
                "fixed": dict(standardize_coordinates=False, relative_latent_noise=True),
                "standardised": dict(standardize_coordinates=True, relative_latent_noise=True)}
    gen = pg.PDiff(preset=preset, **settings[variant])
    t = time.time()
    gen.fit(ckpts, seed=0, progress=False)
    fit_s = time.time() - t
    flat = torch.stack([gen.tokenizer.flatten({k: sd[k] for k in gen.generated_keys})
                        for sd in ckpts])
    net = gen.network
    latents = gen._encode((flat - net.coord_mean) / net.coord_std)
    out = gen.sample(samples, seed=0)
    originals = list(ckpts)
    acc_o = [100 * float(v) for v in score(predictions(originals, model, x), y)]
    acc_g = [100 * float(v) for v in score(predictions(out, model, x), y)]
    space = ParamSpace(originals)
    so, sg = pairwise_spread(space, originals), pairwise_spread(space, out)
    nn_d = statistics.mean(space.nearest(out))
    lat = float(latents.std(dim=0).mean())
    variant = VARIANTS[variant]
    return (f"{name:14s} {variant:22s} {statistics.mean(acc_o):6.2f} "
            f"{statistics.pstdev(acc_o):5.2f} {statistics.mean(acc_g):6.2f} "
            f"{statistics.pstdev(acc_g):5.2f} {statistics.mean(acc_g) - statistics.mean(acc_o):+6.2f}"
            f" {lat:9.2e} {so:8.4f} {sg:8.4f} {sg / so:6.2f} {nn_d:8.4f} {fit_s:5.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=["cnn-s", "mlp"])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'collection':14s} {'p-diff':22s} {'orig':>6s} {'std':>5s} {'gen':>6s} {'std':>5s} "
          f"{'gap':>6s} {'z spread':>9s} {'orig spr':>8s} {'gen spr':>8s} {'ratio':>6s} "
          f"{'NN dist':>8s} {'fit s':>5s}", flush=True)
    for which in args.only:
        if which == "cnn-s":
            from paramgen.collect import collect

            ckpts = collect("cnn-s", "digits", Path("runs/pdiff_spread/cnns"), n=50,
                            progress=False)
            model = build_model(ckpts.info)
            x, y = load_data_for(ckpts.info)
        else:
            sds, (x, y) = make_collection(30, 60, 0)
            ckpts, model = pg.CheckpointSet.from_state_dicts(sds), LayerNormMLP()
        load_into(model, ckpts[0])
        for variant in args.variants:
            print(measure(which, ckpts, model, x, y, args.samples, args.preset, variant),
                  flush=True)
    print("\norig/gen: test accuracy mean and std (%); z spread: the encoder's latents' std per "
          "dimension, averaged; spr: mean pairwise parameter distance / mean checkpoint norm; "
          "ratio = gen spr / orig spr; NN dist: samples' distance to the nearest checkpoint.")


if __name__ == "__main__":
    main()
