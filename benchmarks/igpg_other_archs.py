"""IGPG's coordinate statistics on two other architectures (with BatchNorm buffers).

    python benchmarks/igpg_other_archs.py [--zoo runs/igpg_zoo2] [run] [off] [collection]

cnn-s and resnet-mini on digits, 3 runs x 5 checkpoints each (`collect(..., n=5, runs=3)`), one
IGPG (`cpu` preset) for both per `coordinates` mode given; 10 samples each, seed 1: originals
vs samples best/mean/std test accuracy (%), distinct samples (benchmarks/igpg.py's rule) and the
most runs any sample's tensors are nearest to.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

import paramgen as pg
from paramgen.collect import collect
from paramgen.evaluation.tables import summary

sys.path.insert(0, str(Path(__file__).parent))
from igpg import _acc, _distinct, _runs_per_sample  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", default="runs/igpg_zoo2")
    p.add_argument("modes", nargs="*", default=["run", "off"])
    args = p.parse_args()
    torch.set_num_threads(1)
    sets = [collect(a, "digits", Path(args.zoo) / f"{a}_digits", n=5, runs=3, progress=False)
            for a in ("cnn-s", "resnet-mini")]
    for mode in args.modes:
        t0, r0 = time.time(), resource.getrusage(resource.RUSAGE_SELF)
        gen = pg.IGPG(coordinates=mode).fit(sets, seed=0, progress=False)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
        print(f"coordinates={mode}: fit {time.time() - t0:.0f} s wall, {cpu:.0f} s CPU, load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        for s in sets:
            ck = list(s)
            sds = gen.sample(10, like=ck[0], dataset="digits", seed=1)
            o, g = summary(_acc(ck, s.info)), summary(_acc(sds, s.info))
            print(f"  {s.info['arch']}: originals {100 * o['best']:.2f}/{100 * o['mean']:.2f}/"
                  f"{100 * o['std']:.2f}, IGPG {100 * g['best']:.2f}/{100 * g['mean']:.2f}/"
                  f"{100 * g['std']:.2f}, distinct {_distinct(sds, ck)[0]}/10, runs/sample "
                  f"{max(_runs_per_sample(sds, ck, s.runs))}", flush=True)


if __name__ == "__main__":
    main()
