"""RPG's networks: position + permutation state + condition -> backbone -> prototypes; and the
1D-conv denoiser that turns noise into tokens, conditioned on the prototypes."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from paramgen.backbones import build as build_backbone
from paramgen.diffusion import Denoiser1D
from paramgen.embeddings import ConditionEncoder, PositionEmbedding
from paramgen.methods.rpg.anchor import KernelAnchor
from paramgen.methods.rpg.config import RPGConfig


# state_positions applies to collections of at most this many runs (measured on 2).
MAX_STATE_POSITION_RUNS = 16


class RPGNetwork(nn.Module):
    """Position + permutation state + condition -> backbone -> prototypes; and the denoiser."""

    def __init__(self, config: RPGConfig, positions: Tensor, num_states: int,
                 condition_dim: int | None, runs_as_states: bool = False,
                 shared_state: bool = False, anchor_tasks: int = 0):
        super().__init__()
        dim = config.d_model[0]
        self.prototype_skip = config.prototype_skip
        self.position = PositionEmbedding(positions, dim, config.position_embedding)
        self.states = nn.Embedding(num_states, dim) if num_states > 0 else None
        # Task states (states.py): the last state is shared by every task.
        self.shared_state = num_states - 1 if shared_state and num_states > 0 else None
        if self.states is not None:
            nn.init.normal_(self.states.weight, std=0.5)
        # Learnable rows per (run, token), added to the shared position rows: a learnable table
        # holds each token's content, and one row cannot hold two runs' different weights. Not
        # for hundreds of states (a task grid with a run per task): a table per state would
        # grow with the grid, and such states were not measured.
        self.state_positions = (
            nn.Parameter(torch.zeros(num_states, len(positions), dim))
            if config.state_positions and config.position_embedding == "learnable"
            and runs_as_states and 1 < num_states <= MAX_STATE_POSITION_RUNS else None)
        # The seen tasks' models interpolated to the condition (anchor.py), filled by the fit.
        self.anchor = (KernelAnchor(anchor_tasks, condition_dim, len(positions),
                                    config.token_size)
                       if anchor_tasks and condition_dim else None)
        # Each token's mean over the collection (a row per run where runs have rows of their
        # own), filled by the fit from its tokens and saved with the network. An anchor holds
        # the mean already.
        if config.prototype_means and self.anchor is None:
            groups = num_states if self.state_positions is not None else 1
            self.register_buffer("token_means",
                                 torch.zeros(groups, len(positions), config.token_size))
        else:
            self.token_means = None
        backbone_reads_condition = condition_dim and not (
            self.anchor is not None and config.condition_anchor == "kernel-only")
        self.condition = ConditionEncoder(condition_dim, dim) if backbone_reads_condition \
            else None
        self.backbone = build_backbone(
            config.backbone, d_in=dim, d_model=config.d_model, d_out=config.token_size,
            num_layers=config.num_layers, d_state=config.d_state, d_conv=config.d_conv,
            expand=config.expand)
        self.denoiser = Denoiser1D(config.token_size, config.denoiser_channels,
                                   config.kernel_size, cond_dim=config.token_size)

    def denoise(self, x_t: Tensor, t: Tensor, prototypes: Tensor) -> Tensor:
        out = self.denoiser(x_t, t, prototypes)
        return out + prototypes if self.prototype_skip else out

    def backbone_input(self, states: Tensor | None, conditions: Tensor | None,
                       batch: int, start: int = 0, end: int | None = None) -> Tensor:
        """What the backbone reads for tokens ``start:end`` (default all) of ``batch`` models."""
        pos = self.position() if start == 0 and end is None else self.position.rows(start, end)
        h = pos.unsqueeze(0).expand(batch, -1, -1)
        if self.states is not None and states is not None:
            h = h + self.states(states).unsqueeze(1)
            if self.state_positions is not None:
                h = h + self.state_positions[states, start:end]
        if self.condition is not None and conditions is not None:
            h = h + self.condition(conditions).unsqueeze(1)
        return h

    def window_input(self, states: Tensor | None, conditions: Tensor | None,
                     index: Tensor) -> Tensor:
        """What the backbone reads for the tokens at ``index`` [b, W] of b models."""
        h = self.position.rows_at(index)
        if self.states is not None and states is not None:
            h = h + self.states(states).unsqueeze(1)
            if self.state_positions is not None:
                h = h + self.state_positions[states[:, None], index]
        if self.condition is not None and conditions is not None:
            h = h + self.condition(conditions).unsqueeze(1)
        return h

    def prototypes(self, states: Tensor | None, conditions: Tensor | None,
                   batch: int) -> Tensor:
        out = self.backbone(self.backbone_input(states, conditions, batch))
        return self.add_fixed(out, states, conditions, None)

    def add_fixed(self, protos: Tensor, states: Tensor | None, conditions: Tensor | None,
                  index: Tensor | None) -> Tensor:
        """``protos`` [b, W, T] of the tokens at ``index`` ([b, W]; [W] for every model; None:
        all tokens), plus what the network holds fixed: each token's mean, or the condition's
        anchor."""
        if self.anchor is not None and conditions is not None:
            # With task states, only the shared state's rows read held-out anchors: a task's
            # own state stands for that task, whose in-sample anchor sampling reads too.
            held = (states == self.shared_state
                    if self.shared_state is not None and states is not None else None)
            return protos + self.anchor(conditions, index, held).to(protos.dtype)
        if self.token_means is None:
            return protos
        if index is None:
            index = torch.arange(protos.shape[1], device=protos.device)
        # a row per run only where runs have position rows, and then states are always given
        means = (self.token_means[states[:, None], index] if self.token_means.shape[0] > 1
                 else self.token_means[0, index])
        return protos + means.to(protos.dtype)
