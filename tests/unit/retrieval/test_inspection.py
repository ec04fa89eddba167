"""Reconstruction inspection on a constructed store whose answers are known: every segment is a step's
caption vector plus a little noise, so each baseline's captions can be worked out by hand."""

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from lvmae.evaluation.inspection import (
    BASELINES,
    METHODS,
    baseline_vectors,
    inspect_reconstructions,
    long_gaps,
    run_lengths,
    step_starts,
    videos_by_id,
)
from lvmae.evaluation.truth import Truth
from lvmae.pretrain.checkpoint import Pretrained
from lvmae.pretrain.data import ok_videos
from lvmae.pretrain.model import LVMAE, ModelConfig
from lvmae.retrieval.captions import CaptionBank
from lvmae.retrieval.errors import NotTextAligned, RetrievalError
from lvmae.store import Store, StoreIdentity
from lvmae.timeline import write_page

D, C, WINDOW = 32, 8, 16
ENCODER = {"name": "toyclip", "pretrained": "toyclip.pt", "weights_sha256": "a" * 64}
STEPS = {  # video -> (caption index, segments) per step; a step of c3 twice in a row in "b"
    "a": [(0, 6), (1, 5), (2, 7), (3, 6)],
    "b": [(4, 9), (5, 3), (3, 2), (3, 6), (6, 10)],
}
TEXTS = [f"caption {i}" for i in range(C)]


def bank():
    return CaptionBank(TEXTS, np.eye(C, D, dtype=np.float32), dict(ENCODER), "captions.txt", "0" * 64)


def embeddings(video, rng):
    labels = np.concatenate([[c] * n for c, n in STEPS[video]])
    emb = np.eye(C, D, dtype=np.float32)[labels] + 0.05 * rng.standard_normal((len(labels), D)).astype(np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), labels


@pytest.fixture
def world(tmp_path):
    """(store, truth, labels per video): two videos, tiled into windows of 16 segments."""
    rng = np.random.default_rng(0)
    store = Store.create(
        tmp_path / "store", StoreIdentity(encoder=dict(ENCODER), tokenizer=None, segment={"seconds": 2.0})
    )
    labels, rows = {}, []
    with store.shard_writer("s0") as w:
        for video in STEPS:
            emb, labels[video] = embeddings(video, rng)
            n = len(emb)
            t0 = np.arange(n, dtype=np.float32) * 2
            w.add_video(
                video_id=video,
                uri=f"/nowhere/{video}.mp4",
                duration=2.0 * n,
                fps=8.0,
                emb=emb,
                importance=rng.permutation(n).astype(np.float32),  # distinct: the adaptive choice is unique
                span=np.stack([t0, t0 + 2], 1),
            )
            t = 0.0
            for c, k in STEPS[video]:
                rows.append({"video_id": video, "t_start": t, "t_end": t + 2.0 * k, "caption": TEXTS[c]})
                t += 2.0 * k
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "truth.parquet")
    return Store.open(tmp_path / "store"), Truth.load(tmp_path / "truth.parquet"), labels


def pretrained(dim_in=D):
    torch.manual_seed(0)
    cfg = ModelConfig(dim_in=dim_in, width=16, depth=1, heads=2, decoder_width=16, decoder_depth=1, decoder_heads=2)
    model = LVMAE(cfg).eval().requires_grad_(False)
    settings = {
        "mask_ratio": 0.5,
        "decoder_mask": "adaptive",
        "kappa": 0.25,
        "max_segments": WINDOW,
        "val_fraction": 0.0,
    }
    return Pretrained(model=model, name="model.pt", sha256="f" * 64, pretrain=settings)


def ranked(v):
    """Bank indices by cosine, best first (numpy, not FAISS): the hand computation's ranking."""
    v = v / np.linalg.norm(v)
    return np.argsort(-(np.eye(C, D) @ v), kind="stable")


