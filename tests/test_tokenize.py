"""Tokenizer: exact round trip over random layouts, masks, positions, copied buffers."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paramgen.tokenize import (MODES, Detokenizer, SafetensorsSink, StateDictBuilder,
                               Tokenizer)

FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-5, torch.float64: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-1}


@st.composite
def collections(draw):
    n_keys = draw(st.integers(1, 5))
    shapes = [tuple(draw(st.lists(st.integers(1, 7), min_size=1, max_size=3)))
              for _ in range(n_keys)]
    dtypes = [draw(st.sampled_from(FLOAT_DTYPES)) for _ in range(n_keys)]
    n_ckpts = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    sds = []
    for _ in range(n_ckpts):
        sd = {}
        for i, (shape, dt) in enumerate(zip(shapes, dtypes)):
            scale = 10 ** draw(st.integers(-3, 2))
            sd[f"layer{i}.weight"] = (torch.randn(shape, generator=g) * scale + i).to(dt)
        sd["bn.running_var"] = torch.rand(3, generator=g) + 0.01
        sd["bn.num_batches_tracked"] = torch.tensor(17)
        sds.append(sd)
    return sds


@settings(max_examples=60, deadline=None)
@given(sds=collections(), token_size=st.integers(1, 40), mode=st.sampled_from(MODES))
def test_round_trip_is_exact_for_every_key_shape_and_dtype(sds, token_size, mode):
    tk = Tokenizer.fit(sds, token_size=token_size, mode=mode)
    for sd in sds:
        tokens = tk.tokenize(sd)
        assert tokens.shape == (tk.num_tokens, token_size)
        assert torch.all(tokens[~tk.mask] == 0)
        back = tk.detokenize(tokens)
        assert list(back) == list(sd)
        for key, value in sd.items():
            assert back[key].dtype == value.dtype, key
            assert back[key].shape == value.shape, key
            if value.is_floating_point():
                ref = value.double()
                err = (back[key].double() - ref).abs().max().item()
                assert err <= TOL[value.dtype] * max(1.0, ref.abs().max().item()), (key, err)
            else:
                assert torch.equal(back[key], value)


def test_integer_buffers_are_copied_and_learned_scalars_generated():
    sds = [{"w": torch.randn(5), "n": torch.tensor(3), "s": torch.tensor(0.5 + i)}
           for i in range(2)]
    tk = Tokenizer.fit(sds, token_size=4)
    assert tk.generated_keys == ["w", "s"]  # a learned 0-d tensor (a temperature) is generated
    assert set(tk.copied) == {"n"}
    assert tk.num_tokens == 3
    for sd in sds:
        back = tk.detokenize(tk.tokenize(sd))
        assert back["s"].shape == () and abs(float(back["s"]) - float(sd["s"])) < 1e-5


def _tied_collection(n: int = 3) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    sds = []
    for _ in range(n):
        emb = torch.randn(6, 4, generator=g)
        # "head.weight" is the same parameter as "embed.weight" (weight tying), as a state dict
        # of a model with tied weights lists it.
        sds.append({"embed.weight": emb, "mid.weight": torch.randn(6, 4, generator=g),
                    "head.weight": emb, "head.bias": torch.randn(6, generator=g)})
    return sds


def test_tied_weights_are_generated_once_and_stay_tied(tmp_path):
    from safetensors.torch import load_file

    sds = _tied_collection()
    tk = Tokenizer.fit(sds, token_size=5)
    assert tk.tied == {"head.weight": "embed.weight"}
    assert "head.weight" not in tk.generated_keys
    noise = torch.randn(tk.num_tokens, tk.token_size)  # what a generator would produce
    out = tk.detokenize(noise)
    assert list(out) == list(sds[0])
    assert torch.equal(out["head.weight"], out["embed.weight"])
    assert not torch.equal(out["mid.weight"], out["embed.weight"])
    # Streamed to a file, and after a save/load of the layout, the tie holds too.
    again = Tokenizer.from_config(tk.to_config(), tk.copied_tensors())
    sink = SafetensorsSink(again, tmp_path / "m.safetensors")
    stream = Detokenizer(again, sink)
    for i in range(0, tk.num_tokens, 2):
        stream.feed(noise[i:i + 2])
    stream.close()
    sink.close()
    sd = load_file(str(tmp_path / "m.safetensors"))
    assert torch.equal(sd["head.weight"], sd["embed.weight"])
    assert torch.equal(sd["embed.weight"], out["embed.weight"])


def test_keys_equal_in_one_checkpoint_only_are_not_tied():
    sds = _tied_collection()
    sds[1] = {**sds[1], "head.weight": sds[1]["head.weight"] + 1}  # differs once: not a tie
    assert Tokenizer.fit(sds, token_size=5).tied == {}


def test_padding_mask_and_positions_in_layer_mode():
    sds = [{"a": torch.randn(10), "b": torch.randn(3, 2)}]
    tk = Tokenizer.fit(sds, token_size=4)
    # a: 10 values -> 3 tokens (last has 2 real values); b: 6 values -> 2 tokens.
    assert tk.positions.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]]
    assert tk.mask.sum(1).tolist() == [4, 4, 2, 4, 2]


def test_channel_mode_never_spans_channels():
    sds = [{"w": torch.randn(3, 5)}]
    tk = Tokenizer.fit(sds, token_size=4, mode="channel")
    assert tk.num_tokens == 6
    assert tk.mask.sum(1).tolist() == [4, 1] * 3


def test_normalisation_uses_collection_statistics_and_log_for_running_var():
    sds = [{"w": torch.full((4,), float(i)), "bn.running_var": torch.full((2,), 10.0 ** i)}
           for i in range(3)]
    tk = Tokenizer.fit(sds, token_size=8)
    w, rv = tk.layers
    assert w.mean == pytest.approx(1.0) and w.std == pytest.approx(math.sqrt(2 / 3))
    assert rv.log_transform and rv.mean == pytest.approx(math.log(10))
    flat = torch.cat([tk.flatten(sd) for sd in sds])
    assert flat.mean().abs() < 1e-5


def test_constant_layer_does_not_divide_by_zero():
    sds = [{"w": torch.ones(4), "v": torch.randn(4)} for _ in range(3)]
    tk = Tokenizer.fit(sds, token_size=4)
    back = tk.detokenize(tk.tokenize(sds[0]))
    assert torch.equal(back["w"], torch.ones(4))


def test_errors_name_the_key():
    tk = Tokenizer.fit([{"w": torch.randn(4)}], token_size=4)
    with pytest.raises(KeyError, match="'w'"):
        tk.tokenize({"x": torch.randn(4)})
    with pytest.raises(ValueError, match="'w'.*shape"):
        tk.tokenize({"w": torch.randn(5)})
    with pytest.raises(ValueError, match="empty"):
        Tokenizer.fit([], token_size=4)
    with pytest.raises(ValueError, match="mode"):
        Tokenizer.fit([{"w": torch.randn(4)}], mode="rows")


def test_config_round_trip():
    sds = [{"w": torch.randn(6, 3), "n": torch.tensor(2)} for _ in range(2)]
    tk = Tokenizer.fit(sds, token_size=5, mode="channel")
    tk2 = Tokenizer.from_config(tk.to_config(), tk.copied_tensors())
    assert torch.equal(tk2.tokenize(sds[1]), tk.tokenize(sds[1]))
    assert torch.equal(tk2.positions, tk.positions)


def test_centred_tokens_hold_what_differs_between_models_and_invert_exactly(tmp_path):
    """center=True: each value minus its collection mean, over the tensor's residual std; a
    shared start (fine-tunes of one model) vanishes from the tokens and comes back exactly."""
    g = torch.Generator().manual_seed(0)
    start = {"w": torch.randn(7, 9, generator=g) * 3 + 2, "b": torch.randn(5, generator=g),
             "bn.running_var": torch.rand(4, generator=g) + 0.5, "n": torch.tensor(3)}
    sds = [{k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
            for k, v in start.items()} for _ in range(6)]
    tk = Tokenizer.fit(sds, token_size=8, mode="layer", center=True)
    flat = torch.stack([tk.flatten(sd) for sd in sds])
    assert flat.mean(0).abs().max() < 1e-4  # every value centred on its own mean
    assert flat.pow(2).mean().sqrt() == pytest.approx(1.0, abs=0.02)
    plain = torch.stack([Tokenizer.fit(sds, token_size=8).flatten(sd) for sd in sds])
    assert plain.std(0).mean() < 0.05  # without centring, the differences are tiny
    for sd in sds[:2]:
        back = tk.detokenize(tk.tokenize(sd))
        for k in sd:
            assert torch.allclose(back[k], sd[k], atol=1e-5), k
        builder = StateDictBuilder(tk)
        stream = Detokenizer(tk, builder)
        tokens = tk.tokenize(sd)
        for i in range(0, tk.num_tokens, 3):  # blocks that split layers: offsets by position
            stream.feed(tokens[i:i + 3])
        stream.close()
        assert all(torch.equal(builder.result()[k], back[k]) for k in back)
    tk2 = Tokenizer.from_config(tk.to_config(), tk.copied_tensors())
    assert torch.equal(tk2.tokenize(sds[3]), tk.tokenize(sds[3]))
    assert "centered" not in Tokenizer.fit(sds, token_size=8).to_config()
    tensors = {k: v for k, v in tk.copied_tensors().items() if k != "offset.w"}
    with pytest.raises(ValueError, match="offsets of the centred tensor 'w'"):
        Tokenizer.from_config(tk.to_config(), tensors)


@settings(max_examples=30, deadline=None)
@given(sds=collections(), token_size=st.integers(1, 40), mode=st.sampled_from(MODES),
       block=st.integers(1, 9))
def test_streaming_detokenizer_equals_detokenize(sds, token_size, mode, block):
    tk = Tokenizer.fit(sds, token_size=token_size, mode=mode)
    tokens = tk.tokenize(sds[0])
    builder = StateDictBuilder(tk)
    stream = Detokenizer(tk, builder)
    for s in range(0, tk.num_tokens, block):
        stream.feed(tokens[s:s + block])
    stream.close()
    streamed, whole = builder.result(), tk.detokenize(tokens)
    assert list(streamed) == list(whole)
    assert all(torch.equal(streamed[k], whole[k]) for k in whole)
    # Positions and padding come from the layout alone: the valid slots hold every value once.
    assert int(tk.mask.sum()) == tk.num_values == sum(l.numel for l in tk.layers)
    assert tk.positions.shape == (tk.num_tokens, 2)


def test_safetensors_sink_writes_what_detokenize_gives(tmp_path):
    from safetensors.torch import load_file

    sds = [{"a.weight": torch.randn(4, 9), "bn.num_batches_tracked": torch.tensor(3),
            "bn.running_var": torch.rand(9) + 0.1, "empty": torch.zeros(0),
            "h": torch.randn(5).half()} for _ in range(3)]
    tk = Tokenizer.fit(sds, token_size=7)
    tokens = tk.tokenize(sds[1])
    sink = SafetensorsSink(tk, tmp_path / "m.safetensors")
    stream = Detokenizer(tk, sink)
    for s in range(0, tk.num_tokens, 2):
        stream.feed(tokens[s:s + 2])
    stream.close()
    sink.close()
    got, want = load_file(str(tmp_path / "m.safetensors")), tk.detokenize(tokens)
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k


def test_detokenizer_rejects_too_few_or_too_many_tokens():
    sds = [{"w": torch.randn(10)}]
    tk = Tokenizer.fit(sds, token_size=4)
    tokens = tk.tokenize(sds[0])
    stream = Detokenizer(tk, StateDictBuilder(tk))
    stream.feed(tokens[:2])
    with pytest.raises(ValueError, match="cut short: 2 of 3"):
        stream.close()
    with pytest.raises(ValueError, match="do not fit at token 2"):
        stream.feed(tokens)


@pytest.mark.parametrize("other", [torch.ones(4), torch.ones(3, dtype=torch.float64)])
def test_a_collection_whose_shapes_or_dtypes_differ_is_refused(other):
    with pytest.raises(ValueError, match="differ at key 'w'"):
        Tokenizer.fit([{"w": torch.ones(3)}, {"w": other}])
