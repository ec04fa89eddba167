"""Retrieval benchmark: FAISS index kinds against numpy brute force, a whole text query, toy-world precision.

    python -m bench.retrieval [--quick] [--out FILE] [--n N]

Vectors (1M × 512; 100k with --quick): `normalize(A z + 0.3 n)`, `z ~ N(0, I_32)`, `A` a fixed 512 × 32
matrix of N(0, 1) entries, `n ~ N(0, I_512)`: an intrinsic dimension of about 32, like real CLIP
embeddings (i.i.d. clusters make every neighbour a near-tie and recall meaningless). Queries are
drawn the same way, never taken from the base.

- `flat_equals_numpy`: at 100k × 512, Flat's top-10 ids equal numpy's (ties within 1e-6 aside) and
  its scores are within 1e-5.
- `numpy_qps` and `by_kind` ({kind: {qps_1, qps_64, recall_at_10, build_s, bytes}}): side by side in
  this process, single queries and batches of 64; recall@10 against numpy's exact top 10; build
  seconds through `SegmentIndex.from_batches` (the store path's streaming builder); bytes of the
  written FAISS file.
- `auto_kind_1m`, `auto_speedup_vs_numpy` (single-query rate over numpy's), `auto_recall_at_10`: what
  `retrieval.index = auto` picks at this size with the default memory budget.
- `text_query_ms_1m`: median wall time of one whole text query through `Searcher.text` (encode with a
  512-wide open_clip text tower, ViT-B-32's architecture with random weights since nothing is
  downloaded; search the auto index; merge into moments; caption each from a 240-caption bank), warm.
- `toyworld_precision_at_10`: a toy-world corpus of another seed than the demo's (48 videos of 1–8 min;
  8 of 0.5–2 with --quick) extracted with the shipped stand-in encoder and indexed; every caption of the
  bank that occurs in it is a query; precision of the top min(10, n) moments, n the number of truth
  steps with that caption, averaged over captions; a moment is right when the truth step under its
  best segment has the caption. `toyworld_segment_precision_at_10` is the same measure over plain
  segment hits (no merging), the baseline, from the same index in the same run. `toyworld_moment_iou`:
  the mean overlap (intersection over union, in time) of those moments with the truth step under
  their best segment: whether a moment is the step, not just a piece of it.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench._common import emit, machine, parse_args, toy_index
from lvmae.foundation.schema import RetrievalConfig
from lvmae.retrieval import kinds
from lvmae.retrieval.captions import query_precision
from lvmae.retrieval.index import SegmentIndex, normalized

D, INTRINSIC, NOISE = 512, 32, 0.3
K = 10
SEGMENTS_PER_VIDEO = 1000  # the synthetic id map: videos of 1,000 segments of 2 s


def draw(n: int, seed: int, basis: np.ndarray) -> np.ndarray:
    """(n, D) float32 unit vectors of intrinsic dimension INTRINSIC, drawn in blocks to bound memory."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, D), np.float32)
    for a in range(0, n, 65536):
        b = min(a + 65536, n)
        x = rng.standard_normal((b - a, INTRINSIC), np.float32) @ basis.T + NOISE * rng.standard_normal(
            (b - a, D), np.float32
        )
        out[a:b] = normalized(x)
    return out


@dataclass
class Batch:
    emb: np.ndarray
    video_id: np.ndarray
    row: np.ndarray
    span: np.ndarray