def by_hand(store, inspection, labels, video, decoder):
    """{method: [(position, top-5)]} for the decoder's reconstructed segments of `video`, worked out from
    the track's hidden mask alone."""
    track = inspection.tracks[video]
    unit = store.sequence(video, arrays=("emb",)).get("emb").astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    importance = track.importance
    out = {m: {} for m in BASELINES}
    for start in range(0, len(unit), WINDOW):
        stop = min(start + WINDOW, len(unit))
        hid = track.hidden[start:stop]
        vis = np.flatnonzero(~hid) + start
        chosen = np.flatnonzero(hid) + start
        if decoder == "trained":  # adaptive, kappa 0.25: the most important quarter (at least one)
            k = max(1, int(np.round(0.25 * len(chosen))))
            chosen = np.sort(chosen[np.argsort(-importance[chosen], kind="stable")[:k]])
        for t in chosen:
            before, after = vis[vis < t], vis[vis > t]
            p = before[-1] if len(before) else None
            n = after[0] if len(after) else None
            near = p if n is None or (p is not None and t - p <= n - t) else n
            if p is not None and n is not None:
                w = (t - p) / (n - p)
                interp = (1 - w) * unit[p] + w * unit[n]
            else:
                interp = unit[p if p is not None else n]
            out["original"][t] = ranked(unit[t])[:5]
            out["copy_nearest"][t] = ranked(unit[near])[:5]
            out["interpolate"][t] = ranked(interp)[:5]
            out["video_mean"][t] = ranked(unit[vis].mean(0))[:5]
    return out


def test_baselines_by_hand_on_one_window():
    unit = torch.eye(4)[None, [0, 1, 2, 3, 0, 1]]  # (1, 6, 4)
    valid = torch.ones(1, 6, dtype=torch.bool)
    hidden = torch.tensor([[True, False, True, True, False, True]])
    index = torch.tensor([[0, 2, 3, 5]])
    got = baseline_vectors(unit, valid, hidden, index)
    e = torch.eye(4)
    assert torch.equal(got["original"][0], e[[0, 2, 3, 1]])
    assert torch.equal(got["copy_nearest"][0], e[[1, 1, 0, 0]])  # 2: tie between 1 and 4, the earlier wins
    expected = torch.stack([e[1], (2 / 3) * e[1] + (1 / 3) * e[0], (1 / 3) * e[1] + (2 / 3) * e[0], e[0]])
    assert torch.allclose(got["interpolate"][0], expected)  # one side only at the edges: that side
    assert torch.allclose(got["video_mean"][0], ((e[1] + e[0]) / 2).expand(4, -1))


def test_run_lengths_long_gaps_and_step_starts():
    hidden = np.array([1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1], bool)
    assert run_lengths(hidden).tolist() == [2, 2, 0, 5, 5, 5, 5, 5, 0, 4, 4, 4, 4]
    assert long_gaps(hidden).tolist() == [False] * 3 + [True] * 5 + [False] * 5  # 5 is long, 4 is not
    # A window's first segment never begins a step (what was before it is not in the window), nor does a
    # segment no step covers.
    assert step_starts(np.array([3, 3, 4, 4, -1, 5, 5])).tolist() == [False, False, True, False, False, True, False]


