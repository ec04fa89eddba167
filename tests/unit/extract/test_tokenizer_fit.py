import json

import numpy as np
import pytest
import torch

from lvmae.extract.tokenizer import FrozenTokenizer
from lvmae.extract.tokenizer.evaluate import evaluate, roc_auc
from lvmae.extract.tokenizer.fit import fit_tokenizer, load_frames, load_tokenizer, sample_clips
from lvmae.extract.tokenizer.model import TokenizerArch
from lvmae.foundation.schema import CorpusSpec, SegmentConfig, TokenizerFitConfig
from lvmae.toyworld.generate import generate
from lvmae.toyworld.heldout import heldout_clips

TINY = TokenizerArch(channels=(8, 16, 16), scorer_channels=8, groups=4)
SEGMENT = SegmentConfig()  # 9 frames of 64 px at 8 fps


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokcorpus")
    corpus = generate(CorpusSpec(videos=2, minutes=(0.3, 0.3), seed=21), root, workers=1, progress=False)
    return [str(root / u) for u in corpus.videos.column("uri").to_pylist()]


@pytest.fixture(scope="module")
def fitted(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tok.pt"
    settings = TokenizerFitConfig(steps=40, batch_size=4, warmup=5, lr=2e-3, checkpoint_every=20, log_every=5)
    model, info = fit_tokenizer(videos, out, settings, SEGMENT, arch=TINY, progress=False, meta={"command": "test"})
    return out, model, info


def test_clips_come_from_the_videos(videos):
    pool = load_frames(videos, fps=8.0, size=64, progress=False)
    assert [len(p) for p in pool] == [144, 144] and pool[0].shape[1:] == (64, 64, 3)
    clips = sample_clips(pool, np.random.default_rng(0), 5, 9)
    assert clips.shape == (5, 9, 64, 64, 3) and clips.dtype == np.uint8


def test_brief_fit_learns_and_logs(fitted):
    out, model, info = fitted
    log = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(5, 45, 5))
    assert log[-1]["rec"] < 0.5 * log[0]["rec"]
    assert info["steps_done"] == 40 and info["command"] == "test"


def test_checkpoint_reloads_with_its_architecture(fitted):
    out, model, _ = fitted
    again = load_tokenizer(out)
    assert again.arch == TINY
    x = torch.rand(1, 3, 9, 64, 64) * 2 - 1
    with torch.no_grad():
        a = model.encode(x)[1]
        b = again.encode(x)[1]
    assert (a == b).float().mean() > 0.95  # fp16 weights: an index may flip at a rounding edge


def test_resume_continues_from_the_checkpoint(videos, fitted, tmp_path):
    out = tmp_path / "tok.pt"
    settings = TokenizerFitConfig(steps=20, batch_size=4, warmup=5, checkpoint_every=10, log_every=5)
    fit_tokenizer(videos, out, settings, SEGMENT, arch=TINY, progress=False)
    longer = TokenizerFitConfig(steps=30, batch_size=4, warmup=5, checkpoint_every=10, log_every=5)
    _, info = fit_tokenizer(videos, out, longer, SEGMENT, arch=TINY, resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20, 25, 30] and info["steps_done"] == 30


def test_frozen_tokenizer_outputs(fitted):
    out, _, _ = fitted
    tok = FrozenTokenizer(out, kappa=0.15, device="cpu", batch_size=3)
    clips = np.random.default_rng(0).integers(0, 256, (5, 9, 64, 64, 3), dtype=np.uint8)
    got = tok.tokenize(clips)
    assert got.indices.shape == (5, 3, 16, 16) and got.indices.dtype == np.int16
    assert got.scores.dtype == np.float16 and ((got.scores > 0) & (got.scores < 1)).all()
    assert got.importance.shape == (5,) and got.importance.dtype == np.float32
    again = tok.tokenize(clips)
    assert np.array_equal(got.indices, again.indices) and np.array_equal(got.scores, again.scores)
    assert tok.reconstruct(got.indices).shape == clips.shape
    assert tok.identity["levels"] == [8, 8, 8, 6, 5] and len(tok.identity["weights_sha256"]) == 64


def test_roc_auc_counts_ties_half():
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5


def test_heldout_check_runs(fitted):
    _, model, _ = fitted
    held = heldout_clips(12, seed=77, videos=2)
    assert held.clips.shape == (12, 9, 64, 64, 3) and held.masks.shape == (12, 9, 64, 64)
    figures = evaluate(model, held)
    assert 5 < figures["psnr_db"] < 60 and 0 <= figures["scorer_motion_auc"] <= 1


SHIPPED = __import__("pathlib").Path(__file__).resolve().parents[3] / "toyworld" / "weights" / "tokenizer.pt"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped tokenizer not fitted yet")
def test_shipped_tokenizer_meets_its_targets_and_matches_its_provenance():
    from lvmae.foundation.files import sha256_file
    from lvmae.foundation.provenance import read_provenance

    prov = read_provenance(SHIPPED)
    assert prov["sha256"] == sha256_file(SHIPPED)
    assert prov["fit"]["fit_seconds"] <= 3600
    assert prov["heldout"]["psnr_db"] >= 25 and prov["heldout"]["scorer_motion_auc"] >= 0.85
    assert prov["heldout"]["clips"] >= 256
    assert SHIPPED.stat().st_size < 8 * 2**20
    # A fresh check on clips of yet another seed, small enough for the unit tests.
    figures = evaluate(load_tokenizer(SHIPPED), heldout_clips(48, seed=6123, videos=4))
    assert figures["psnr_db"] >= 25 and figures["scorer_motion_auc"] >= 0.85
