"""Fixtures for end-to-end runs: a tiny toy-world corpus, edge-case videos, a small tokenizer."""

import numpy as np
import pytest
import torch

from extract.runner import run_extract
from extract.tokenizer.fit import save_tokenizer
from extract.tokenizer.model import TokenizerArch, VideoTokenizer
from foundation.schema import load_config
from lvmae.commands.extract import models_of
from tests.videos import write_frames
from toyworld.encoder import SHIPPED_WEIGHTS
from toyworld.generate import CorpusSpec, generate

TINY_TOKENIZER = TokenizerArch(channels=(8, 16, 16), scorer_channels=8, groups=4)


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
    return run_extract(cfg.extract, models_of(cfg), cfg.ray, **kwargs)


def write_video(path, n_frames, *, size=(64, 64), fps=8, rotation=None, pts_ms=None, seed=0):
    """n_frames flat frames of random colours."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 255, (n_frames, 1, 1, 3)).astype(np.uint8)
    write_frames(path, np.broadcast_to(colours, (n_frames, *size, 3)).copy(), fps=fps, rotation=rotation, pts_ms=pts_ms)
    return path
