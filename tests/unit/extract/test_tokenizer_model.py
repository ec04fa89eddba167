import pytest
import torch

from lvmae.extract.tokenizer.model import (
    CausalConv3d,
    TokenizerArch,
    VideoTokenizer,
    depth_to_space,
    depth_to_time,
    importance,
    latent_frames,
    space_to_depth,
    token_footprint_mean,
)

TINY = TokenizerArch(channels=(8, 16, 16), scorer_channels=8, groups=4)


def model(seed=0, arch=TINY):
    torch.manual_seed(seed)
    return VideoTokenizer(arch).eval()


def test_shapes_9_frames_64px_give_3x16x16_tokens():
    m = model()
    x = torch.rand(2, 3, 9, 64, 64) * 2 - 1
    codes, indices, logits = m.encode(x)
    assert codes.shape == (2, 5, 3, 16, 16) and indices.shape == (2, 3, 16, 16) and logits.shape == (2, 3, 16, 16)
    assert m.decode(codes).shape == x.shape
    assert latent_frames(9) == 3 and latent_frames(1) == 1 and latent_frames(17) == 5
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        latent_frames(8)


def test_default_codebook_fits_int16():
    arch = TokenizerArch()
    assert arch.codebook_size == 15360 < 2**15


@pytest.mark.parametrize("k", [1, 2, 5, 8])
def test_causality_later_frames_do_not_change_earlier_latents(k):
    m = model()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 9, 32, 32, generator=g) * 2 - 1
    y = x.clone()
    y[:, :, k:] = torch.rand(1, 3, 9 - k, 32, 32, generator=g) * 2 - 1  # change frames k .. 8
    with torch.no_grad():
        cx, ix, sx = m.encode(x)
        cy, iy, sy = m.encode(y)
    # Latent j depends on frames 0 .. 4j, so latents with 4j < k must be unchanged.
    unchanged = [j for j in range(3) if 4 * j < k]
    changed = [j for j in range(3) if 4 * j >= k]
    for j in unchanged:
        assert torch.equal(ix[:, j], iy[:, j]) and torch.allclose(sx[:, j], sy[:, j])
    for j in changed:
        assert not torch.allclose(sx[:, j], sy[:, j])
    # The decoder is causal too: frames before k decode the same from the same early latents.
    with torch.no_grad():
        dx, dy = m.decode(cx), m.decode(cy)
    first_changed_frame = 0 if not unchanged else 4 * max(unchanged) + 1
    assert torch.allclose(dx[:, :, :first_changed_frame], dy[:, :, :first_changed_frame], atol=1e-6)


def test_fsq_indices_round_trip_to_codes():
    m = model()
    codes, indices, _ = m.encode(torch.rand(2, 3, 5, 32, 32) * 2 - 1)
    assert torch.allclose(m.codes_from_indices(indices), codes, atol=1e-6)


def test_same_input_and_seed_same_outputs():
    x = torch.rand(2, 3, 9, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    a, b = model(seed=7), model(seed=7)
    with torch.no_grad():
        ca, ia, sa = a.encode(x)
        cb, ib, sb = b.encode(x)
    assert torch.equal(ia, ib) and torch.equal(sa, sb) and torch.equal(a.decode(ca), b.decode(cb))


def test_dropped_tokens_change_the_decoder_input():
    m = model()
    codes, _, _ = m.encode(torch.rand(1, 3, 5, 32, 32) * 2 - 1)
    keep = torch.ones(1, 2, 8, 8)
    keep[0, 1, 2, 3] = 0
    with torch.no_grad():
        full, part = m.decode(codes), m.decode(codes, keep)
    diff = (full - part).abs().sum(dim=(0, 1, 3, 4))
    assert diff[0] == 0 and diff[1:].sum() > 0  # frame 0 belongs to latent 0, untouched


def test_space_and_time_rearrangements_invert():
    x = torch.randn(2, 3, 4, 8, 8)
    assert torch.equal(depth_to_space(space_to_depth(x)), x)
    y = depth_to_time(torch.randn(1, 6, 3, 2, 2))
    assert y.shape == (1, 3, 5, 2, 2)


def test_causal_conv_pads_the_past_only():
    conv = CausalConv3d(1, 1, (3, 1, 1))
    x = torch.zeros(1, 1, 5, 1, 1)
    x[0, 0, 3] = 1.0
    with torch.no_grad():
        y = conv(x) - conv(torch.zeros_like(x))
    assert torch.all(y[0, 0, :3] == 0)


def test_footprint_mean_and_importance():
    v = torch.zeros(1, 9, 8, 8)
    v[0, 0, :4, :4] = 1.0  # frame 0, top-left token of latent 0
    v[0, 1:5, 4:, 4:] = 1.0  # frames 1-4, bottom-right token of latent 1
    fp = token_footprint_mean(v)
    assert fp.shape == (1, 3, 2, 2)
    assert fp[0, 0, 0, 0] == 1 and fp[0, 1, 1, 1] == 1 and fp.sum() == 2
    scores = torch.tensor([[0.1] * 18 + [0.9, 0.8]])
    assert importance(scores, 0.1).item() == pytest.approx(0.85)
