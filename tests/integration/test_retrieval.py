"""Retrieval end to end: a tiny toy-world corpus extracted, indexed and searched through the CLI."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lvmae import cli
from lvmae.retrieval.sheet import PLACEHOLDER
from lvmae.toyworld.generate import CorpusSpec, generate

from .conftest import extract_with, make_config


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_tokenizer):
    """(config sets, corpus, index folder): 4 toy-world videos extracted into a store and indexed."""
    root = tmp_path_factory.mktemp("retrieval")
    corpus = generate(CorpusSpec(videos=4, minutes=(0.5, 1.0), seed=43), root / "corpus", workers=1, progress=False)
    cfg = make_config(root, tiny_tokenizer, **{"extract.runner": "local"})
    extract_with(cfg, inputs=corpus.root / "videos.parquet", runner="local")
    sets = [
        "--set",
        f"paths.store={cfg.paths.store}",
        "--set",
        f"encoder.pretrained={cfg.encoder.pretrained}",
        "--set",
        "encoder.device=cpu",
        "--set",
        f"retrieval.captions={corpus.root / 'captions.txt'}",
    ]
    assert cli.main(["index", "build", "--out", str(root / "index"), *sets]) == 0
    return sets, corpus, root / "index"


def search(capsys, *argv):
    status = cli.main(["search", *argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def truth_caption_at(truth, video_id, t):
    rows = truth[(truth.video_id == video_id) & (truth.t_start <= t) & (t < truth.t_end)]
    return rows.caption.iloc[0] if len(rows) else None


def test_a_caption_finds_its_step_first(indexed, capsys):
    sets, corpus, index = indexed
    truth = pq.read_table(corpus.root / "truth.parquet").to_pandas()
    longest = truth.assign(length=truth.t_end - truth.t_start).sort_values("length").iloc[-1]
    status, out, _ = search(capsys, longest.caption, "--index", str(index), "--json", "-k", "3", *sets)
    assert status == 0
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["rank"] for r in results] == [1, 2, 3] and results[0]["query"] == longest.caption
    top = results[0]
    assert truth_caption_at(truth, top["video_id"], sum(top["best"]) / 2) == longest.caption
    assert top["start"] <= top["best"][0] < top["best"][1] <= top["end"] and top["uri"].endswith(".mp4")
    assert top["caption"] == longest.caption  # the caption bank names what the best segment shows
    # the table: one line per moment under a heading
    status, out, _ = search(capsys, longest.caption, "--index", str(index), "-k", "2", *sets)
    assert status == 0 and f'"{longest.caption}": 2 moments' in out and "start–end" in out


def test_queries_from_a_file_and_a_contact_sheet_with_a_missing_video(indexed, capsys, tmp_path):
    sets, corpus, index = indexed
    truth = pq.read_table(corpus.root / "truth.parquet").to_pandas()
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(sorted(set(truth.caption))[:2]) + "\n")
    status, out, _ = search(capsys, "--queries", str(queries), "--index", str(index), "--json", "-k", "2", *sets)
    assert status == 0 and len({json.loads(line)["query"] for line in out.splitlines()}) == 2
    # a video that is gone gets a placeholder tile, not an exception
    first = json.loads(out.splitlines()[0])
    moved = tmp_path / "moved.mp4"
    shutil.move(first["uri"], moved)
    try:
        sheet = tmp_path / "sheet.png"
        status, out, _ = search(capsys, first["query"], "--index", str(index), "-k", "1", "--sheet", str(sheet), *sets)
    finally:
        shutil.move(moved, first["uri"])
    assert status == 0 and f"contact sheet: {sheet}" in out
    pixels = np.asarray(Image.open(sheet).convert("RGB")).reshape(-1, 3)
    assert (pixels == PLACEHOLDER).all(axis=1).sum() > 1000  # grey placeholder tiles


def test_bad_requests_are_clear_errors(indexed, capsys, tmp_path):
    sets, _, index = indexed
    status, _, err = search(capsys, "  ", "--index", str(index), *sets)
    assert status == 1 and "empty query" in err
    status, _, err = search(capsys, "a red circle", "-k", "0", "--index", str(index), *sets)
    assert status == 2 and "-k 0" in err
    status, _, err = search(capsys, "--index", str(index), *sets)
    assert status == 2 and "nothing to search for" in err
    (tmp_path / "notes").mkdir()
    status, _, err = search(capsys, "a red circle", "--index", str(tmp_path / "notes"), *sets)
    assert status == 1 and "is not an lvmae index" in err
    status, _, err = search(capsys, "--like", "nosuchvideo@3", "--index", str(index), *sets)
    assert status == 1 and "no video 'nosuchvideo'" in err


def test_index_info_and_incremental_when_nothing_changed(indexed, capsys):
    sets, _, index = indexed
    assert cli.main(["index", "info", str(index)]) == 0
    out = capsys.readouterr().out
    assert "flat (Flat)" in out and "up to date" in out
    assert cli.main(["index", "build", "--out", str(index), "--incremental", *sets]) == 0
    assert "up to date" in capsys.readouterr().out
