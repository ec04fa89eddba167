"""Probes: small heads trained on frozen features to classify whole videos, the measure of a representation.

Shape letters: `N` videos, `T` segments of a video (padded to the longest), `F` feature width (D for raw
segment embeddings, W for LV-MAE outputs), `C` classes.

Features are per-segment sequences read through the `Store` API: a store's own embeddings (`raw`: the
frozen image-text encoder's, or an `embed-sequences` store of LV-MAE outputs), or a checkpoint's encoder
run over them here (`pretrain.features.sequence_features`: nothing hidden, long videos in chunks of the
checkpoint's trained context), trained or freshly initialised (`lvmae-init`, the same architecture with
seed-0 weights: what the architecture gives before any pretraining).

Heads, trained on the training split, chosen on the validation split, scored on the test split:

- `linear`: the mean of a video's segments, standardised with the training videos' statistics, then
  L2-regularised logistic regression (scikit-learn, L-BFGS), its C chosen on validation from `LINEAR_C`.
- `attentive`: V-JEPA's attentive pooler. Segments standardised as above; one learned query
  cross-attends over them (pre-norm multi-head attention, then a residual MLP), and a linear layer reads
  the query out. AdamW with warmup and cosine decay (`foundation.optim`), full batch; lr x weight decay
  from `ATTENTIVE_GRID`, chosen on validation.
- `attentive-pos`: the same with sin-cos positions of the segment index added to the standardised
  segments: a supervised sequence model from scratch, which can learn order where the others cannot.

Splits come from a hash of (seed, video id) within each class: the first `FRACTIONS` of a class's videos in
that order are train / val / test, so a video is in one split only, every class is in every split, and
another seed draws other splits (and other head initialisations) over the same features. Label
efficiency trains the same heads on the first 1, 2, 4 and all training videos of each class, with the
hyperparameters the validation split chose for all of them (choosing on one label per class is noise).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lvmae.foundation.errors import UsageError
from lvmae.foundation.optim import decay_groups, warmup_cosine
from lvmae.foundation.progress import bar
from lvmae.foundation.runtime import resolve_device
from lvmae.pretrain.checkpoint import Pretrained
from lvmae.pretrain.features import sequence_features
from lvmae.pretrain.model import LVMAE, sincos
from lvmae.retrieval.errors import RetrievalError
from lvmae.store import Store

HEADS = ("linear", "attentive", "attentive-pos")
FRACTIONS = (0.6, 0.2, 0.2)  # train, val, test of each class
LABELS_PER_CLASS: tuple[int | None, ...] = (1, 2, 4, None)  # None: every training video
LINEAR_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # inverse L2 strength, weakest regularisation last
ATTENTIVE_GRID = ((1e-3, 0.05), (1e-3, 0.5), (3e-3, 0.05), (3e-3, 0.5))  # (lr, weight decay)
ATTENTIVE_STEPS = 100  # full-batch AdamW steps: a few dozen training videos fit well before this
ATTENTIVE_WARMUP = 10


# --- data: labelled videos, splits ------------------------------------------------------------------


@dataclass
class Labelled:
    """The ok videos of a store with their class (and group) from manifest columns."""

    video_ids: list[str]
    y: np.ndarray  # (N,) int64 class index
    classes: list[str]
    groups: list[str] | None  # (N,) the group of each video, when a group column is given


def labelled_videos(store: Store, label: str, group: str | None = None) -> Labelled:
    """The store's ok videos and their labels, or a RetrievalError naming the store and the column."""
    table = store.videos()
    if table.num_rows == 0:
        raise RetrievalError(f"store {store.uri} has no videos to probe")
    for column in (label, group):
        if column is not None and column not in table.column_names:
            extra = [c for c in table.column_names if c not in ("video_id", "uri", "shard_id", "row_start")]
            raise RetrievalError(
                f"store {store.uri} has no manifest column {column!r} to probe; its columns: {', '.join(extra)}"
            )
    ok = table.filter(pc.equal(table["status"], "ok"))
    if ok.num_rows == 0:
        raise RetrievalError(f"every video of store {store.uri} failed extraction: there is nothing to probe")
    rows = sorted(zip(*(ok[c].to_pylist() for c in ("video_id", label, group or label))))
    missing = [v for v, y, _ in rows if y is None]
    if missing:
        raise RetrievalError(f"video {missing[0]} of store {store.uri} has no {label!r} (nor {len(missing) - 1} more)")
    classes = sorted({str(y) for _, y, _ in rows})
    if len(classes) < 2:
        raise RetrievalError(
            f"column {label!r} of store {store.uri} has one class ({classes[0]!r}): a probe needs at least two"
        )
    index = {c: i for i, c in enumerate(classes)}
    return Labelled(
        video_ids=[v for v, _, _ in rows],
        y=np.array([index[str(y)] for _, y, _ in rows], dtype=np.int64),
        classes=classes,
        groups=[str(g) for _, _, g in rows] if group is not None else None,
    )