@pytest.mark.parametrize("mask", ["random", "span"])
def test_every_baseline_and_split_as_computed_by_hand(world, mask):
    store, truth, labels = world
    inspection = inspect_reconstructions(pretrained(), store, bank(), ok_videos(store), truth=truth, mask=mask)
    metrics = inspection.metrics()
    assert metrics["bank_size"] == C and metrics["chance_r1"] == 1 / C and metrics["chance_r5"] == 5 / C
    for decoder in ("trained", "all"):
        hits = {m: {s: [] for s in ("all", "boundary", "long_gap")} for m in BASELINES}
        seen = set()
        for video, steps in STEPS.items():
            track = inspection.tracks[video]
            step = np.concatenate([[i] * n for i, (_, n) in enumerate(steps)])
            for t in range(len(step)):  # the splits, by hand: a step's first segment inside its window
                assert track.boundary[t] == (t % WINDOW > 0 and step[t] != step[t - 1])
            hand = by_hand(store, inspection, labels, video, decoder)
            for m in BASELINES:
                for t, top in hand[m].items():
                    window = slice(t - t % WINDOW, min(t - t % WINDOW + WINDOW, len(step)))
                    runs = run_lengths(track.hidden[window])[t % WINDOW]
                    splits = ["all"] + ["boundary"] * bool(track.boundary[t]) + ["long_gap"] * bool(runs >= 5)
                    for s in splits:
                        hits[m][s].append((top[0] == labels[video][t], labels[video][t] in top[:5]))
                    seen.add((video, t))
        rows = inspection.decoders[decoder]
        assert set(zip(rows.video, rows.position)) == seen  # the same segments were reconstructed
        for m in BASELINES:
            for s, got in metrics["decoders"][decoder]["splits"].items():
                assert got["segments"] == len(hits[m][s])
                if hits[m][s]:
                    r1, r5 = np.mean(hits[m][s], axis=0)
                    assert got["methods"][m]["r1"] == pytest.approx(r1) and got["methods"][m]["r5"] == pytest.approx(r5)
                else:
                    assert got["methods"][m] == {"r1": None, "r5": None}
        assert metrics["decoders"][decoder]["splits"]["all"]["methods"]["original"]["r1"] == 1.0
    gaps = metrics["decoders"]["all"]["splits"]["long_gap"]["segments"]
    if mask == "span":  # runs of 5-20 hidden segments: most hidden segments are in long gaps
        assert gaps >= 0.5 * metrics["decoders"]["all"]["splits"]["all"]["segments"]


def test_the_reconstruction_is_the_decoder_output_ranked(world):
    store, truth, _ = world
    pre = pretrained()
    inspection = inspect_reconstructions(pre, store, bank(), ok_videos(store), truth=truth, decoders=("all",))
    track = inspection.tracks["a"]
    emb = torch.from_numpy(store.sequence("a", arrays=("emb",)).get("emb").astype(np.float32))[None, :WINDOW]
    hidden = torch.from_numpy(track.hidden[:WINDOW])[None]
    out = pre.model(emb, torch.ones_like(hidden), hidden, hidden)
    rows = inspection.timeline_rows("all", "a")
    for s, t in enumerate(out.index[0].tolist()):
        assert rows[t]["reconstruction"].tolist() == ranked(out.pred[0, s].numpy())[:5].tolist()


def test_without_truth_the_original_top1_is_the_label(world):
    store, truth, labels = world
    inspection = inspect_reconstructions(pretrained(), store, bank(), ok_videos(store), truth=None)
    metrics = inspection.metrics()
    assert metrics["truth"] == "original top-1"
    for video in STEPS:  # noise is small: the original's top-1 is the step's caption
        assert inspection.tracks[video].label.tolist() == labels[video].tolist()
    for decoder in metrics["decoders"].values():
        assert decoder["splits"]["all"]["methods"]["original"] == {"r1": 1.0, "r5": 1.0}
    # Without truth a step is a run of equal labels: b's two c3 steps are one, so one boundary fewer.
    with_truth = inspect_reconstructions(pretrained(), store, bank(), ok_videos(store), truth=truth)
    assert with_truth.tracks["b"].boundary.sum() == inspection.tracks["b"].boundary.sum() + 1


def test_same_masks_whichever_videos_are_inspected(world):
    store, truth, _ = world
    both = inspect_reconstructions(pretrained(), store, bank(), ok_videos(store), truth=truth)
    alone = inspect_reconstructions(
        pretrained(), store, bank(), videos_by_id(ok_videos(store), "b", store.uri), truth=truth
    )
    assert np.array_equal(both.tracks["b"].hidden, alone.tracks["b"].hidden) and list(alone.tracks) == ["b"]


