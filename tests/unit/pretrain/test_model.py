import pytest
import torch
import torch.nn.functional as F

from lvmae.pretrain.masking import decoder_adaptive, decoder_all, random_mask
from lvmae.pretrain.model import LVMAE, ModelConfig, code_targets, count_params, gather_index, sincos
from lvmae.pretrain.presets import PresetError, load_preset, model_config, preset_names


def tiny(dim_in=16, **kw):
    return LVMAE(model_config("tiny", dim_in=dim_in, **kw)).eval()


def masks(valid, ratio=0.5, kappa=0.15, seed=0, mode="adaptive"):
    g = torch.Generator().manual_seed(seed)
    hidden = random_mask(valid, ratio, generator=g)
    importance = torch.rand(valid.shape, generator=g)
    selected = decoder_all(hidden) if mode == "all" else decoder_adaptive(hidden, importance, kappa)
    return hidden, selected


def test_forward_shapes():
    model = tiny()
    B, T, D = 3, 40, 16
    emb, valid = torch.randn(B, T, D), torch.ones(B, T, dtype=torch.bool)
    hidden, selected = masks(valid, mode="all")
    out = model(emb, valid, hidden, selected)
    S = int(selected.sum(1).max())
    assert out.pred.shape == (B, S, D) and out.index.shape == (B, S) and out.keep.shape == (B, S)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.code is None
    # The predictions are for exactly the selected positions.
    for b in range(B):
        assert sorted(out.index[b][out.keep[b]].tolist()) == selected[b].nonzero().flatten().tolist()
    assert model.features(emb, valid).shape == (B, T, model.cfg.width)


def test_padded_batch_gives_the_same_loss_and_predictions():
    torch.manual_seed(0)
    model = tiny()
    T, D = 30, 16
    emb = torch.randn(1, T, D)
    valid = torch.ones(1, T, dtype=torch.bool)
    hidden, selected = masks(valid, mode="all")
    alone = model(emb, valid, hidden, selected)

    # Pad to 50 with garbage, and put a second, longer window beside it.
    pad = lambda m, fill=False: torch.cat([m, torch.full((1, 20), fill)], 1)  # noqa: E731
    emb_p = torch.cat([emb, 100 * torch.randn(1, 20, D)], 1)
    padded = model(emb_p, pad(valid), pad(hidden), pad(selected))
    assert torch.allclose(padded.loss, alone.loss, atol=1e-6)
    assert torch.allclose(padded.pred[padded.keep], alone.pred[alone.keep], atol=1e-5)

    other = torch.randn(1, 50, D)
    valid2 = torch.ones(1, 50, dtype=torch.bool)
    h2, s2 = masks(valid2, seed=1, mode="all")
    both = model(
        torch.cat([emb_p, other]),
        torch.cat([pad(valid), valid2]),
        torch.cat([pad(hidden), h2]),
        torch.cat([pad(selected), s2]),
    )
    n = int(alone.keep.sum())
    assert torch.allclose(both.pred[0][both.keep[0]], alone.pred[alone.keep], atol=1e-5)
    # The batch loss is the mean over every selected segment of the batch.
    second = model(other, valid2, h2, s2)
    expected = (alone.loss * n + second.loss * int(second.keep.sum())) / (n + int(second.keep.sum()))
    assert torch.allclose(both.loss, expected, atol=1e-6)


def test_padded_segments_do_not_change_gradients():
    torch.manual_seed(0)
    model = tiny()
    emb = torch.randn(1, 24, 16)
    valid = torch.ones(1, 24, dtype=torch.bool)
    hidden, selected = masks(valid, mode="all")
    model(emb, valid, hidden, selected).loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    z = torch.zeros(1, 8, dtype=torch.bool)
    model(
        torch.cat([emb, torch.randn(1, 8, 16)], 1),
        torch.cat([valid, z], 1),
        torch.cat([hidden, z], 1),
        torch.cat([selected, z], 1),
    ).loss.backward()
    for g, p in zip(grads, model.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)


@pytest.mark.parametrize("ratio, mode", [(0.5, "adaptive"), (0.75, "adaptive"), (0.5, "all")])
def test_encoder_and_decoder_see_only_their_tokens(ratio, mode):
    model = tiny()
    T = 400
    valid = torch.ones(1, T, dtype=torch.bool)
    hidden, selected = masks(valid, ratio=ratio, mode=mode)
    seen = {}
    model.encoder.register_forward_pre_hook(lambda m, args: seen.__setitem__("enc", args[0].shape[1]))
    model.decoder.register_forward_pre_hook(lambda m, args: seen.__setitem__("dec", args[0].shape[1]))
    model(torch.randn(1, T, 16), valid, hidden, selected)
    n_hidden = round(ratio * T)
    n_selected = n_hidden if mode == "all" else round(0.15 * n_hidden)
    assert seen["enc"] == T - n_hidden
    assert seen["dec"] == T - n_hidden + n_selected
    if mode == "adaptive":
        assert seen["dec"] < T * ((1 - ratio) + ratio * 0.15) + 1


def test_positions_extend_past_any_trained_length():
    pe = sincos(torch.arange(20000)[None], 32)
    assert pe.shape == (1, 20000, 32) and torch.isfinite(pe).all()
    assert not torch.allclose(pe[0, 10000], pe[0, 10001])
    model = tiny()
    out = model.features(torch.randn(1, 5000, 16), torch.ones(1, 5000, dtype=torch.bool))
    assert out.shape == (1, 5000, 32) and torch.isfinite(out).all()


