"""Every setting of an RPG generator; presets (``presets.RPG_PRESETS``) are named sets of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from paramgen.config import SharedSettings, sampling, setting, training
from paramgen.methods.rpg.presets import RPG_PRESETS

SAMPLING_MODES = ("sequential", "partial", "full")
PERMUTATION_STATES = ("auto", "checkpoint", "run", "task", "none")
UNSEEN_TASKS = ("auto", "given")
CONDITION_ANCHORS = ("none", "kernel", "kernel-only")


@dataclass
class RPGConfig(SharedSettings):
    """RPG's settings: model (what the networks are), training, sampling, runtime."""

    NAME: ClassVar[str] = "RPG"
    PRESETS: ClassVar[dict[str, dict]] = RPG_PRESETS

    # tokenization
    token_size: int = setting(256)
    tokenization: str = setting("layer")            # layer | flat | channel
    # tensor: each tensor normalised by its mean and std over the collection (RPG); value: each
    # value centred on its own mean over the collection first, so the tokens hold what differs
    # between the models (a task grid of fine-tunes of one model), at unit scale.
    normalization: str = setting("tensor")
    # embeddings
    position_embedding: str = setting("2d")         # 2d | 1d | learnable
    # With a learnable position table and several permutation states: a learnable row per
    # (state, token) too, added to the token's shared row.
    state_positions: bool = setting(False)
    # Prototypes are the backbone's output plus each token's mean over the collection (over its
    # run, when runs are states): a fixed table that carries each token's content when tokens are
    # wider than the backbone (token_size > d_model), whose output is otherwise of rank d_model.
    prototype_means: bool = setting(False)
    # Task-conditioned collections: "kernel" adds the seen tasks' mean models, interpolated to
    # the condition by Gaussian-kernel ridge regression (anchor.py), to every prototype, and the
    # backbone reads the condition too; "kernel-only": the condition enters only through that
    # interpolation; "none": only through the backbone (RPG).
    condition_anchor: str = setting("none")
    # With an anchor: training reads each seen task's leave-one-out anchor (its interpolation
    # from the other seen tasks), as wrong as an unseen task's will be, instead of its in-sample
    # one, which the networks could recognise the task by; sampling reads the full anchor.
    # With permutation_state="task", only the shared state's share of training reads it.
    anchor_held_out: bool = setting(False)
    permutation_state: str = setting("auto")        # checkpoint | run | task | none | auto (run
    #                                                 when several runs or conditions, else
    #                                                 checkpoint); task: a state per seen task
    #                                                 and a shared one (shared_state_share), on
    #                                                 a one-run grid of fine-tunes (else auto)
    # recurrent backbone
    backbone: str = setting("mamba")                # mamba | lstm | transformer | none
    d_model: tuple[int, int] = setting((256, 256))
    num_layers: int = setting(2)
    d_state: int = setting(32)
    d_conv: int = setting(4)
    expand: int = setting(2)
    # diffusion
    denoiser_channels: tuple[int, ...] = setting((1, 32, 64, 128))
    kernel_size: int = setting(7)
    num_train_timesteps: int = setting(1000)
    beta_start: float = setting(1e-4)
    beta_end: float = setting(2e-2)
    prediction: str = setting("epsilon")            # epsilon | sample
    # With sample prediction, the prototype itself is the first guess of the clean token and the
    # denoiser learns a correction (added to its last feature map, the output).
    prototype_skip: bool = setting(False)
    # sampling
    sampler: str = sampling("ddpm")                 # ddpm | ddim | dpm++
    sampling_steps: int | None = sampling(None)     # None: ddpm all, ddim 60, dpm++ 10
    sampling_mode: str = sampling("partial")        # sequential | partial | full
    partial_batch: int = sampling(256)
    # A task not seen in training, for a generator trained on task models from independent
    # initialisations (a state per task): "auto" generates the nearest seen task's model (its
    # state and its condition, with a warning), "given" feeds the given condition to the nearest
    # task's state, which mixes two tasks the generator cannot relate (2-3 points worse, measured
    # in docs/align.md). Generators of one basin always take the given condition.
    unseen_task: str = sampling("auto")
    # training
    steps: int = training(80_000)
    lr: float = training(3e-5)
    min_lr_ratio: float = training(1.0)             # cosine decay to lr * ratio; 1.0 = constant
    warmup_steps: int = training(0)
    weight_decay: float = training(1e-5)
    batch_size: int = training(16)
    diffusion_batch: int = training(1024)
    grad_clip: float = training(1.0)
    # Std of Gaussian noise added to each training checkpoint's condition every step (0: none):
    # a condition seen in training then stands for a neighbourhood, which unseen tasks fall in.
    condition_noise: float = training(0.0)
    # Classifier-free guidance (Ho & Salimans 2022): the share of training checkpoints whose
    # condition is replaced by zeros, the null condition (0: none). A generator trained so can
    # sample with ``guidance`` w != 1: x0 = x0(null) + w (x0(condition) - x0(null)).
    condition_dropout: float = training(0.0)
    # With permutation_state="task": the share of training checkpoints that train with the
    # shared state instead of their task's. A seen task samples with its own state, any other
    # condition with the shared one, which has learned what holds for every task.
    shared_state_share: float = training(0.5)
    # Windowed training: each step trains a window of this many consecutive tokens per
    # checkpoint, the backbone's state carried from the previous window (methods/rpg/window.py);
    # 0 trains on whole sequences. Bounds a step's time and memory whatever the model's size.
    train_window: int = training(0)
    # Learning-rate multiplier of the learnable position table: each row learns only when its
    # token is in the batch, a small share of the steps when the model has thousands of tokens.
    position_lr_scale: float = training(1.0)

    def __post_init__(self) -> None:
        self._check_shared()
        d = self.d_model
        if isinstance(d, (list, tuple)):
            if len(d) != 2:
                raise ValueError(f"RPGConfig.d_model must be one width or two (layer 1, layer "
                                 f"2), got {list(d)}")
            self.d_model = (d[0], d[1])
        else:
            self.d_model = (d, d)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                   for v in self.d_model):
            raise ValueError(f"RPGConfig.d_model must hold positive integers, got {self.d_model}")
        self._check_channels("denoiser_channels")
        self._check_choices({
            "tokenization": ("layer", "flat", "channel"),
            "normalization": ("tensor", "value"),
            "position_embedding": ("2d", "1d", "learnable"),
            "permutation_state": PERMUTATION_STATES,
            "condition_anchor": CONDITION_ANCHORS,
            "backbone": ("mamba", "lstm", "transformer", "none"),
            "prediction": ("epsilon", "sample"),
            "sampler": ("ddpm", "ddim", "dpm++"),
            "sampling_mode": SAMPLING_MODES,
            "unseen_task": UNSEEN_TASKS})
        if self.prototype_skip and self.prediction != "sample":
            raise ValueError("RPGConfig.prototype_skip needs prediction='sample': the prototype "
                             "is a guess of the clean token, not of the noise")
        self._check_positive("token_size", "steps", "batch_size", "diffusion_batch",
                             "partial_batch", "num_layers", "d_state", "d_conv", "expand",
                             "kernel_size", "num_train_timesteps")
        self._check_positive("warmup_steps", "train_window", allow_zero=True)
        if self.sampling_steps is not None:
            self._check_positive("sampling_steps")
        self._check_finite("lr", "weight_decay", "grad_clip", low=0.0)
        self._check_finite("position_lr_scale", "condition_noise", low=0.0)
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {self.condition_dropout}")
        if not 0.0 < self.shared_state_share < 1.0:
            raise ValueError("shared_state_share must be in (0, 1): the shared state and the "
                             f"tasks' own both need training, got {self.shared_state_share}")
        self._check_finite("min_lr_ratio", low=0.0, high=1.0)
        self._check_finite("beta_start", "beta_end", low=0.0, high=1.0)
