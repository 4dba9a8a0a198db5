"""Which axes of which tensors move together: the permutation structure of a model, derived by
tracing the model itself.

`torch.export` traces the model into a torch.fx graph of ATen operations with every shape known.
Walking the graph in order, each operation's rule (`rules.py`) unites the axes whose units must be
permuted together. What is left is a set of independent *permutation groups* (hidden units of a
Linear, channels of a Conv and its BatchNorm statistics, the residual stream, attention heads),
each listing the state-dict axes it permutes. Axes the model's inputs and outputs touch stay
fixed, so a permuted model computes exactly the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from paramgen.align.groups import AxisGroups
from paramgen.align.rules import Context, _Unsupported, rule_for

# One axis of a tensor as a row-major product of factors: (group name or None = fixed, size).
Factors = tuple[tuple[str | None, int], ...]


class UnsupportedLayerError(ValueError):
    """The model holds an operation whose permutation symmetry paramgen cannot derive."""


@dataclass
class PermutationSpec:
    """The permutation structure of one architecture.

    groups: permutable group name -> number of units.
    axes: state-dict key -> [(axis, factors)]: that axis, reshaped row-major into the factors'
        sizes, has each named factor permuted by its group's permutation.
    sites: graph values that carry a group, [(node name, axis, factors)], for activation matching.
    """

    groups: dict[str, int]
    axes: dict[str, list[tuple[int, Factors]]]
    sites: list[tuple[str, int, Factors]] = field(default_factory=list)
    program: Any = field(default=None, repr=False)
    batch: int = 0
    model: Any = field(default=None, repr=False)

    def keys_of(self, group: str) -> list[str]:
        """State-dict keys with an axis permuted by `group`."""
        return [k for k, axes in self.axes.items()
                if any(name == group for _, fs in axes for name, _ in fs)]

    def run(self, state_dict: Mapping[str, Tensor], x: Tensor,
            capture: set[str]) -> dict[str, Tensor]:
        """Run the traced model with `state_dict` on `x`; the values of the `capture` nodes."""
        from torch.export.graph_signature import InputKind

        if len(x) > self.batch and self.model is not None:
            self._retrace(x)
        ep = self.program
        chunks: dict[str, list[Tensor]] = {n: [] for n in capture}
        for start in range(0, len(x), self.batch):
            xb = x[start:start + self.batch]
            real = len(xb)
            if real < self.batch:  # the trace is specialised to its batch size: pad, then trim
                xb = torch.cat([xb, xb[:1].expand(self.batch - real, *xb.shape[1:])])
            args = []
            for spec in ep.graph_signature.input_specs:
                if spec.kind == InputKind.USER_INPUT:
                    args.append(xb)
                elif spec.target in state_dict:
                    args.append(state_dict[spec.target])
                elif spec.target in ep.state_dict:
                    args.append(ep.state_dict[spec.target])
                else:
                    args.append(ep.constants[spec.target])
            got = _Capture(ep.graph_module, capture).run(*args)
            for n, v in got.items():
                chunks[n].append(v[:real])
        return {n: torch.cat(v) for n, v in chunks.items()}


    def _retrace(self, x: Tensor) -> None:
        """Trace again at the batch size of `x` (one call, not one per padded chunk) when the
        new trace has the same graph values; otherwise keep chunking."""
        try:
            ep = torch.export.export(self.model, (x,), strict=False)
        except Exception:  # the chunked path still works; the retrace is only for speed
            return
        old = {n.name for n in self.program.graph.nodes}
        if old == {n.name for n in ep.graph.nodes}:
            self.program, self.batch = ep, len(x)


class _Capture(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule, names: set[str]) -> None:
        super().__init__(gm)
        self.names, self.seen = names, {}

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.names:
            self.seen[n.name] = out.detach()
        return out

    def run(self, *args: Any) -> dict[str, Tensor]:  # type: ignore[override]
        super().run(*args)
        return self.seen


def _layer_of(node) -> str:
    """'blocks.0.attn (Attention)': the innermost module an operation came from."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "the model's own forward"
    path, cls = list(stack.values())[-1]
    cls = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return f"{path or '<root>'} ({cls.rsplit('.', 1)[-1]})"