def test_clear_errors(world, tmp_path):
    store, truth, _ = world
    videos = ok_videos(store)
    with pytest.raises(RetrievalError, match=r"16-wide.*32-wide"):
        inspect_reconstructions(pretrained(dim_in=16), store, bank(), videos, truth=truth)
    features = Store.create(
        tmp_path / "features",
        StoreIdentity(
            encoder={"name": "lvmae:model.pt", "weights_sha256": "f" * 64, "width": 16, "input_encoder": dict(ENCODER)},
            tokenizer=None,
            segment={"seconds": 2.0},
        ),
    )
    with pytest.raises(NotTextAligned, match="LV-MAE features"):
        inspect_reconstructions(pretrained(), features, bank(), videos, truth=truth)
    other = CaptionBank(
        TEXTS, np.eye(C, D, dtype=np.float32), {**ENCODER, "weights_sha256": "b" * 64}, "other.txt", "0" * 64
    )
    with pytest.raises(RetrievalError, match="other.txt"):
        inspect_reconstructions(pretrained(), store, other, videos, truth=truth)
    with pytest.raises(RetrievalError, match="'nosuch'"):
        videos_by_id(videos, "nosuch", store.uri)
    partial = Truth(truth.source, {"a": truth.videos["a"]})
    with pytest.raises(RetrievalError, match="no steps for video b"):
        inspect_reconstructions(pretrained(), store, bank(), videos, truth=partial)
    small = CaptionBank(TEXTS[:4], np.eye(4, D, dtype=np.float32), dict(ENCODER), "small.txt", "0" * 64)
    with pytest.raises(RetrievalError, match="not in caption bank small.txt"):
        inspect_reconstructions(pretrained(), store, small, videos, truth=truth)


def test_truth_file_errors_name_the_file(tmp_path):
    with pytest.raises(RetrievalError, match="no such file"):
        Truth.load(tmp_path / "none.parquet")
    pq.write_table(pa.table({"video_id": ["a"], "t_start": [0.0]}), tmp_path / "bad.parquet")
    with pytest.raises(RetrievalError, match=r"bad.parquet lacks column\(s\) t_end, caption"):
        Truth.load(tmp_path / "bad.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(RetrievalError, match="text.parquet is not a readable parquet"):
        Truth.load(tmp_path / "text.parquet")


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.sources, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.sources.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


def test_the_page_is_one_file_with_the_timeline(world, tmp_path):
    store, truth, _ = world
    inspection = inspect_reconstructions(pretrained(), store, bank(), ok_videos(store), truth=truth)
    path = write_page(inspection, "b", tmp_path / "page" / "b.html")
    parser = Page()
    parser.feed(path.read_text())
    assert "script" not in parser.tags and "link" not in parser.tags
    assert parser.sources and all(s.startswith("data:image/png;base64,") for s in parser.sources)
    for source in parser.sources:  # every picture is a real PNG inside the page
        Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).verify()
    text = " ".join(parser.text)
    assert "Reconstruction timeline: b" in text and "Hidden segments" in text
    hidden = int(inspection.tracks["b"].hidden.sum())
    assert parser.tags.count("tr") == 1 + hidden + 1 + 6  # hidden rows + header, metrics header + 6 rows
    assert "/nowhere/b.mp4" in text  # the missing video's reason stands where a thumbnail would
    for method in METHODS:
        assert method.replace("_", "-").replace("video-mean", "video mean") in text
    with pytest.raises(RetrievalError, match="'zz' was not inspected"):
        write_page(inspection, "zz", tmp_path / "zz.html")


def test_the_timeline_record_is_plain_data_the_page_is_drawn_from(world):
    import json

    from lvmae.timeline import page, timeline_record

    store, truth, labels = world
    inspection = inspect_reconstructions(pretrained(), store, bank(), ok_videos(store), truth=truth)
    record = timeline_record(inspection, "a")
    loaded = json.loads(json.dumps(record))  # what the demo saves, and the report reads back
    assert page(loaded) == page(record)
    segments = loaded["segments"]
    assert len(segments) == len(labels["a"]) and [s["truth"] for s in segments] == [TEXTS[c] for c in labels["a"]]
    assert [s["hidden"] for s in segments] == inspection.tracks["a"].hidden.tolist()
    rows = inspection.timeline_rows("all", "a")
    for t, s in enumerate(segments):
        assert ("all" in s["decoders"]) == (t in rows)  # every hidden segment under decoder all
        if t in rows:
            assert s["decoders"]["all"] == [TEXTS[i] for i in rows[t]["reconstruction"][:3]]
    with pytest.raises(RetrievalError, match="'zz' was not inspected"):
        timeline_record(inspection, "zz")
