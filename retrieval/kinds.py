"""Which FAISS index to build: the kinds, their factory strings and sizes, and the `auto` rule.

Pure arithmetic, no FAISS import: `n` vectors of width `D`, sizes in bytes.

Every kind scores by inner product on L2-normalised float32 vectors, which is cosine similarity:

- `flat`: exact search, 4·n·D bytes; a query scans every vector.
- `hnsw`: an HNSW graph over the full vectors (`HNSW{M},Flat`), 4·n·(D + 2·M) bytes (autofaiss's
  estimate: the vectors plus 2·M neighbour ids of 4 bytes each on the base layer).
- `ivfpq`: an inverted file of product-quantized codes with a refine stage
  (`IVF{L},PQ{m}x4fs,Refine(SQ8)`): `nprobe` lists are scanned on m 4-bit codes with FAISS's fast-scan
  kernels, then `refine_factor`·k candidates are re-ranked on 8-bit scalar-quantized copies of the
  vectors; n·(m/2 + 8 + D) bytes plus the centroids. The quantizers are trained on a sample. (8-bit PQ
  codes were tried here first: at 100k × 512 their training took 58 s against 1.8 s for 4-bit fast-scan,
  and recall@10 was lower at the same nprobe and refine, 0.947 against 0.956.)

`auto` follows autofaiss: Flat while exact search stays fast enough (`FLAT_MAX_SCAN` floats scanned a
query) and fits; HNSW while its bytes fit `retrieval.max_index_memory` and its build stays short
(`HNSW_MAX_SCAN`); IVF-PQ beyond. The README gives the figures on this machine that set both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lvmae.foundation.progress import human_bytes
from lvmae.retrieval.errors import RetrievalError

KINDS = ("flat", "hnsw", "ivfpq")

FLAT_MAX_SCAN = 1 << 25
"""n·D at most for `auto` to choose Flat: 33.5 M floats (65,536 × 512, 262,144 × 128), which a single
exact query scans in about 10 ms on 2 CPU cores here (Flat answers about 100 single queries/s at
65k × 512). Past that, an approximate index answers far faster at recall@10 above 0.95."""

HNSW_MAX_SCAN = 1 << 27
"""n·D at most for `auto` to choose HNSW: 134 M floats (262,144 × 512, 1M × 128). Building HNSW32 costs
about n·log(n)·D: here it took 19 s at 100k × 512 (recall@10 0.993) but 340–410 s at 1M × 512, where
it reached only 0.933 at efSearch 128 and 56–67× numpy's single-query rate, while IVF-PQ fast-scan
built in under 20 s and reached 0.959 at 107–118× (bench.retrieval)."""

PQ_TRAIN_MIN = 39 * 16 * 2
"""Vectors for an IVF-PQ index to train on: 39 points for each of the 16 centroids of a 4-bit
sub-quantizer, and of the (at least 16) inverted lists, with room to spare."""


class IndexKindError(RetrievalError):
    """No index kind can be built as asked (too few vectors to train, or none fits the memory budget)."""


@dataclass(frozen=True)
class IndexSpec:
    """What to build: a kind, its FAISS factory string and the parameters it was built and is searched with."""

    kind: str
    factory: str
    params: dict
    reason: str  # why this kind (auto's rule, or "asked for")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "factory": self.factory, "params": self.params, "reason": self.reason}


def flat_bytes(n: int, d: int) -> int:
    return 4 * n * d


def hnsw_bytes(n: int, d: int, m: int) -> int:
    return 4 * n * (d + 2 * m)


def ivf_lists(n: int) -> int:
    """Inverted lists for n vectors: the power of two nearest √n (1,024 at 1M), at least 16, and few
    enough that each list trains on 39 points of a sample of at most n. FAISS suggests 4·√n to 16·√n
    for large n; √n keeps k-means training (its cost grows with lists × sample, and the sample with
    lists) to seconds on a few cores, and `nprobe` buys back the recall."""
    lists = 2 ** round(math.log2(max(math.sqrt(max(n, 1)), 16)))
    return int(max(16, min(lists, 65536, 2 ** int(math.log2(max(n // 39, 16))))))


def pq_subquantizers(d: int) -> int:
    """PQ sub-quantizers m: one per 8 dimensions (64 for D = 512), even (fast-scan packs codes in
    pairs) and dividing D."""
    m = max(2, d // 8)
    while d % m or m % 2:
        m -= 1
    return max(m, 2)


def ivfpq_bytes(n: int, d: int) -> int:
    m, lists = pq_subquantizers(d), ivf_lists(n)
    return n * (m // 2 + 8 + d) + 4 * lists * d


def spec_for(kind: str, n: int, d: int, *, hnsw_m: int, reason: str = "asked for") -> IndexSpec:
    """The factory string and build parameters of `kind` for n vectors of width d."""
    if kind == "flat":
        return IndexSpec("flat", "Flat", {}, reason)
    if kind == "hnsw":
        return IndexSpec("hnsw", f"HNSW{hnsw_m},Flat", {"M": hnsw_m}, reason)
    if kind == "ivfpq":
        if n < PQ_TRAIN_MIN:
            raise IndexKindError(
                f"an ivfpq index needs at least {PQ_TRAIN_MIN:,} vectors to train its quantizers; "
                f"there are {n:,}: use flat (exact, and fast at this size)"
            )
        m, lists = pq_subquantizers(d), ivf_lists(n)
        return IndexSpec("ivfpq", f"IVF{lists},PQ{m}x4fs,Refine(SQ8)", {"lists": lists, "pq_m": m}, reason)
    raise IndexKindError(f"index kind {kind!r} is not one of {', '.join(KINDS)} (or auto)")


def choose(n: int, d: int, budget: int, *, hnsw_m: int) -> IndexSpec:
    """`auto`: the kind for n vectors of width d within `budget` bytes, with the reason in words."""
    size = f"{n:,} × {d}"
    flat = flat_bytes(n, d)
    if n * d <= FLAT_MAX_SCAN and flat <= budget:
        reason = f"{size}: exact search scans {n * d / 1e6:.1f} M floats a query, within {FLAT_MAX_SCAN / 1e6:.1f} M"
        return spec_for("flat", n, d, hnsw_m=hnsw_m, reason=f"auto: {reason}")
    graph = hnsw_bytes(n, d, hnsw_m)
    if graph <= budget and n * d <= HNSW_MAX_SCAN:
        why = "exact search would scan too much" if flat <= budget else "flat would not fit"
        reason = f"{size}: {why}; HNSW{hnsw_m} takes {human_bytes(graph)} of the {human_bytes(budget)} budget"
        return spec_for("hnsw", n, d, hnsw_m=hnsw_m, reason=f"auto: {reason}")
    codes = ivfpq_bytes(n, d)
    if codes <= budget:
        why = (
            f"HNSW{hnsw_m} would take {human_bytes(graph)}, over the {human_bytes(budget)} budget"
            if graph > budget
            else f"HNSW{hnsw_m} builds slowly past {HNSW_MAX_SCAN / 1e6:.0f} M floats (n·D = {n * d / 1e6:.0f} M)"
        )
        return spec_for("ivfpq", n, d, hnsw_m=hnsw_m, reason=f"auto: {size}: {why}; IVF-PQ takes {human_bytes(codes)}")
    raise IndexKindError(
        f"{size}: no index kind fits retrieval.max_index_memory = {human_bytes(budget)} "
        f"(IVF-PQ, the smallest, needs {human_bytes(codes)}); raise it"
    )


IVF_GROWTH = 2.0
"""An IVF-PQ index takes added vectors while it holds at most this many times the vectors it was built
over: its quantizers were trained on a sample of those, and a store that grew past that deserves new ones."""


def add_refusal(kind: str, built_over: int, after: int) -> str | None:
    """Why vectors cannot be added to an index of `kind` built over `built_over` vectors so that it
    holds `after`, or None when they can (Flat and HNSW always: neither is trained)."""
    if kind == "ivfpq" and after > IVF_GROWTH * built_over:
        return (
            f"an ivfpq index trained over {built_over:,} vectors would hold {after:,}, more than "
            f"{IVF_GROWTH:g}× as many: its quantizers need training again"
        )
    return None