def discover(model: nn.Module, example_input: Tensor) -> PermutationSpec:
    """The permutation structure of `model`, traced on `example_input` (a batch of inputs).

    Raises UnsupportedLayerError naming the layer whose operation has no known symmetry rule.
    The trace is specialised to the batch size of `example_input`; `spec.run` pads to it.
    """
    import copy

    model = copy.deepcopy(model).eval()
    try:
        ep = torch.export.export(model, (example_input,), strict=False)
    except Exception as exc:  # export's own errors are many types; say what failed, keep cause
        raise UnsupportedLayerError(
            f"align: could not trace {type(model).__name__} with torch.export on an input of "
            f"shape {tuple(example_input.shape)} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); the permutation structure is "
            "derived from the trace") from exc
    groups = AxisGroups()
    ctx = Context(groups)
    sig = ep.graph_signature
    key_of = {s.arg.name: s.target for s in sig.input_specs
              if s.target is not None and s.kind.name in ("PARAMETER", "BUFFER")}
    state_keys = set(model.state_dict())
    entries: list[tuple[str, int, int]] = []  # (state-dict key, axis, group)
    values: list[tuple[str, list[int], tuple[int, ...]]] = []
    for node in ep.graph.nodes:
        val = node.meta.get("val")
        if node.op == "placeholder":
            shape = tuple(int(s) for s in getattr(val, "shape", ()))
            key = key_of.get(node.name)
            labels = ctx.fresh(shape, fixed=key is None)  # inputs and constants stay put
            ctx.labels[node.name] = labels
            if key is not None and key in state_keys:
                entries += [(key, axis, g) for axis, g in enumerate(labels) if shape[axis] > 1]
        elif node.op == "call_function":
            rule = rule_for(node)
            if rule is None:
                raise UnsupportedLayerError(
                    f"align: layer {_layer_of(node)} uses {node.target}, whose permutation "
                    "symmetry paramgen.align does not know; supported: Linear, Conv (grouped "
                    "and depthwise too), BatchNorm / LayerNorm / GroupNorm, pooling, "
                    "elementwise activations, residual adds, reshapes, attention "
                    "(scaled_dot_product_attention). Align a model without it, or train with "
                    "--align none")
            try:
                labels = rule(ctx, node)
            except _Unsupported as exc:
                raise UnsupportedLayerError(f"align: layer {_layer_of(node)}: {exc} is not "
                                            "supported") from None
            ctx.labels[node.name] = labels
            if isinstance(val, Tensor) and labels is not None:
                values.append((node.name, labels, tuple(int(s) for s in val.shape)))
        elif node.op == "output":
            for out in torch.utils._pytree.tree_leaves(node.args[0]):
                for g in ctx.of(out) or []:
                    groups.fix(g)  # the model's outputs are compared as they are
        elif node.op == "get_attr":
            ctx.labels[node.name] = ctx.fresh(getattr(val, "shape", ()))
        else:
            raise UnsupportedLayerError(f"align: unexpected graph node {node.op} {node.name}")
    spec = _build_spec(groups, entries, values, ep, int(example_input.shape[0]))
    spec.model = model
    return spec


def _build_spec(groups: AxisGroups, entries, values, ep, batch: int) -> PermutationSpec:
    # A group whose units appear in one tensor only moves nothing else with it: leave it fixed
    # (an unconstrained axis, e.g. a kernel position, must never be permuted).
    keys_per_atom: dict[int, set[str]] = {}
    for key, _, g in entries:
        for a in groups.atoms(g):
            keys_per_atom.setdefault(a, set()).add(key)
    names: dict[int, str] = {}
    for key, axis, g in entries:
        atoms = groups.atoms(g)
        for j, a in enumerate(atoms):
            if a in names or groups.is_fixed(a) or len(keys_per_atom.get(a, ())) < 2:
                continue
            names[a] = f"{key}[{axis}]" + (f".{j}" if len(atoms) > 1 else "")

    def factors(g: int, size: int) -> Factors:
        atoms = groups.atoms(g)
        out = tuple((names.get(a), groups.size(a)) for a in atoms)
        return out if out else ((None, size),)

    axes: dict[str, list[tuple[int, Factors]]] = {}
    for key, axis, g in entries:
        fs = factors(g, groups.size(g))
        if any(n is not None for n, _ in fs):
            axes.setdefault(key, []).append((axis, fs))
    sites = []
    for name, labels, shape in values:
        for axis, g in enumerate(labels):
            fs = factors(g, shape[axis])
            if any(n is not None for n, _ in fs):
                sites.append((name, axis, fs))
    sizes = {names[a]: groups.size(a) for a in names}
    return PermutationSpec(groups=sizes, axes=axes, sites=sites, program=ep, batch=batch)
