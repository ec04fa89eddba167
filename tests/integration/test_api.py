"""The Python API end to end in one process, as a user's script calls it: extract -> open the store ->
pretrain -> features -> index -> text search -> evaluate -> inspect -> probe -> report -> web app, with
no subprocess and no argparse (both are made to fail if anything reaches them)."""

import argparse
import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

import lvmae
from lvmae.toyworld.encoder import SHIPPED_WEIGHTS
from lvmae.toyworld.generate import CorpusSpec, generate


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # 3 videos a procedure class: the probe's hash splits then have a train, a val and a test video a class.
    root = tmp_path_factory.mktemp("api-corpus")
    return generate(CorpusSpec(videos=36, minutes=(0.2, 0.3), seed=57), root, workers=1, progress=False)


def forbidden(what):
    def refuse(*args, **kwargs):
        raise AssertionError(f"the Python API reached {what}")

    return refuse


def test_every_stage_through_the_python_api(tmp_path, corpus, tiny_tokenizer, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pipeline.yaml here: the built-in defaults and these overrides
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", forbidden("argparse"))
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", forbidden("argparse"))
    monkeypatch.setattr(subprocess.Popen, "__init__", forbidden("a subprocess"))

    cfg = lvmae.load_config(
        None,
        [
            f"encoder.pretrained={SHIPPED_WEIGHTS}",
            "encoder.device=cpu",
            f"tokenizer.checkpoint={tiny_tokenizer}",
            "tokenizer.device=cpu",
            f"paths.store={tmp_path / 'store'}",
            f"paths.work_dir={tmp_path / 'runs'}",
            "extract.runner=local",
            "pretrain.preset=tiny",
            "pretrain.steps=20",
            "pretrain.max_segments=32",
            "pretrain.min_segments=8",
            "pretrain.device=cpu",
            "pretrain.val_interval=0",
            f"pretrain.checkpoint_dir={tmp_path / 'run'}",
            f"retrieval.index_dir={tmp_path / 'index'}",
            f"retrieval.captions={corpus.root / 'captions.txt'}",
        ],
    )

    report = lvmae.extract_videos(cfg, corpus.root / "videos.parquet")
    assert (report.videos_ok, report.videos_failed) == (36, 0)

    store = lvmae.open_store(cfg.paths.store)
    video_id = store.videos(status="ok")["video_id"][0].as_py()
    sequence = store.sequence(video_id)
    assert sequence.emb.shape[0] > 1

    run = lvmae.train(cfg)
    assert run.steps == 20 and (run.out_dir / "model.pt").is_file()
    model = lvmae.load_model(run.out_dir / "model.pt")
    feats = lvmae.features(model, sequence)
    assert feats.shape == (sequence.emb.shape[0], model.model.cfg.width) and np.isfinite(feats).all()
    # Chunked to the model's context, the same function on the raw array gives the same features.
    np.testing.assert_allclose(lvmae.features(model, sequence.emb.astype(np.float32)), feats, atol=1e-5)

    index = lvmae.build_index(cfg)
    assert len(index) == sum(store.videos(status="ok")["n_segments"].to_pylist())
    assert lvmae.open_index(cfg.retrieval.index_dir).header["vectors"] == len(index)
    assert lvmae.update_index(cfg)[1] == []  # nothing new since the build

    truth = pq.read_table(corpus.root / "truth.parquet").to_pylist()
    step = max(truth, key=lambda row: row["t_end"] - row["t_start"])
    hits = lvmae.search(cfg, step["caption"], k=5)
    assert hits and all(h.query == step["caption"] for h in hits)
    # The shipped stand-in encoder knows the toy world: the best moment shows the caption searched for.
    assert hits[0].caption == step["caption"]
    like = lvmae.search_like(cfg, hits[0].moment.video_id, hits[0].moment.start, k=3)
    assert like and all(
        (h.moment.video_id, h.moment.start) != (hits[0].moment.video_id, hits[0].moment.start) for h in like
    )

    mse = lvmae.evaluate(cfg)
    assert mse.split == "val" and mse.reconstructed_segments > 0 and np.isfinite(mse.model_mse)

    inspection, which = lvmae.inspect(cfg, progress=False)
    metrics = inspection.metrics()
    assert "held out" in which and set(metrics["decoders"]) == {"trained", "all"}
    row = metrics["decoders"]["all"]["splits"]["all"]
    assert row["segments"] > 0 and 0 <= row["methods"]["original"]["r5"] <= 1

    table, notes = lvmae.probe(cfg, "label", seeds=1, progress=False)
    rows = table.to_json()["rows"]
    assert {r["features"] for r in rows} == {"raw", "lvmae-init", "lvmae"}
    assert notes and "trained on this store" in notes[0]  # the default checkpoint: the run just made

    (tmp_path / "inspect.json").write_text(json.dumps(metrics))
    (tmp_path / "probe.json").write_text(json.dumps(table.to_json()))
    artifacts = lvmae.Artifacts(
        store=str(cfg.paths.store),
        pretrain=run.out_dir,
        inspect=tmp_path / "inspect.json",
        probe=tmp_path / "probe.json",
        index=cfg.retrieval.index_dir,
    )
    page, sections = lvmae.write_report(artifacts, tmp_path / "report.html", title="api")
    assert page.is_file() and {"Store", "Pretraining", "Reconstruction inspection", "Probes"} <= set(sections)

    from fastapi.testclient import TestClient

    with TestClient(lvmae.create_app(cfg, checkpoint=run.out_dir / "model.pt"), base_url="http://localhost") as client:
        answer = client.get("/api/search", params={"q": step["caption"], "k": 3}).json()
        assert answer["moments"][0]["video_id"] == hits[0].moment.video_id


def test_the_api_raises_lvmae_errors_and_never_exits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = lvmae.load_config(None, [f"paths.store={tmp_path / 'nothing'}"])
    with pytest.raises(lvmae.LvmaeError, match="nothing"):
        lvmae.open_store(cfg.paths.store)
    with pytest.raises(lvmae.LvmaeError, match="ratio"):
        lvmae.evaluate(cfg, ratio=1.5)
    with pytest.raises(lvmae.LvmaeError, match="extract.inputs"):
        lvmae.extract_videos(cfg)
    with pytest.raises(lvmae.LvmaeError, match="pretrain.nosuch"):
        lvmae.load_config(None, ["pretrain.nosuch=1"])


def test_import_lvmae_loads_the_api_only_when_asked(tmp_path):
    """`import lvmae` is the door: the entry points come on first use (what keeps `lvmae --help` fast)."""
    code = (
        "import sys, lvmae\n"
        "before = 'lvmae.api' in sys.modules or 'torch' in sys.modules\n"
        "lvmae.load_config\n"
        "print(before, 'lvmae.api' in sys.modules, sorted(set(lvmae.api.__all__) - set(dir(lvmae))))"
    )
    import sys

    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "False True []"