def _rank(seed: int, video_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{video_id}".encode()).digest()


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # video positions, each class's in hash order
    val: np.ndarray
    test: np.ndarray


def split(data: Labelled, seed: int) -> Split:
    """Per class, videos in the order of sha256(seed:video_id): the first 60 % train, the next 20 % val,
    the rest test (at least one val and one test video per class)."""
    parts: list[list[int]] = [[], [], []]
    for c, name in enumerate(data.classes):
        members = sorted(np.flatnonzero(data.y == c).tolist(), key=lambda i: _rank(seed, data.video_ids[i]))
        n = len(members)
        if n < 3:
            raise RetrievalError(
                f"class {name!r} has {n} video(s); a probe needs at least 3 per class (train, val and test)"
            )
        n_val = max(1, round(FRACTIONS[1] * n))
        n_test = max(1, round(FRACTIONS[2] * n))
        n_train = n - n_val - n_test
        parts[0] += members[:n_train]
        parts[1] += members[n_train : n_train + n_val]
        parts[2] += members[n_train + n_val :]
    return Split(*(np.array(p, dtype=np.int64) for p in parts))


def first_per_class(train: np.ndarray, y: np.ndarray, n: int | None) -> np.ndarray:
    """The first `n` training videos of each class (all with None), in the split's order."""
    if n is None:
        return train
    keep, seen = [], {}
    for i in train.tolist():
        c = int(y[i])
        if seen.get(c, 0) < n:
            keep.append(i)
            seen[c] = seen.get(c, 0) + 1
    return np.array(keep, dtype=np.int64)


# --- features ---------------------------------------------------------------------------------------


SEQUENCE_HEADS = ("linear", "attentive")  # on LV-MAE features, which hold positions already


@dataclass
class Features:
    name: str  # raw, lvmae-init, lvmae (or a checkpoint's name)
    sequences: list[np.ndarray]  # (T, F) float32 per video, in Labelled order
    heads: tuple[str, ...] = HEADS  # the heads probed on them

    @property
    def width(self) -> int:
        return int(self.sequences[0].shape[1])


def raw_features(store: Store, data: Labelled, name: str = "raw") -> Features:
    return Features(name, [store.sequence(v, arrays=("emb",)).get("emb").astype(np.float32) for v in data.video_ids])


def lvmae_features(pretrained: Pretrained, raw: Features, name: str) -> Features:
    """The checkpoint's encoder over each video, in chunks of its trained context."""
    dim = pretrained.model.cfg.dim_in
    if raw.width != dim:
        raise RetrievalError(
            f"checkpoint {pretrained.name} takes {dim}-wide embeddings; the store's are {raw.width}-wide"
        )
    chunk = pretrained.max_segments
    return Features(name, [sequence_features(pretrained.model, s, chunk=chunk) for s in raw.sequences], SEQUENCE_HEADS)


def random_init(pretrained: Pretrained) -> Pretrained:
    """The same architecture with seed-0 initial weights: LV-MAE before any pretraining."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LVMAE(pretrained.model.cfg)
    model.to(next(pretrained.model.parameters()).device).eval().requires_grad_(False)
    return Pretrained(model=model, name="random init", sha256="", pretrain=pretrained.pretrain)


# --- heads --------------------------------------------------------------------------------------------


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    std = x.std(0)
    return mean, np.where(std > 1e-8, std, 1.0)


def linear_probe(
    pooled: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, test: np.ndarray, *, c: float | None = None
) -> tuple[np.ndarray, float]:
    """(test predictions, the C used). pooled (N, F): each video's mean segment. `c` None: chosen on val."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    mean, std = _standardiser(pooled[train])
    x = (pooled - mean) / std

    def fit(strength: float):
        with warnings.catch_warnings():
            # With one video a class, or features that barely vary, L-BFGS can stop early; validation
            # still judges the fit it gives, so its warning says nothing the table does not.
            warnings.simplefilter("ignore", ConvergenceWarning)
            return LogisticRegression(C=strength, max_iter=2000).fit(x[train], y[train])

    if c is None:
        # Best val accuracy; on a tie the stronger regularisation (earlier in LINEAR_C).
        scores = [float((fit(s).predict(x[val]) == y[val]).mean()) for s in LINEAR_C]
        c = LINEAR_C[int(np.argmax(scores))]
    return fit(c).predict(x[test]), c


class AttentivePooler(nn.Module):
    """V-JEPA's attentive probe: a learned query cross-attends over the segments (pre-norm, H heads),
    then a residual MLP and a linear classifier. x (N, T, F), valid (N, T) -> (N, C) logits.

    With one query, multi-head attention is computed in its cheap, exact form: the query's logit for a
    segment is q_h . (W_k,h x) = (W_k,h^T q_h) . x, and its output is W_v,h (sum_t a_t x_t) (softmax
    weights sum to 1, so the value bias passes through and the key bias, the same for every segment,
    cancels). That costs N*T*F*H per step instead of the N*T*F^2 of projecting every segment, which is
    what makes a grid of probes affordable on a CPU; the parameters are those of `nn.MultiheadAttention`.
    The pre-norm is split the same way: `prepare` adds the positions and normalises the segments once
    (they are frozen), and the norm's gain and bias are applied inside the two contractions, so no
    step back-propagates through N*T*F activations of a LayerNorm.
    """

    def __init__(self, width: int, classes: int, *, positions: bool, heads: int = 4):
        super().__init__()
        self.heads = heads if width % heads == 0 else 1
        self.positions = positions
        self.query = nn.Parameter(torch.randn(width) * 0.02)  # (F,)
        self.gain = nn.Parameter(torch.ones(width))  # the pre-norm's affine part (see `prepare`)
        self.bias = nn.Parameter(torch.zeros(width))
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width, bias=False)  # a key bias would cancel in the softmax
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.head = nn.Linear(width, classes)

    def prepare(self, x: Tensor) -> Tensor:
        """Segments (N, T, F) -> positions added (attentive-pos) and normalised without the affine part."""
        N, T, W = x.shape
        if self.positions:
            index = torch.arange(T, device=x.device).expand(N, T)  # (N, T)
            x = x + sincos(index, W + W % 2)[..., :W]  # (N, T, F)
        return F.layer_norm(x, (W,))

    def forward(self, xhat: Tensor, valid: Tensor) -> Tensor:
        """xhat (N, T, F) from `prepare`, valid (N, T) -> (N, C)."""
        N, T, W = xhat.shape
        H = self.heads
        d = W // H
        q = self.q(self.query).view(H, d)  # (H, d)
        u = torch.einsum("hd,hdf->hf", q, self.k.weight.view(H, d, W)) * self.gain  # (H, F): (W_k,h γ)^T q_h
        logits = torch.einsum("ntf,hf->nht", xhat, u) / math.sqrt(d)  # (N, H, T); the β term cancels
        weights = logits.masked_fill(~valid[:, None, :], float("-inf")).softmax(-1)  # (N, H, T)
        pooled = torch.einsum("nht,ntf->nhf", weights, xhat) * self.gain + self.bias  # (N, H, F): of the norm
        heads = torch.einsum("nhf,hdf->nhd", pooled, self.v.weight.view(H, d, W)) + self.v.bias.view(H, d)
        y = self.query + self.out(heads.reshape(N, W))  # (N, F)
        y = y + self.mlp(self.mlp_norm(y))
        return self.head(y)  # (N, C)


