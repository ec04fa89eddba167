"""`lvmae inspect` end to end: a tiny toy-world corpus extracted, a tiny LV-MAE trained on it, and its
held-out videos inspected through the CLI against the corpus's own truth."""

import json

import pytest

from lvmae import cli
from lvmae.pretrain.checkpoint import MODEL
from lvmae.pretrain.train import train
from lvmae.toyworld.generate import CorpusSpec, generate

from .conftest import extract_with, make_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_tokenizer):
    """(config sets, corpus, held-out video ids): 4 videos, half of them held out of a 20-step run."""
    root = tmp_path_factory.mktemp("inspect")
    corpus = generate(CorpusSpec(videos=4, minutes=(0.5, 1.0), seed=47), root / "corpus", workers=1, progress=False)
    cfg = make_config(
        root,
        tiny_tokenizer,
        **{
            "extract.runner": "local",
            "pretrain.preset": "tiny",
            "pretrain.steps": 20,
            "pretrain.max_segments": 16,
            "pretrain.min_segments": 8,
            "pretrain.val_fraction": 0.5,
            "pretrain.device": "cpu",
        },
    )
    extract_with(cfg, inputs=corpus.root / "videos.parquet", runner="local")
    train(cfg.pretrain, store_uri=str(cfg.paths.store), out_dir=root / "run")
    sets = [
        "--set",
        f"paths.store={cfg.paths.store}",
        "--set",
        f"paths.work_dir={root / 'work'}",
        "--set",
        f"encoder.pretrained={cfg.encoder.pretrained}",
        "--set",
        "encoder.device=cpu",
        "--set",
        "pretrain.device=cpu",
        "--set",
        f"retrieval.captions={corpus.root / 'captions.txt'}",
        "--checkpoint",
        str(root / "run" / MODEL),
    ]
    from lvmae.evaluation.reconstruction import held_out_videos
    from lvmae.pretrain.checkpoint import load_pretrained
    from lvmae.store import Store

    videos, _ = held_out_videos(load_pretrained(root / "run" / MODEL), Store.open(str(cfg.paths.store)))
    return sets, corpus, [v.video_id for v in videos]


def inspect(capsys, *argv):
    status = cli.main(["inspect", *argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_json_metrics_of_the_held_out_videos(trained, capsys):
    sets, corpus, held_out = trained
    status, out, err = inspect(capsys, *sets, "--json")
    assert status == 0, err
    metrics = json.loads(out)
    assert metrics["bank_size"] == len((corpus.root / "captions.txt").read_text().splitlines())
    assert metrics["chance_r5"] == pytest.approx(5 / metrics["bank_size"])
    assert metrics["truth"] == str(corpus.root / "truth.parquet")  # found beside the videos
    assert metrics["videos"] == len(held_out) == 2
    assert set(metrics["decoders"]) == {"trained", "all"}
    for decoder in metrics["decoders"].values():
        assert set(decoder["splits"]) == {"all", "boundary", "long_gap"}
        for split in decoder["splits"].values():
            assert set(split["methods"]) == {"reconstruction", "original", "copy_nearest", "interpolate", "video_mean"}
        everything = decoder["splits"]["all"]
        assert everything["segments"] > 0
        # The ceiling works: the stand-in encoder's own embeddings name their step.
        assert everything["methods"]["original"]["r1"] >= 0.9
    assert (
        metrics["decoders"]["all"]["splits"]["all"]["segments"]
        > metrics["decoders"]["trained"]["splits"]["all"]["segments"]
    )
    assert "lvmae inspect" in err  # the summary goes to stderr beside --json


def test_a_video_timeline_as_text_and_as_a_page(trained, capsys, tmp_path):
    sets, _, held_out = trained
    video = held_out[0]
    page = tmp_path / "page.html"
    status, out, err = inspect(capsys, video, *sets, "--decoder", "all", "--mask", "span", "--html", str(page))
    assert status == 0, err
    assert f"video {video}" in out and "copy" in out and "decoder all (all)" in out
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and f"Reconstruction timeline: {video}" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert html.count("<img class=thumb") > 0  # thumbnails decoded from the video itself


def test_bad_requests_are_clear_errors(trained, capsys, tmp_path):
    sets, _, held_out = trained
    status, _, err = inspect(capsys, "nosuch", *sets)
    assert status != 0 and "'nosuch'" in err and "Traceback" not in err
    from lvmae.store import Store

    seen = sorted(set(Store.open(sets[1].split("=", 1)[1]).videos()["video_id"].to_pylist()) - set(held_out))[0]
    status, _, err = inspect(capsys, seen, *sets)
    assert status != 0 and f"video {seen} is one checkpoint" in err and "trained on" in err
    status, _, err = inspect(capsys, *sets, "--captions", str(tmp_path / "none.txt"))
    assert status != 0 and "none.txt" in err
    status, _, err = inspect(capsys, *sets, "--ratio", "1.5")
    assert status != 0 and "--ratio 1.5" in err