def batches_of(base: np.ndarray, size: int = 65536):
    """A pass over `base` as store-like batches: video i holds positions [1000 i, 1000 (i + 1))."""

    def make():
        for a in range(0, len(base), size):
            pos = np.arange(a, min(a + size, len(base)))
            t0 = (pos % SEGMENTS_PER_VIDEO).astype(np.float32) * 2
            yield Batch(
                base[a : a + size],
                np.char.add("v", (pos // SEGMENTS_PER_VIDEO).astype(str)),
                pos % SEGMENTS_PER_VIDEO,
                np.stack([t0, t0 + 2], 1),
            )

    return make


def numpy_top(base: np.ndarray, q: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product: (m, k) scores and ids, best first (in blocks of 256 queries)."""
    scores, ids = [], []
    for a in range(0, len(q), 256):
        s = q[a : a + 256] @ base.T  # (m, n)
        top = np.argpartition(-s, k, axis=1)[:, :k]
        ts = np.take_along_axis(s, top, 1)
        order = np.argsort(-ts, axis=1)
        ids.append(np.take_along_axis(top, order, 1))
        scores.append(np.take_along_axis(ts, order, 1))
    return np.concatenate(scores), np.concatenate(ids)


def rate(fn, items: list, min_seconds: float = 1.0) -> float:
    """Items per second over `items` (each passed to fn), repeated until `min_seconds` have passed."""
    fn(items[0])  # warm
    done, started = 0, time.perf_counter()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return done / elapsed


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def flat_equals_numpy(basis: np.ndarray, cfg: RetrievalConfig) -> bool:
    base, q = draw(100_000, 1, basis), draw(100, 2, basis)
    index = SegmentIndex.from_batches(batches_of(base), len(base), D, cfg, kind="flat", progress=False)
    scores, ids = index.search(q, K)
    want_scores, want_ids = numpy_top(base, q)
    close = bool(np.abs(scores - want_scores).max() <= 1e-5)
    same = (ids == want_ids) | (np.abs(scores - want_scores) <= 1e-6)  # an exchanged tie is still exact
    print(
        f"flat vs numpy at 100k: ids equal {same.mean():.4f}, max score diff {np.abs(scores - want_scores).max():.2e}"
    )
    return close and bool(same.all())


def measure_kinds(n: int, basis: np.ndarray, cfg: RetrievalConfig, tmp: Path) -> tuple[dict, float, SegmentIndex, str]:
    base = draw(n, 3, basis)
    q = draw(500, 4, basis)
    single = [q[i : i + 1] for i in range(100)]
    batched = [q[i : i + 64] for i in range(0, 448, 64)]
    started = time.perf_counter()
    _, exact = numpy_top(base, q)
    print(f"numpy exact top-10 of {len(q)} queries over {n:,} × {D}: {time.perf_counter() - started:.1f} s", flush=True)
    numpy_qps = rate(lambda x: numpy_top(base, x), single[:20], min_seconds=3.0)
    print(f"numpy brute force: {numpy_qps:.1f} single queries/s", flush=True)
    auto = kinds.choose(n, D, cfg.max_index_bytes, hnsw_m=cfg.hnsw_m).kind
    by_kind, kept = {}, None
    for kind in kinds.KINDS:
        index = SegmentIndex.from_batches(batches_of(base), n, D, cfg, kind=kind, progress=False)
        index.configure(cfg)
        build_s = index.header["build_seconds"]
        index.save(tmp / kind)
        found = index.search(q, K)[1]
        few = single[:20] if kind == "flat" else single
        row = {
            "qps_1": round(rate(lambda x, s=index.search: s(x, K), few), 1),
            "qps_64": round(
                64 * rate(lambda x, s=index.search: s(x, K), batched[:2] if kind == "flat" else batched), 1
            ),
            "recall_at_10": round(recall(found, exact), 4),
            "build_s": round(build_s, 1),
            "bytes": int(index.header["bytes"]),
        }
        by_kind[kind] = row
        print(f"{kind:>6}: {row} ({index.header['factory']})", flush=True)
        if kind == auto:
            kept = index
    assert kept is not None
    return by_kind, numpy_qps, kept, auto


def text_query_ms(index: SegmentIndex, cfg: RetrievalConfig, precision: str) -> float:
    """Median ms of one whole text query through the search API over `index` (D = 512), the query
    tower's weights in `precision`."""
    import torch

    from lvmae.extract.encoder import ImageTextEncoder
    from lvmae.retrieval.captions import CaptionBank
    from lvmae.retrieval.search import Searcher
    from lvmae.toyworld.world import caption_bank

    torch.manual_seed(0)  # 512-wide ViT-B-32 text tower, random weights: nothing is downloaded
    tower = ImageTextEncoder("ViT-B-32", None, device="cpu", precision=precision, cast_weights=True)
    texts = caption_bank()
    vectors = tower.encode_text(texts)
    bank = CaptionBank(texts, vectors, tower.identity.to_dict(), "toyworld caption bank", "-")
    searcher = Searcher(index, cfg, text_tower=lambda: tower, bank=bank)
    for q in texts[:5]:
        searcher.text([q])  # warm
    times = []
    for q in texts[5:65]:
        started = time.perf_counter()
        searcher.text([q])
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def toyworld_precision(quick: bool, tmp: Path) -> dict:
    """Capped precision of moments and of plain segments for every caption occurring in a fresh corpus."""
    import pyarrow.parquet as pq

    from lvmae.retrieval.search import Searcher, open_searcher
    from lvmae.toyworld.generate import CorpusSpec

    spec = (
        CorpusSpec(videos=8, minutes=(0.5, 2.0), seed=7) if quick else CorpusSpec(videos=48, minutes=(1.0, 8.0), seed=7)
    )
    started = time.perf_counter()
    corpus, cfg = toy_index(spec, tmp)
    searcher: Searcher = open_searcher(tmp / "index", cfg.retrieval, cfg.encoder, captions=corpus.root / "captions.txt")
    index = searcher.index
    print(
        f"toy world: {spec.videos} videos, {len(index):,} segments extracted and indexed in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    truth = pq.read_table(corpus.root / "truth.parquet").to_pandas()
    steps = {v: g.sort_values("t_start") for v, g in truth.groupby("video_id")}

    def step_at(video_id: str, t: float):
        """(caption, start, end) of the truth step on screen at t, or None."""
        g = steps[video_id]
        i = int(np.searchsorted(g.t_start.values, t, side="right")) - 1
        return (
            (g.caption.values[i], g.t_start.values[i], g.t_end.values[i]) if i >= 0 and t < g.t_end.values[i] else None
        )

    def caption_at(video_id: str, t: float):
        step = step_at(video_id, t)
        return step[0] if step else None

    def iou(moment) -> float:
        step = step_at(moment.video_id, sum(moment.best) / 2)
        if step is None:
            return 0.0
        inter = max(0.0, min(step[2], moment.end) - max(step[1], moment.start))
        return inter / (max(step[2], moment.end) - min(step[1], moment.start))

    counts = truth.caption.value_counts()
    captions = [c for c in searcher.bank.texts if c in counts.index]
    answers = searcher.text(captions, k=K)
    tower_vectors = searcher.tower.encode_text(captions)
    seg_scores, seg_pos = index.search(tower_vectors, K)
    moment_p, segment_p, ious = [], [], []
    for i, (caption, results) in enumerate(zip(captions, answers)):
        top = min(K, int(counts[caption]))
        moment_p.append(
            sum(caption_at(r.moment.video_id, sum(r.moment.best) / 2) == caption for r in results[:top]) / top
        )
        ious += [iou(r.moment) for r in results[:top]]
        ids = index.ids
        hits = [
            caption_at(ids.videos[ids.video[p]], float(ids.t_start[p] + ids.t_end[p]) / 2) == caption
            for p in seg_pos[i, :top]
        ]
        segment_p.append(sum(hits) / top)
    return {
        "toyworld_precision_at_10": round(float(np.mean(moment_p)), 4),
        "toyworld_segment_precision_at_10": round(float(np.mean(segment_p)), 4),
        "toyworld_moment_iou": round(float(np.mean(ious)), 4),
        "toyworld_captions": len(captions),
        "toyworld_videos": spec.videos,
        "toyworld_segments": len(index),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(
        __doc__.split("\n\n")[0],
        argv,
        extra=lambda p: p.add_argument("--n", type=int, help="base vectors (default 1,000,000; 100,000 with --quick)"),
    )
    n = args.n or (100_000 if args.quick else 1_000_000)
    cfg = RetrievalConfig()
    basis = np.random.default_rng(0).standard_normal((D, INTRINSIC)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        exact = flat_equals_numpy(basis, cfg)
        by_kind, numpy_qps, auto_index, auto = measure_kinds(n, basis, replace(cfg), Path(tmp))
        precision = query_precision(cfg.text_precision, "cpu")
        text_ms = text_query_ms(auto_index, cfg, precision)
        text_fp32_ms = text_ms if precision == "fp32" else text_query_ms(auto_index, cfg, "fp32")
        print(
            f"whole text query over {n:,} ({auto}): {text_ms:.1f} ms median ({precision} tower), {text_fp32_ms:.1f} ms fp32"
        )
        del auto_index
        toy = toyworld_precision(args.quick, Path(tmp))
    result = {
        "flat_equals_numpy": exact,
        "numpy_qps": round(numpy_qps, 1),
        "by_kind": by_kind,
        "auto_kind_1m": auto,
        "auto_speedup_vs_numpy": round(by_kind[auto]["qps_1"] / numpy_qps, 1),
        "auto_recall_at_10": by_kind[auto]["recall_at_10"],
        "text_query_ms_1m": round(text_ms, 2),
        "text_query_precision": precision,
        "text_query_ms_1m_fp32": round(text_fp32_ms, 2),
        **toy,
        "n": n,
        "d": D,
        "quick": args.quick,
        **machine(),
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