def test_rotary_attention_sees_only_relative_positions():
    """With rotary attention (the default) nothing is absolute: shifting every index by the same amount
    leaves the outputs alone, and a token's output still depends on its neighbours' distances. Without
    it, the sin-cos sums make outputs depend on where the window starts."""
    g = torch.Generator().manual_seed(0)
    emb, keep = torch.randn(2, 30, 16, generator=g), torch.ones(2, 30, dtype=torch.bool)
    index = torch.arange(30).expand(2, 30)
    rotary = tiny()
    assert rotary.cfg.rotary
    with torch.no_grad():
        base = rotary.encode(emb, keep, index)
        assert torch.allclose(base, rotary.encode(emb, keep, index + 1000), atol=1e-4)
        spread = index * 2  # the same tokens, twice as far apart
        assert not torch.allclose(base, rotary.encode(emb, keep, spread), atol=1e-3)
        absolute = tiny(rotary=False)
        assert not absolute.cfg.rotary
        assert not torch.allclose(
            absolute.encode(emb, keep, index), absolute.encode(emb, keep, index + 1000), atol=1e-3
        )


def test_checkpoints_from_before_rotary_load_without_it():
    cfg = model_config("tiny", dim_in=16)
    old = {k: v for k, v in cfg.to_dict().items() if k != "rotary"}
    assert ModelConfig.from_dict(old).rotary is False
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_gather_index_time_order_and_padding():
    mask = torch.tensor([[True, False, True, True], [False, True, False, False]])
    idx, keep = gather_index(mask)
    assert idx[0].tolist() == [0, 2, 3] and keep.tolist() == [[True, True, True], [True, False, False]]
    assert idx[1, 0] == 1


def test_targets_are_l2_normalised_and_cosine_loss():
    torch.manual_seed(0)
    model = LVMAE(model_config("tiny", dim_in=16, loss="cosine")).eval()
    emb = torch.randn(1, 20, 16) * 5
    valid = torch.ones(1, 20, dtype=torch.bool)
    hidden, selected = masks(valid, mode="all")
    out = model(emb, valid, hidden, selected)
    target = F.normalize(emb[0, out.index[0]], dim=-1)
    assert torch.allclose(out.loss, (1 - F.cosine_similarity(out.pred[0], target, dim=-1)).mean(), atol=1e-6)
    mse = LVMAE(model_config("tiny", dim_in=16)).eval()
    mse.load_state_dict(model.state_dict())
    out = mse(emb, valid, hidden, selected)
    assert torch.allclose(out.loss, (out.pred[0] - target).pow(2).mean(), atol=1e-6)


def test_code_targets_are_per_digit_histograms():
    levels = (4, 3)
    # index = d0 + 4 * d1
    codes = torch.tensor([[[[0, 5], [11, 5]]]])  # (1, t=1, h=2, w=2): digits (0,0), (1,1), (3,2), (1,1)
    hist = code_targets(codes, levels)
    assert hist.shape == (1, 7)
    assert hist[0, :4].tolist() == [0.25, 0.5, 0.0, 0.25]
    assert hist[0, 4:].tolist() == [0.25, 0.5, 0.25]


def test_code_head_adds_its_loss():
    torch.manual_seed(0)
    model = LVMAE(model_config("tiny", dim_in=16, code_levels=(4, 4, 3), code_weight=0.5))
    B, T = 2, 30
    valid = torch.ones(B, T, dtype=torch.bool)
    hidden, selected = masks(valid)
    codes = torch.randint(0, 48, (B, T, 1, 2, 2))
    out = model(torch.randn(B, T, 16), valid, hidden, selected, codes)
    assert out.code is not None and torch.allclose(out.loss, out.recon + 0.5 * out.code)
    out.loss.backward()
    assert model.code_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="codes"):
        model(torch.randn(B, T, 16), valid, hidden, selected)


def test_tiny_model_overfits_one_sequence():
    torch.manual_seed(0)
    model = LVMAE(model_config("tiny", dim_in=16)).train()
    emb = torch.randn(1, 32, 16)
    valid = torch.ones(1, 32, dtype=torch.bool)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for step in range(800):
        g = torch.Generator().manual_seed(step)  # fresh random masks every step
        hidden = random_mask(valid, 0.5, generator=g)
        loss = model(emb, valid, hidden, decoder_all(hidden)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last <= 0.1 * first, (first, last)


def test_presets_are_listed_smallest_first_and_large_is_the_reference():
    assert preset_names() == ["tiny", "small", "base", "large"]
    large = load_preset("large")
    assert (large["depth"], large["width"], large["decoder_depth"], large["decoder_width"]) == (32, 1024, 8, 512)
    sizes = [count_params(LVMAE(model_config(n, dim_in=512))) for n in ("tiny", "small", "base")]
    assert sizes == sorted(sizes)


def test_preset_from_a_file_and_its_errors(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("width: 64\ndepth: 1\nheads: 2\ndecoder_width: 32\ndecoder_depth: 1\ndecoder_heads: 2\n")
    cfg = model_config(str(path), dim_in=8)
    assert isinstance(cfg, ModelConfig) and cfg.width == 64 and cfg.mlp_ratio == 4.0
    path.write_text("width: 64\ndepht: 1\n")
    with pytest.raises(PresetError, match="depht"):
        load_preset(str(path))
    with pytest.raises(PresetError, match="neither a built-in preset"):
        load_preset("enormous")
    path.write_text("width: 60\ndepth: 1\nheads: 8\ndecoder_width: 32\ndecoder_depth: 1\ndecoder_heads: 2\n")
    with pytest.raises(PresetError, match="heads"):
        model_config(str(path), dim_in=8)
