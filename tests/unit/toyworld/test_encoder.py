import numpy as np
import pytest
import torch

from lvmae.foundation.files import sha256_file
from lvmae.foundation.provenance import read_provenance
from lvmae.foundation.schema import EncoderFitConfig
from lvmae.toyworld.encoder import (
    LOOKS,
    SHIPPED_WEIGHTS,
    bank_frames,
    create_model,
    fit_encoder,
    heldout_frames,
    sample_frames,
    to_tensor,
    video_like,
    world_fingerprint,
    zero_shot,
)
from lvmae.toyworld.world import COLOURS, caption_bank


@pytest.fixture(scope="module")
def held():
    return heldout_frames(300, seed=4242)


def test_sampled_frames_show_their_caption():
    rng = np.random.default_rng(0)
    ids = np.arange(0, len(LOOKS), 7)
    frames = sample_frames(rng, ids, 64)
    assert frames.shape == (len(ids), 64, 64, 3)
    for frame, cid in zip(frames, ids):
        look = LOOKS[cid]
        if look.shape is not None:
            assert (frame.reshape(-1, 3) == COLOURS[look.colour]).all(axis=1).sum() > 60


def test_video_like_keeps_the_picture():
    rng = np.random.default_rng(0)
    frames = sample_frames(rng, np.arange(20), 64)
    degraded = video_like(frames, rng)
    psnr = 10 * np.log10(255**2 / np.mean((degraded.astype(float) - frames) ** 2))
    assert 25 < psnr < 60


def test_heldout_frames_are_labelled_from_truth(held):
    assert held.frames.shape == (300, 64, 64, 3) and held.labels.shape == (300,)
    assert held.labels.max() < len(caption_bank())
    assert len(set(held.labels.tolist())) > 40


def test_bank_frames_cover_every_caption():
    bank = bank_frames(per_caption=1, seed=3)
    assert sorted(bank.labels.tolist()) == list(range(len(caption_bank())))
    assert bank.frames.shape == (len(caption_bank()), 64, 64, 3)


def test_brief_refit_learns(tmp_path, held):
    settings = EncoderFitConfig(steps=60, batch_size=120, warmup=10, eval_frames=200, eval_seed=4242)
    result = fit_encoder(tmp_path / "toyclip.pt", settings, command="test", progress=False)
    losses = result.losses
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])
    z = result.provenance["zero_shot"]
    assert z["background"] > 0.5 and z["top1"] > 10 / len(caption_bank())  # chance is 1/240
    prov = read_provenance(tmp_path / "toyclip.pt")
    assert prov["sha256"] == sha256_file(tmp_path / "toyclip.pt") and prov["command"] == "test"
    state = torch.load(tmp_path / "toyclip.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())


needs_shipped = pytest.mark.skipif(not SHIPPED_WEIGHTS.is_file(), reason="shipped weights not fitted yet")


@needs_shipped
def test_shipped_weights_load_through_open_clip_like_real_pretrained_weights():
    import open_clip

    ours, _, _ = create_model(SHIPPED_WEIGHTS)
    theirs, _, preprocess = open_clip.create_model_and_transforms("toyclip", pretrained=str(SHIPPED_WEIGHTS))
    ours.eval(), theirs.eval()
    x = to_tensor(sample_frames(np.random.default_rng(1), np.arange(8), 64))
    with torch.no_grad():
        assert torch.equal(ours.encode_image(x), theirs.encode_image(x))


@needs_shipped
def test_shipped_weights_match_the_world_and_their_provenance():
    prov = read_provenance(SHIPPED_WEIGHTS)
    assert prov is not None, "toyclip.provenance.json must ship beside the weights"
    # Regenerate the shipped file whenever the world or the model config changes.
    assert prov["world_fingerprint"] == world_fingerprint()
    assert prov["sha256"] == sha256_file(SHIPPED_WEIGHTS)
    assert prov["zero_shot"]["top1"] >= 0.95 and prov["zero_shot"]["frames"] >= 1000
    assert prov["zero_shot_whole_bank"]["top1"] >= 0.9
    assert prov["fit_seconds"] <= 3600
    assert SHIPPED_WEIGHTS.stat().st_size < 16 * 2**20


@needs_shipped
def test_shipped_weights_classify_held_out_frames(held):
    model, _, tokenizer = create_model(SHIPPED_WEIGHTS)
    assert zero_shot(model, tokenizer, held)["top1"] >= 0.95
