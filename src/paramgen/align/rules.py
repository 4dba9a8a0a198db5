"""How each traced operation constrains the permutations of its tensors' axes.

`torch.export` turns a model into a graph of ATen operations (Linear → `aten.linear`, BatchNorm
→ `aten.batch_norm`, a residual connection → `aten.add`, ...). A rule reads the axis groups of an
operation's inputs (see `groups.py`), unites the axes whose units must move together, fixes
the axes the operation reads by position, and returns the groups of the output's axes.

A rule exists for an operation only where we know the operation is *equivariant*: permuting the
units of its input axes as the rule says permutes its output the same way. An operation without a
rule is an error (see `structure.py`), never a silent guess.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

from paramgen.align.groups import AxisGroups

Labels = Any  # list[int] per tensor (one group per axis); a list of those for tuple outputs


class Context:
    """What a rule sees: the groups, the labels of graph values and their shapes."""

    def __init__(self, groups: AxisGroups) -> None:
        self.groups = groups
        self.labels: dict[str, Labels] = {}

    def of(self, value: Any) -> list[int] | None:
        """Axis groups of a graph value (None for Python scalars and None)."""
        name = getattr(value, "name", None)
        return self.labels.get(name) if name is not None else None

    def fresh(self, shape, fixed: bool = True) -> list[int]:
        return [self.groups.new(int(s), fixed=fixed) for s in shape]

    def unite(self, a: int, b: int) -> int:
        return self.groups.union(a, b)

    def fix(self, g: int) -> None:
        self.groups.fix(g)


def bound(node) -> dict[str, Any]:
    """The node's arguments by schema name, defaults filled in."""
    out = {}
    for i, arg in enumerate(node.target._schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        else:
            out[arg.name] = arg.default_value if arg.has_default_value() else None
    return out


def _shape(node) -> tuple[int, ...]:
    return tuple(int(s) for s in node.meta["val"].shape)


def _norm_dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


# ----------------------------------------------------------------------------- rules

def same(ctx: Context, node) -> Labels:
    """Elementwise (activations, dropout, softmax along any axis, copies): labels pass through."""
    labels = next((ctx.of(a) for a in node.args if ctx.of(a) is not None), None)
    return list(labels) if labels is not None else ctx.fresh(_shape(node))


def broadcast(ctx: Context, node) -> Labels:
    """Elementwise on several tensors (residual add, mul by a scale): aligned axes unite."""
    out_shape = _shape(node)
    out: list[int | None] = [None] * len(out_shape)
    for arg in node.args:
        labels = ctx.of(arg)
        if labels is None:
            continue
        shape = _shape(arg)
        offset = len(out_shape) - len(shape)
        for i, (g, s) in enumerate(zip(labels, shape)):
            if s == 1:
                continue  # a broadcast axis does not constrain the other side
            j = offset + i
            out[j] = g if out[j] is None else ctx.unite(out[j], g)
    return [g if g is not None else ctx.groups.new(s, fixed=True) for g, s in zip(out, out_shape)]


def reshape(ctx: Context, node) -> Labels:
    """view / reshape / flatten / (un)squeeze: the row-major factors of the input are re-cut at
    the output's axis boundaries; an axis made of several groups becomes their product."""
    labels = ctx.of(node.args[0])
    out_shape = _shape(node)
    bounds, acc = [], 1
    for s in out_shape:
        acc *= s
        bounds.append(acc)
    atoms = ctx.groups.cut(labels, bounds)
    if atoms is None:  # sizes do not nest: no unit keeps a place we can follow
        for g in labels:
            ctx.fix(g)
        return ctx.fresh(out_shape)
    out, acc, k = [], 1, 0
    for s in out_shape:
        parts = []
        target = acc * s
        while k < len(atoms) and acc < target:
            parts.append(atoms[k])
            acc *= ctx.groups.size(atoms[k])
            k += 1
        out.append(ctx.groups.product(parts))
    return out


def permute_dims(ctx: Context, node) -> Labels:
    """transpose / permute / movedim / t: the same groups in another axis order."""
    labels = list(ctx.of(node.args[0]))
    n = len(labels)
    name = node.target.overloadpacket.__name__
    args = bound(node)
    if name == "permute":
        order = [_norm_dim(d, n) for d in args["dims"]]
    elif name in ("transpose", "swapaxes", "swapdims"):
        order = list(range(n))
        a = _norm_dim(args.get("dim0", args.get("axis0")), n)
        b = _norm_dim(args.get("dim1", args.get("axis1")), n)
        order[a], order[b] = order[b], order[a]
    elif name in ("t", "numpy_T"):
        order = list(reversed(range(n)))
    else:  # movedim / moveaxis
        src, dst = args["source"], args["destination"]
        src = [src] if isinstance(src, int) else list(src)
        dst = [dst] if isinstance(dst, int) else list(dst)
        src, dst = [_norm_dim(d, n) for d in src], [_norm_dim(d, n) for d in dst]
        order: list[int | None] = [None] * n
        for s, d in zip(src, dst):
            order[d] = s
        rest = iter(i for i in range(n) if i not in src)
        order = [o if o is not None else next(rest) for o in order]
    return [labels[i] for i in order]


def linear(ctx: Context, node) -> Labels:
    """y = x W^T + b: x's last axis is W's input axis; W's output axis is y's last axis."""
    a = bound(node)
    x, w = ctx.of(a["input"]), ctx.of(a["weight"])
    ctx.unite(x[-1], w[1])
    if a.get("bias") is not None:
        ctx.unite(w[0], ctx.of(a["bias"])[0])
    return x[:-1] + [w[0]]


def _split(ctx: Context, g: int, first: int) -> tuple[int, int] | None:
    """`g` as a product (first x rest) of two groups, or None when its factors do not allow it."""
    atoms = ctx.groups.cut([g], [first])
    if atoms is None:
        return None
    acc, k = 1, 0
    while k < len(atoms) and acc < first:
        acc *= ctx.groups.size(atoms[k])
        k += 1
    return ctx.groups.product(atoms[:k]), ctx.groups.product(atoms[k:])


def convolution(ctx: Context, node) -> Labels:
    """ConvNd (grouped and depthwise included): channels as in Linear; with G groups the
    channels are (G x per-group) products, so whole groups move together; kernel axes fixed."""
    a = bound(node)
    name = node.target.overloadpacket.__name__
    transposed = bool(a.get("transposed", False)) or "transpose" in name
    x, w = ctx.of(a["input"]), ctx.of(a["weight"])
    w_shape = _shape(a["weight"])
    spatial = len(w_shape) - 2
    groups = int(a.get("groups") or 1)
    c = len(x) - spatial - 1  # channel axis: 1 when batched, 0 when not
    for g in w[2:]:
        ctx.fix(g)
    w_in, w_out = (w[0], w[1]) if transposed else (w[1], w[0])
    out_per_group = w_shape[1] if transposed else w_shape[0] // groups
    if groups == 1:
        ctx.unite(x[c], w_in)
        out_c = w_out
    else:
        parts = _split(ctx, x[c], groups)
        if parts is None:
            ctx.fix(x[c])
            ctx.fix(w_in)
            ctx.fix(w_out)
            out_c = w_out
        else:
            g_groups, g_in = parts
            ctx.unite(g_in, w_in)
            per_group = ctx.groups.new(out_per_group)
            out_c = ctx.groups.product([g_groups, per_group])
            if transposed:
                ctx.unite(w_out, per_group)  # weight [C_in, C_out / G, k...]
            else:
                ctx.unite(w_out, out_c)
    if a.get("bias") is not None:
        out_c = ctx.unite(out_c, ctx.of(a["bias"])[0])
    out_shape = _shape(node)
    return x[:c] + [out_c] + ctx.fresh(out_shape[c + 1:])


def batch_norm(ctx: Context, node) -> Labels:
    """BatchNorm (running statistics included) / InstanceNorm: per-channel, channel axis 1."""
    a = bound(node)
    x = ctx.of(a["input"])
    for key in ("weight", "bias", "running_mean", "running_var"):
        if a.get(key) is not None:
            ctx.unite(x[1], ctx.of(a[key])[0])
    out = list(x)
    if isinstance(node.meta["val"], (tuple, list)):  # native variants return (out, stats...)
        return [out] + [ctx.fresh(v.shape) for v in node.meta["val"][1:]]
    return out


def layer_norm(ctx: Context, node) -> Labels:
    """LayerNorm over the last axes: statistics are symmetric in the units, affine is per unit."""
    a = bound(node)
    x = ctx.of(a["input"])
    k = len(a["normalized_shape"])
    for key in ("weight", "bias"):
        if a.get(key) is not None:
            for g, h in zip(x[-k:], ctx.of(a[key])):
                ctx.unite(g, h)
    out = list(x)
    if isinstance(node.meta["val"], (tuple, list)):
        return [out] + [ctx.fresh(v.shape) for v in node.meta["val"][1:]]
    return out


def group_norm(ctx: Context, node) -> Labels:
    """GroupNorm: statistics per group of channels, so channels are (groups x per-group)."""
    a = bound(node)
    x = ctx.of(a["input"])
    parts = _split(ctx, x[1], int(a.get("num_groups") or a.get("group")))
    if parts is None:
        ctx.fix(x[1])
    for key in ("weight", "bias"):
        if a.get(key) is not None:
            ctx.unite(x[1], ctx.of(a[key])[0])
    out = list(x)
    if isinstance(node.meta["val"], (tuple, list)):
        return [out] + [ctx.fresh(v.shape) for v in node.meta["val"][1:]]
    return out


def pool(ctx: Context, node) -> Labels:
    """Pooling: per channel over the trailing spatial axes, which are fixed."""
    x = ctx.of(node.args[0])
    name = node.target.overloadpacket.__name__
    spatial = int(next(ch for ch in reversed(name) if ch.isdigit()))
    val = node.meta["val"]
    out_shape = tuple(int(s) for s in (val[0] if isinstance(val, (tuple, list)) else val).shape)
    for g in x[len(x) - spatial:]:
        ctx.fix(g)
    out = x[:len(x) - spatial] + ctx.fresh(out_shape[len(x) - spatial:])
    if isinstance(node.meta["val"], (tuple, list)):  # with_indices variants
        return [out, ctx.fresh(node.meta["val"][1].shape)]
    return out


def reduce(ctx: Context, node) -> Labels:
    """mean / sum / amax over axes: symmetric in the reduced units, so no constraint on them."""
    x = ctx.of(node.args[0])
    a = bound(node)
    dims = a.get("dim")
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        dims = list(range(len(x)))
    dims = {_norm_dim(d, len(x)) for d in ([dims] if isinstance(dims, int) else dims)}
    keep = bool(a.get("keepdim", False))
    out = []
    for i, g in enumerate(x):
        if i not in dims:
            out.append(g)
        elif keep:
            out.append(ctx.groups.new(1))
    if isinstance(node.meta["val"], (tuple, list)):  # max.dim: (values, indices)
        return [out, list(out)]
    return out


def matmul(ctx: Context, node) -> Labels:
    """a @ b: the contracted axes unite; batch axes broadcast."""
    x, y = ctx.of(node.args[0]), ctx.of(node.args[1])
    if len(x) < 2 or len(y) < 2:
        raise _Unsupported("matmul of a vector")
    ctx.unite(x[-1], y[-2])
    xs, ys = _shape(node.args[0])[:-2], _shape(node.args[1])[:-2]
    out_shape = _shape(node)[:-2]
    batch: list[int | None] = [None] * len(out_shape)
    for labels, shape in ((x[:-2], xs), (y[:-2], ys)):
        off = len(out_shape) - len(shape)
        for i, (g, s) in enumerate(zip(labels, shape)):
            if s > 1:
                batch[off + i] = g if batch[off + i] is None else ctx.unite(batch[off + i], g)
    batch = [g if g is not None else ctx.groups.new(s, fixed=True)
             for g, s in zip(batch, out_shape)]
    return batch + [x[-2], y[-1]]


def addmm(ctx: Context, node) -> Labels:
    """bias + a @ b."""
    bias, x, y = (ctx.of(v) for v in node.args[:3])
    ctx.unite(x[-1], y[-2])
    if bias is not None and _shape(node.args[0])[-1] > 1:
        ctx.unite(bias[-1], y[-1])
    return [x[-2], y[-1]]


def attention(ctx: Context, node) -> Labels:
    """scaled_dot_product_attention: q·k contracts the feature axis; keys and values share the
    sequence axis; heads (a batch axis) move together in q, k and v."""
    a = bound(node)
    q, k, v = ctx.of(a["query"]), ctx.of(a["key"]), ctx.of(a["value"])
    shapes = [_shape(a[n]) for n in ("query", "key", "value")]
    for i in range(len(q) - 2):  # batch axes (heads among them) of q, k and v move together
        axes = [(labels[i], shape[i]) for labels, shape in zip((q, k, v), shapes)]
        if len({s for _, s in axes}) > 1:  # broadcast (e.g. grouped-query heads): keep in place
            for g, _ in axes:
                ctx.fix(g)
        else:
            ctx.unite(ctx.unite(axes[0][0], axes[1][0]), axes[2][0])
    ctx.unite(q[-1], k[-1])
    ctx.unite(k[-2], v[-2])
    mask = a.get("attn_mask")
    if mask is not None and ctx.of(mask) is not None:
        m = ctx.of(mask)
        for g, h in zip(m[-2:], [q[-2], k[-2]]):
            ctx.unite(g, h)
        for g in m:
            ctx.fix(g)
    return q[:-1] + [v[-1]]


def embedding(ctx: Context, node) -> Labels:
    """Embedding lookup: rows are read by position (fixed); the feature axis is free."""
    a = bound(node)
    w, idx = ctx.of(a["weight"]), ctx.of(a["indices"])
    ctx.fix(w[0])
    return list(idx) + [w[1]]


def expand(ctx: Context, node) -> Labels:
    """Broadcast to a larger shape: new and size-1 axes get fixed groups, the rest pass."""
    x = ctx.of(node.args[0])
    in_shape, out_shape = _shape(node.args[0]), _shape(node)
    off = len(out_shape) - len(in_shape)
    out = ctx.fresh(out_shape[:off])
    for g, s, t in zip(x, in_shape, out_shape[off:]):
        out.append(g if s == t else ctx.groups.new(t, fixed=True))
    return out


def repeat(ctx: Context, node) -> Labels:
    """Tiling: a repeated axis is the product (copies x units)."""
    x = ctx.of(node.args[0])
    reps = list(bound(node)["repeats"])
    off = len(reps) - len(x)
    out = ctx.fresh([r for r in reps[:off]])
    for g, r in zip(x, reps[off:]):
        out.append(g if r == 1 else ctx.groups.product([ctx.groups.new(r, fixed=True), g]))
    return out


def concat(ctx: Context, node) -> Labels:
    """cat / stack: the joined axis holds units by position (fixed); other axes unite."""
    a = bound(node)
    tensors = a["tensors"]
    name = node.target.overloadpacket.__name__
    out_shape = _shape(node)
    d = _norm_dim(int(a.get("dim") or 0), len(out_shape))
    out = [None] * len(out_shape)
    for t in tensors:
        labels = list(ctx.of(t))
        if name == "cat":
            ctx.fix(labels[d])
            labels[d] = None
        else:
            labels.insert(d, None)
        for i, g in enumerate(labels):
            if g is not None:
                out[i] = g if out[i] is None else ctx.unite(out[i], g)
    return [g if g is not None else ctx.groups.new(s, fixed=True) for g, s in zip(out, out_shape)]


def select(ctx: Context, node) -> Labels:
    """Indexing one position of an axis: that axis is read by position, so it is fixed."""
    a = bound(node)
    x = list(ctx.of(a["self"]))
    d = _norm_dim(int(a["dim"]), len(x))
    ctx.fix(x[d])
    return x[:d] + x[d + 1:]


def slice_(ctx: Context, node) -> Labels:
    """A slice that keeps the whole axis passes; a partial one fixes the axis."""
    a = bound(node)
    x = list(ctx.of(a["self"]))
    d = _norm_dim(int(a["dim"]), len(x))
    if _shape(node)[d] != _shape(a["self"])[d]:
        ctx.fix(x[d])
        x[d] = ctx.groups.new(_shape(node)[d], fixed=True)
    return x


def unbind(ctx: Context, node) -> Labels:
    """unbind / split / chunk along an axis: that axis is cut by position (fixed)."""
    a = bound(node)
    x = list(ctx.of(a["self"]))
    d = _norm_dim(int(a.get("dim") or 0), len(x))
    ctx.fix(x[d])
    outs = []
    for v in node.meta["val"]:
        if node.target.overloadpacket.__name__ == "unbind":
            outs.append(x[:d] + x[d + 1:])
        else:
            outs.append(x[:d] + [ctx.groups.new(int(v.shape[d]), fixed=True)] + x[d + 1:])
    return outs


def getitem(ctx: Context, node) -> Labels:
    """One output of a multi-output operation (unbind, split, native norms)."""
    return ctx.labels[node.args[0].name][node.args[1]]


def creation(ctx: Context, node) -> Labels:
    """New tensors (zeros, arange, ...): every axis holds values by position."""
    return ctx.fresh(_shape(node))


def nothing(ctx: Context, node) -> Labels:
    """Assertions and shape queries: no tensor, no constraint."""
    return None


class _Unsupported(Exception):
    """A rule met a form of its operation it does not handle."""


_SAME = """relu relu_ gelu tanh sigmoid silu leaky_relu elu selu celu hardtanh hardswish
hardsigmoid softplus mish neg exp log abs sqrt rsqrt square sin cos erf reciprocal clamp
clamp_min clamp_max relu6 pow dropout feature_dropout alpha_dropout native_dropout clone
contiguous alias detach lift_fresh_copy _to_copy to type_as softmax _softmax log_softmax
_log_softmax zeros_like ones_like full_like empty_like rand_like randn_like _assert_tensor_metadata
sign floor ceil round trunc logical_not bitwise_not isnan nan_to_num sigmoid_ tanh_ gelu_ silu_
hardtanh_ dropout_""".split()
_BROADCAST = """add sub rsub mul div maximum minimum where masked_fill eq ne lt le gt ge
logical_and logical_or fmod remainder pow_ lerp addcmul addcdiv""".split()
_RESHAPE = """view reshape _unsafe_view view_copy flatten unflatten squeeze unsqueeze
squeeze_copy unsqueeze_copy""".split()
_PERMUTE = "transpose permute movedim moveaxis t numpy_T swapaxes swapdims".split()
_POOL = """max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d
adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d
adaptive_max_pool2d adaptive_max_pool3d max_pool1d_with_indices max_pool2d_with_indices
max_pool3d_with_indices lp_pool1d lp_pool2d""".split()
_REDUCE = "mean sum amax amin max min std var prod logsumexp norm".split()
_CREATE = "zeros ones full arange empty scalar_tensor rand randn randint tensor".split()
_NOTHING = "_assert_async sym_size sym_numel sym_stride _assert_scalar sym_constrain_range".split()

RULES: dict[str, Callable[[Context, Any], Labels]] = {
    **{n: same for n in _SAME},
    **{n: broadcast for n in _BROADCAST},
    **{n: reshape for n in _RESHAPE},
    **{n: permute_dims for n in _PERMUTE},
    **{n: pool for n in _POOL},
    **{n: reduce for n in _REDUCE},
    **{n: creation for n in _CREATE},
    **{n: nothing for n in _NOTHING},
    "linear": linear,
    "conv1d": convolution, "conv2d": convolution, "conv3d": convolution,
    "convolution": convolution, "conv_transpose1d": convolution,
    "conv_transpose2d": convolution, "conv_transpose3d": convolution,
    "batch_norm": batch_norm, "_native_batch_norm_legit_no_training": batch_norm,
    "_native_batch_norm_legit": batch_norm, "native_batch_norm": batch_norm,
    "instance_norm": batch_norm,
    "layer_norm": layer_norm, "native_layer_norm": layer_norm,
    "group_norm": group_norm, "native_group_norm": group_norm,
    "matmul": matmul, "mm": matmul, "bmm": matmul, "addmm": addmm,
    "scaled_dot_product_attention": attention,
    "embedding": embedding,
    "expand": expand, "expand_as": expand, "repeat": repeat,
    "cat": concat, "stack": concat,
    "select": select, "slice": slice_,
    "unbind": unbind, "split": unbind, "split_with_sizes": unbind, "chunk": unbind,
    "tensor_split": unbind,
}


def rule_for(node) -> Callable[[Context, Any], Labels] | None:
    """The rule of a call_function node, or None when its operation is not supported."""
    if node.target is operator.getitem:
        return getitem
    packet = getattr(node.target, "overloadpacket", None)
    return RULES.get(packet.__name__) if packet is not None else None
