"""Probes on a synthetic store whose answer is known: procedures 2g and 2g + 1 use the same steps in
another order, so the mean of a video's segments cannot tell them apart, and features of consecutive
pairs of segments (which see the order) can."""

import numpy as np
import pytest
import torch

from lvmae.evaluation.probes import (
    AttentivePooler,
    Features,
    first_per_class,
    labelled_videos,
    raw_features,
    run_probes,
    split,
    train_attentive,
)
from lvmae.pretrain.synthetic import write_procedure_store
from lvmae.retrieval.errors import RetrievalError
from lvmae.store import Store


@pytest.fixture(scope="module")
def procedures(tmp_path_factory):
    """(store, labelled): 40 videos of 4 procedures (10 each) in 2 groups."""
    uri = str(tmp_path_factory.mktemp("probe") / "store")
    store = write_procedure_store(uri, videos=40, segments=(400, 400), procedures=4, noise=0.3)
    return store, labelled_videos(store, "procedure", "group")


def pairs(features):
    """Each segment's outer product with the next one: the mean of these is a soft count of which step
    follows which, so it encodes the order."""
    return Features(
        "pairs",
        [np.einsum("ti,tj->tij", s[:-1], s[1:]).reshape(len(s) - 1, -1) for s in features.sequences],
        ("linear",),
    )


def test_the_mean_cannot_tell_order_and_order_features_can(procedures):
    store, data = procedures
    raw = raw_features(store, data)
    raw.heads = ("linear",)
    report = run_probes(data, [raw, pairs(raw)], label="procedure", labels_per_class=(None,)).to_json()
    rows = {r["features"]: r for r in report["rows"]}
    assert report["classes"] == 4 and report["chance"] == 0.25 and report["videos"] == 40
    # Groups are told apart, the classes of a group are not: near 0.5 overall and in every group.
    assert rows["raw"]["accuracy_mean"] <= 0.7
    assert all(acc <= 0.75 for acc in rows["raw"]["per_group"].values())
    assert rows["pairs"]["accuracy_mean"] >= 0.95  # features that encode order solve it
    assert set(rows["raw"]["per_group"]) == {"0", "1"} and rows["raw"]["test_videos"] == 8
    assert len(rows["raw"]["accuracies"]) == 3


def test_splits_never_leak_and_seeds_change_them(procedures):
    _, data = procedures
    seen = []
    for seed in range(3):
        parts = split(data, seed)
        train, val, test = (set(p.tolist()) for p in (parts.train, parts.val, parts.test))
        assert not (train & val or train & test or val & test)
        assert train | val | test == set(range(40))
        for part in (parts.train, parts.val, parts.test):  # every class in every split
            assert set(data.y[part].tolist()) == {0, 1, 2, 3}
        assert [len(p) for p in (parts.train, parts.val, parts.test)] == [24, 8, 8]
        assert split(data, seed).test.tolist() == parts.test.tolist()  # a function of the seed alone
        seen.append(tuple(sorted(test)))
    assert len(set(seen)) == 3


def test_label_efficiency_takes_the_first_videos_of_each_class(procedures):
    _, data = procedures
    parts = split(data, 0)
    two = first_per_class(parts.train, data.y, 2)
    assert sorted(np.bincount(data.y[two]).tolist()) == [2, 2, 2, 2]
    assert set(two.tolist()) <= set(parts.train.tolist())
    assert first_per_class(parts.train, data.y, None).tolist() == parts.train.tolist()
    one = first_per_class(parts.train, data.y, 1)
    assert set(one.tolist()) <= set(two.tolist())  # nested: more labels add videos, never swap them


def test_seeds_change_the_heads_not_the_features(procedures):
    store, data = procedures
    first, second = raw_features(store, data), raw_features(store, data)
    assert all(np.array_equal(a, b) for a, b in zip(first.sequences, second.sequences))
    x = torch.randn(6, 5, 8)
    valid = torch.ones(6, 5, dtype=torch.bool)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    train = np.arange(6)
    a = train_attentive(x, valid, y, train, classes=2, positions=False, lr=1e-3, wd=0.05, seed=0)
    b = train_attentive(x, valid, y, train, classes=2, positions=False, lr=1e-3, wd=0.05, seed=1)
    c = train_attentive(x, valid, y, train, classes=2, positions=False, lr=1e-3, wd=0.05, seed=0)
    assert not torch.equal(a.query, b.query) and torch.equal(a.query, c.query)


def test_the_pooler_is_multihead_attention_with_one_query():
    torch.manual_seed(0)
    pooler = AttentivePooler(16, 3, positions=False, heads=4)
    with torch.no_grad():
        pooler.gain.uniform_(0.5, 1.5)
        pooler.bias.normal_()
    norm = torch.nn.LayerNorm(16)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        norm.weight.copy_(pooler.gain)
        norm.bias.copy_(pooler.bias)
        key_bias = torch.randn(16)  # any key bias: it cancels in the softmax
        mha.in_proj_weight.copy_(torch.cat([pooler.q.weight, pooler.k.weight, pooler.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([pooler.q.bias, key_bias, pooler.v.bias]))
        mha.out_proj.weight.copy_(pooler.out.weight)
        mha.out_proj.bias.copy_(pooler.out.bias)
    x = torch.randn(5, 7, 16)
    valid = torch.rand(5, 7) > 0.3
    valid[:, 0] = True
    kv = norm(x)
    attended = mha(pooler.query.expand(5, 1, 16), kv, kv, key_padding_mask=~valid)[0][:, 0]
    y = pooler.query + attended
    expected = pooler.head(y + pooler.mlp(pooler.mlp_norm(y)))
    assert torch.allclose(pooler(pooler.prepare(x), valid), expected, atol=1e-5)


def test_clear_errors(tmp_path, procedures):
    store, _ = procedures
    with pytest.raises(RetrievalError, match=r"no manifest column 'nosuch'.*procedure"):
        labelled_videos(store, "nosuch")
    one = write_procedure_store(str(tmp_path / "one"), videos=4, segments=(20, 20), procedures=1)
    with pytest.raises(RetrievalError, match="one class"):
        labelled_videos(one, "procedure")
    few = labelled_videos(write_procedure_store(str(tmp_path / "few"), videos=4, segments=(20, 20)), "procedure")
    with pytest.raises(RetrievalError, match="at least 3 per class"):
        split(few, 0)
    failed = Store.create(tmp_path / "failed", store.identity)
    with failed.shard_writer("s0") as w:
        w.add_failed(video_id="broken", uri="x://broken", error="no video stream", extra={"procedure": 1})
    with pytest.raises(RetrievalError, match="every video of store .* failed"):
        labelled_videos(Store.open(tmp_path / "failed"), "procedure")