def padded(sequences: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Ragged (T_i, F) sequences -> x (N, T, F) float32 zero-padded, valid (N, T) bool."""
    T = max(len(s) for s in sequences)
    x = torch.zeros(len(sequences), T, sequences[0].shape[1])
    valid = torch.zeros(len(sequences), T, dtype=torch.bool)
    for i, s in enumerate(sequences):
        x[i, : len(s)] = torch.from_numpy(s)
        valid[i, : len(s)] = True
    return x, valid


def train_attentive(
    x: Tensor,
    valid: Tensor,
    y: Tensor,
    train: np.ndarray,
    *,
    classes: int,
    positions: bool,
    lr: float,
    wd: float,
    seed: int,
) -> AttentivePooler:
    torch.manual_seed(seed)
    head = AttentivePooler(x.shape[-1], classes, positions=positions)
    optimizer = torch.optim.AdamW(decay_groups(head, wd), lr=lr, foreach=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup=ATTENTIVE_WARMUP, steps=ATTENTIVE_STEPS)
    )
    index = torch.from_numpy(train)
    xb, vb, yb = head.prepare(x[index]), valid[index], y[index]
    head.train()
    for _ in range(ATTENTIVE_STEPS):
        loss = F.cross_entropy(head(xb, vb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return head.eval()


def attentive_probe(
    features: Features,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray,
    *,
    positions: bool,
    seed: int,
    hyper: tuple[float, float] | None = None,
) -> tuple[np.ndarray, tuple[float, float]]:
    """(test predictions, the (lr, weight decay) used); `hyper` None: chosen on val from ATTENTIVE_GRID."""
    segments = np.concatenate([features.sequences[i] for i in train])  # (sum T, F)
    mean, std = _standardiser(segments)
    x, valid = padded([(s - mean) / std for s in features.sequences])
    x = x * valid[..., None]  # padding stays 0 after standardising
    labels = torch.from_numpy(y)
    classes = int(y.max()) + 1

    def predict(head: AttentivePooler, rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            index = torch.from_numpy(rows)
            return head(head.prepare(x[index]), valid[index]).argmax(1).numpy()

    def fit(lr: float, wd: float) -> AttentivePooler:
        return train_attentive(x, valid, labels, train, classes=classes, positions=positions, lr=lr, wd=wd, seed=seed)

    if hyper is not None:
        return predict(fit(*hyper), test), hyper
    # Every grid point trained once; the best on val (the first on a tie) answers the test split.
    heads = [fit(lr, wd) for lr, wd in ATTENTIVE_GRID]
    scores = [float((predict(h, val) == y[val]).mean()) for h in heads]
    best = int(np.argmax(scores))
    return predict(heads[best], test), ATTENTIVE_GRID[best]


# --- the table -------------------------------------------------------------------------------------------


@dataclass
class Row:
    features: str
    head: str
    labels_per_class: int | str  # n, or "all"
    accuracies: list[float] = field(default_factory=list)  # one per seed
    test_videos: int = 0
    per_group: dict[str, list[float]] = field(default_factory=dict)  # group -> one accuracy per seed

    def to_json(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "head": self.head,
            "labels_per_class": self.labels_per_class,
            "accuracy_mean": float(np.mean(self.accuracies)),
            "accuracy_std": float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0,
            "accuracies": self.accuracies,
            "test_videos": self.test_videos,
            "per_group": {g: float(np.mean(a)) for g, a in sorted(self.per_group.items())},
        }


@dataclass
class ProbeReport:
    label: str
    classes: list[str]
    videos: int
    seeds: list[int]
    rows: list[Row]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "classes": len(self.classes),
            "chance": 1 / len(self.classes),
            "videos": self.videos,
            "seeds": self.seeds,
            "rows": [r.to_json() for r in self.rows],
        }


def run_probes(
    data: Labelled,
    feature_sets: list[Features],
    *,
    label: str,
    seeds: Sequence[int] = (0, 1, 2),
    labels_per_class: Sequence[int | None] = LABELS_PER_CLASS,
    progress: Callable[[int, int], None] | None = None,
) -> ProbeReport:
    """Every (features, head, labels per class) row over the same splits of every seed. A number of
    labels per class that every class's training split has at most is left out: it is the `all` row."""
    splits = {seed: split(data, seed) for seed in seeds}
    most = max(int((data.y[parts.train] == c).sum()) for parts in splits.values() for c in range(len(data.classes)))
    labels_per_class = [n for n in labels_per_class if n is None or n < most]
    pooled = [np.stack([s.mean(0) for s in f.sequences]) for f in feature_sets]  # (N, F) each: seed-free
    rows: dict[tuple[str, str, int | str], Row] = {}
    total = len(seeds) * len(labels_per_class) * sum(len(f.heads) for f in feature_sets)
    done = 0
    for seed, parts in splits.items():
        for features, means in zip(feature_sets, pooled):
            for head in features.heads:
                hyper: Any = None
                for n in sorted(labels_per_class, key=lambda n: -1 if n is None else n):  # all first: it chooses
                    train = first_per_class(parts.train, data.y, n)
                    if head == "linear":
                        pred, hyper = linear_probe(means, data.y, train, parts.val, parts.test, c=hyper)
                    else:
                        pred, hyper = attentive_probe(
                            features,
                            data.y,
                            train,
                            parts.val,
                            parts.test,
                            positions=head == "attentive-pos",
                            seed=seed,
                            hyper=hyper,
                        )
                    key = (features.name, head, "all" if n is None else n)
                    row = rows.setdefault(key, Row(*key))
                    right = pred == data.y[parts.test]
                    row.accuracies.append(float(right.mean()))
                    row.test_videos = len(parts.test)
                    if data.groups is not None:
                        groups = np.array([data.groups[i] for i in parts.test])
                        for g in sorted(set(groups)):
                            row.per_group.setdefault(g, []).append(float(right[groups == g].mean()))
                    done += 1
                    if progress is not None:
                        progress(done, total)
    order = {n: i for i, n in enumerate(["all", *[n for n in labels_per_class if n is not None]])}
    ordered = sorted(rows.values(), key=lambda r: (order[r.labels_per_class],))
    return ProbeReport(label, data.classes, len(data.video_ids), list(seeds), ordered)


def feature_name(path: Path, many: bool) -> str:
    """A checkpoint's row name: lvmae, or its folder/file when several are compared."""
    return f"lvmae:{path.parent.name}/{path.name}" if many else "lvmae"


def run_probe(
    store_uri: str,
    label: str,
    *,
    group: str | None = None,
    checkpoints: Sequence[str | Path] = (),
    seeds: int = 3,
    device: str = "auto",
    progress: bool = True,
) -> tuple[ProbeReport, list[str]]:
    """(ProbeReport, notes): every row of the probe table on the videos of the store at `store_uri`,
    classified by manifest column `label` (accuracy per `group` too; default 'group' when the store has
    it): the store's own embeddings, and for each checkpoint its LV-MAE encoder's (the first also
    randomly initialised), over seeds 0..`seeds`-1. A note says when a checkpoint trained on this store."""
    from lvmae.evaluation.reconstruction import trained_on_store
    from lvmae.pretrain.checkpoint import load_pretrained

    if seeds < 1:
        raise UsageError("seeds", "at least 1", value=seeds)
    store = Store.open(store_uri)
    if group is None and "group" in store.videos().column_names and label != "group":
        group = "group"
    data = labelled_videos(store, label, group)
    raw_name = "raw" if "input_encoder" not in store.identity.encoder else store.identity.encoder["name"]
    feature_sets = [raw_features(store, data, raw_name)]
    notes = []
    torch_device = resolve_device(device)
    for k, path in enumerate(map(Path, checkpoints)):
        pretrained = load_pretrained(path, torch_device)
        if k == 0:
            feature_sets.append(lvmae_features(random_init(pretrained), feature_sets[0], "lvmae-init"))
        feature_sets.append(lvmae_features(pretrained, feature_sets[0], feature_name(path, len(checkpoints) > 1)))
        if trained_on_store(pretrained, store):
            notes.append(f"{path} trained on this store's videos: its rows are not held-out figures")
    with bar(total=None, desc="probe", unit="fit", disable=None if progress else True) as pbar:

        def tick(done: int, total: int) -> None:
            pbar.total = total
            pbar.update(done - pbar.n)

        report = run_probes(data, feature_sets, label=label, seeds=tuple(range(seeds)), progress=tick)
    return report, notes


def probe_table(report: dict) -> str:
    """The probe table of `ProbeReport.to_json()`: one row per (features, head, labels per class)."""
    groups = sorted({g for row in report["rows"] for g in row["per_group"]})
    lines = [
        f"probe accuracy on {report['label']!r}: {report['classes']} classes (chance {report['chance']:.3f}), "
        f"{report['videos']} videos; mean ± std over seeds {report['seeds']}; test videos per seed in brackets"
    ]
    head = f"{'features':<24}{'head':<15}{'labels':>7}  {'accuracy':>17}" + "".join(f"  group {g:>3}" for g in groups)
    lines.append(head)
    for row in report["rows"]:
        acc = f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f} ({row['test_videos']})"
        cells = "".join(f"  {row['per_group'].get(g, float('nan')):>9.3f}" for g in groups)
        lines.append(f"{row['features']:<24}{row['head']:<15}{row['labels_per_class']!s:>7}  {acc:>17}{cells}")
    return "\n".join(lines)
