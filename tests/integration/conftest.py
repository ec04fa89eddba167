"""Fixtures for end-to-end runs: a tiny toy-world corpus, edge-case videos, a small tokenizer, a tiny
demo run, and a real headless browser (Debian's chromium through playwright)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lvmae import cli
from lvmae.extract.runner import Models, run_extract
from lvmae.extract.tokenizer.fit import save_tokenizer
from lvmae.extract.tokenizer.model import TokenizerArch, VideoTokenizer
from lvmae.foundation.schema import load_config
from lvmae.store import Store
from lvmae.toyworld.encoder import SHIPPED_WEIGHTS
from lvmae.toyworld.generate import CorpusSpec, generate
from tests.videos import write_frames

TINY_TOKENIZER = TokenizerArch(channels=(8, 16, 16), scorer_channels=8, groups=4)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REBOUND = "rebound.example"  # a name the browser fixture resolves to 127.0.0.1
# Screenshots the browser tests take, kept for whoever looks at a run (CI can upload the folder).
ARTIFACTS = Path(
    os.environ.get("LVMAE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "runs" / "test-artifacts")
)


@pytest.fixture(scope="module")
def browser():
    """Headless chromium, Debian's package (no browser is downloaded); the tests using it skip without it."""
    if CHROMIUM is None:
        pytest.skip("NO BROWSER: Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # REBOUND resolves to this machine, as a name an attacker rebinds would (the DNS-rebinding tests)
        launched = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """An untrained small tokenizer: extraction tests check plumbing, not token quality."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tokenizer") / "tok.pt"
    save_tokenizer(VideoTokenizer(TINY_TOKENIZER), path, {"note": "untrained, for tests"})
    return path


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return generate(CorpusSpec(videos=4, minutes=(0.2, 0.5), seed=41), root, workers=1, progress=False)


def make_config(tmp_path, tokenizer, **overrides):
    sets = [
        f"encoder.pretrained={SHIPPED_WEIGHTS}",
        f"tokenizer.checkpoint={tokenizer}",
        f"paths.store={tmp_path / 'store'}",
        "extract.shard_videos=2",
        "encoder.device=cpu",
        "tokenizer.device=cpu",
        "ray.num_cpus=2",
    ]
    sets += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(None, sets, use_default_file=False)


def extract_with(cfg, **kwargs):
    """`run_extract` on the config's sections, into `paths.store` unless `store_uri` says otherwise."""
    kwargs.setdefault("store_uri", str(cfg.paths.store))
    return run_extract(cfg.extract, Models.of(cfg), cfg.ray, **kwargs)


def store_contents(uri):
    store = Store.open(uri)
    rows = sorted(store.videos().to_pylist(), key=lambda r: r["video_id"])
    arrays = {}
    for r in rows:
        if r["status"] == "ok":
            seq = store.sequence(r["video_id"])
            arrays[r["video_id"]] = (seq.emb, seq.codes, seq.importance, seq.span)
    return rows, arrays


def assert_same_store(a, b, atol=2e-3):
    rows_a, arr_a = a
    rows_b, arr_b = b
    key = ("video_id", "uri", "status", "n_segments", "shard_id", "row_start")
    assert [tuple(r[k] for k in key) for r in rows_a] == [tuple(r[k] for k in key) for r in rows_b]
    for vid in arr_a:
        emb_a, codes_a, imp_a, span_a = arr_a[vid]
        emb_b, codes_b, imp_b, span_b = arr_b[vid]
        np.testing.assert_allclose(emb_a.astype(float), emb_b.astype(float), atol=atol)
        assert (codes_a == codes_b).mean() > 0.99
        np.testing.assert_allclose(imp_a, imp_b, atol=atol)
        np.testing.assert_array_equal(span_a, span_b)


def write_video(path, n_frames, *, size=(64, 64), fps=8, rotation=None, pts_ms=None, seed=0):
    """n_frames flat frames of random colours."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 255, (n_frames, 1, 1, 3)).astype(np.uint8)
    write_frames(path, np.broadcast_to(colours, (n_frames, *size, 3)).copy(), fps=fps, rotation=rotation, pts_ms=pts_ms)
    return path


@pytest.fixture(scope="session")
def demo_overrides(tiny_tokenizer):
    """The --set KEY=VALUE overrides of the tiny demo (`demo`)."""
    sets = {
        "encoder.pretrained": SHIPPED_WEIGHTS,
        "encoder.device": "cpu",
        "tokenizer.checkpoint": tiny_tokenizer,
        "tokenizer.device": "cpu",
        "toyworld.videos": 4,
        "toyworld.minutes": "[0.3, 0.6]",
        "toyworld.fit.eval_frames": 48,
        "extract.runner": "local",
        "pretrain.preset": "tiny",
        "pretrain.max_segments": 32,
        "pretrain.min_segments": 8,
        "pretrain.device": "cpu",
        "pretrain.val_interval": 0,
        "demo.pretrain_steps": 20,
        "demo.heldout_videos": 36,  # 3 of each class: one train, one val, one test video a class
        "demo.heldout_minutes": "[0.2, 0.3]",
    }
    return [f"{key}={value}" for key, value in sets.items()]


@pytest.fixture(scope="session")
def demo(tmp_path_factory, demo_overrides):
    """A tiny `lvmae demo` (tiny preset, few short videos): every stage's outputs, for the report and serve tests."""
    out = tmp_path_factory.mktemp("demo") / "out"
    argv = ["demo", "--out", str(out)]
    for override in demo_overrides:
        argv += ["--set", override]
    assert cli.main(argv) == 0
    return out
