"""Named RPG settings, as data. The four paper presets follow RPG Table 11/12; ``cpu`` is ours.

small / base / large keep the paper's architecture sizes and training recipe (AdamW, lr 3e-5,
or 1e-5 for large, 80k/120k steps); tiny keeps the paper's sizes with our CPU-budget recipe.
``cpu`` is sized so that a collection of a small model trains to parity in minutes on a 2-core
CPU; docs/architecture.md says how it was chosen. ``cpu-tasks`` is ``cpu`` for task grids.
"""

from __future__ import annotations

from paramgen.training import cpu_computes_bf16

_PAPER_RECIPE = dict(lr=3e-5, weight_decay=1e-5, batch_size=16, diffusion_batch=1024,
                     steps=80_000, num_train_timesteps=1000, beta_start=1e-4, beta_end=2e-2,
                     kernel_size=7, num_layers=2, d_conv=4, expand=2, backbone="mamba")

RPG_PRESETS: dict[str, dict] = {
    # tiny keeps the paper's sizes but not its recipe: x0-prediction with the prototype skip, a
    # higher decayed learning rate and 128 tokens a step reach parity in ~1k steps on a CPU,
    # where the paper's epsilon recipe does not (docs/architecture.md has the measurements).
    "tiny": dict(_PAPER_RECIPE, token_size=256, d_model=(256, 256), d_state=32,
                 denoiser_channels=(1, 32, 64, 128), sampler="ddim", sampling_steps=60,
                 prediction="sample", prototype_skip=True, lr=1e-3, min_lr_ratio=0.01,
                 diffusion_batch=128, steps=1500),
    "small": dict(_PAPER_RECIPE, token_size=4096, d_model=(4096, 4096), d_state=128,
                  denoiser_channels=(1, 32, 64, 128), sampler="ddpm"),
    "base": dict(_PAPER_RECIPE, token_size=8192, d_model=(8192, 8192), d_state=128,
                 denoiser_channels=(1, 32, 64, 128), sampler="ddpm"),
    "large": dict(_PAPER_RECIPE, token_size=16384, d_model=(12288, 16384), d_state=128,
                  denoiser_channels=(1, 64, 96), sampler="ddim", sampling_steps=60,
                  lr=1e-5, batch_size=8, diffusion_batch=512, steps=120_000),
    "cpu": dict(_PAPER_RECIPE, token_size=256, d_model=(256, 256), d_state=16,
                denoiser_channels=(1, 16, 32, 64), sampler="dpm++", sampling_steps=10,
                prediction="sample", prototype_skip=True, lr=1e-3, min_lr_ratio=0.01,
                diffusion_batch=64, steps=600),
}
# A task grid holds hundreds to a thousand tasks: more checkpoints and tokens a step, and more
# steps, than one collection needs. Two sampler steps, not ten: a task's checkpoints differ by
# far less than its neighbours' do, and the later steps of a ten-step sample add a residual of
# about the between-task scale; two steps are closer to the task's model, seen or unseen. The
# condition enters only through the kernel anchor (anchor.py): a backbone that reads it fits
# the seen conditions and, between them, places unseen tasks further than a smooth
# interpolation of the seen ones does (docs/tasks.md has the measurements). A state per seen
# task, and a shared one for every other condition: with the condition only in the anchor, the
# networks cannot otherwise tell apart seen tasks whose anchors are alike.
RPG_PRESETS["cpu-tasks"] = dict(RPG_PRESETS["cpu"], batch_size=32, diffusion_batch=256,
                                steps=4000, sampling_steps=2, condition_anchor="kernel-only",
                                permutation_state="task")

# What RPG() with no preset adds to the cpu presets as the generated model grows: rows of
# (up to this many generated values, settings). Whole-sequence training below 50K values. Above,
# a training step covers a window of tokens per checkpoint, so its cost stays flat in model size,
# and each token gets its own learnable position vector, learning at 500x the network's rate:
# with thousands of tokens a row is in the batch only a few hundred times in a whole fit, and at
# the network's rate it cannot move far enough from its start. With several runs, each run gets
# rows of its own added to the shared ones (state_positions): one row cannot hold two runs'
# weights, and without them the samples of a two-run collection miss 4x further. The denoiser
# is half the cpu preset's width: it is 85% of a step's FLOPs, and the visits it frees are what
# sets how closely the samples match the checkpoints. Above 4M values tokens are four times
# larger, the denoiser one level shallower and each token's run mean is added to its prototype:
# a two-run ResNet-18 (11.2M values) fitted in 39 minutes on two CPU threads, at parity.
# ``size_settings`` adds bf16 autocast to these fits on CPUs with bf16 hardware
# (docs/performance.md has the measurements behind each row).
_WINDOWED = dict(train_window=32, batch_size=8, diffusion_batch=256,
                 position_embedding="learnable", position_lr_scale=500.0, state_positions=True)
SIZE_RULES: list[tuple[float, dict]] = [
    (50_000, {}),
    # 8 checkpoints x 32 tokens: the backbone computes exactly the 256 prototypes the loss uses
    (4_000_000, dict(_WINDOWED, denoiser_channels=(1, 8, 16, 32))),
    # Tokens of 1,024 values and a two-level denoiser: a quarter of the tokens (steps) and a
    # quarter of the denoiser's FLOPs per value. The backbone's 256 outputs cannot hold a
    # 1,024-value token, so each token's mean over its run is added to its prototype.
    (float("inf"), dict(_WINDOWED, token_size=1024, denoiser_channels=(1, 8, 16),
                        prototype_means=True)),
]
# Above the first row, steps grow with the token count so that every token is in the batch
# about this many times, never fewer than MIN_WINDOWED_STEPS; rounded up to a multiple of 500.
# 180 was enough for an MLP on digits, which tolerates noise of 0.3 of each tensor's spread;
# a LayerNorm MLP on mnist1d needs ~0.05 and was 4.7 points short at 180, 0.5 at 360.
VISITS_PER_TOKEN = 360
MIN_WINDOWED_STEPS = 1500


def size_settings(num_values: int, token_size: int | None = None,
                  native_bf16: bool | None = None) -> dict:
    """The settings the size rule adds for a model of ``num_values`` generated values.

    ``token_size``: the user's token size, where they set one; the steps count tokens of that
    size (else of the rule's token size, else the cpu preset's).
    Windowed fits also train and sample under bf16 autocast where the CPU computes bf16 in
    hardware (``native_bf16``; None: ask this CPU): 21-42% less CPU a fit, gaps within 0.5 point
    of float32's on four architectures at 100K and three at 1M (docs/performance.md). Without such
    hardware bf16 is emulated and slower, and the rule keeps float32 (on CUDA, autocast "auto"
    is bf16 anyway)."""
    for limit, settings in SIZE_RULES:
        if num_values <= limit:
            out = dict(settings)
            if out.get("train_window"):
                size = token_size or out.get("token_size") or RPG_PRESETS["cpu"]["token_size"]
                tokens = -(-num_values // size)
                per_step = out["diffusion_batch"]
                steps = -(-VISITS_PER_TOKEN * tokens // per_step)
                out["steps"] = max(MIN_WINDOWED_STEPS, -(-steps // 500) * 500)
                if cpu_computes_bf16() if native_bf16 is None else native_bf16:
                    out["autocast"] = "bf16"
            return out
    return {}
