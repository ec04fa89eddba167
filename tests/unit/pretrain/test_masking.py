import pytest
import torch

from lvmae.pretrain.masking import (
    adaptive_mask,
    consecutive_similarity,
    decoder_adaptive,
    decoder_all,
    decoder_mask,
    decoder_random,
    encoder_mask,
    random_mask,
    select_top,
    semantic_mask,
    span_mask,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def ragged(lengths, T=None):
    T = T or max(lengths)
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def expected_hidden(n, ratio):
    return min(round(ratio * n), max(n - 1, 0))


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75, 0.9])
def test_random_mask_hides_exactly_round_ratio_of_valid(ratio):
    valid = ragged([100, 37, 64, 1, 2], T=120)
    hidden = random_mask(valid, ratio, generator=gen())
    assert hidden.shape == valid.shape and hidden.dtype == torch.bool
    for row, n in zip(hidden, valid.sum(1).tolist()):
        assert int(row.sum()) == expected_hidden(n, ratio)


def test_round_is_exact_and_one_segment_stays_visible():
    assert int(random_mask(ragged([10]), 0.5, generator=gen()).sum()) == 5
    assert int(random_mask(ragged([7]), 0.5, generator=gen()).sum()) == 4  # round(3.5) half to even = 4
    assert int(random_mask(ragged([2]), 0.75, generator=gen()).sum()) == 1  # round(1.5)=2, capped at n-1
    assert int(random_mask(ragged([1]), 0.9, generator=gen()).sum()) == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda valid, emb, imp, g: random_mask(valid, 0.5, generator=g),
        lambda valid, emb, imp, g: semantic_mask(emb, 0.5, valid=valid, direction="dissimilar", generator=g),
        lambda valid, emb, imp, g: semantic_mask(emb, 0.5, valid=valid, direction="similar"),
        lambda valid, emb, imp, g: adaptive_mask(imp, 0.5, valid=valid, generator=g),
    ],
    ids=["random", "semantic-dissimilar", "semantic-similar", "adaptive"],
)
def test_padding_is_never_hidden_and_kept_hidden_partition_valid(make):
    valid = ragged([50, 20, 33], T=64)
    emb = torch.randn(3, 64, 16)
    imp = torch.rand(3, 64) + 10 * ~valid  # padding made most important: must still not be hidden
    hidden = make(valid, emb, imp, gen(1))
    assert not (hidden & ~valid).any()
    kept = valid & ~hidden
    assert not (kept & hidden).any()
    assert torch.equal(kept | hidden, valid)
    for row, n in zip(hidden, valid.sum(1).tolist()):
        assert int(row.sum()) == expected_hidden(n, 0.5)


def test_seeded_generator_is_deterministic_and_seeds_differ():
    valid = ragged([200, 150])
    imp = torch.rand(2, 200)
    assert torch.equal(random_mask(valid, 0.5, generator=gen(3)), random_mask(valid, 0.5, generator=gen(3)))
    assert not torch.equal(random_mask(valid, 0.5, generator=gen(3)), random_mask(valid, 0.5, generator=gen(4)))
    assert torch.equal(
        adaptive_mask(imp, 0.5, valid=valid, generator=gen(3)), adaptive_mask(imp, 0.5, valid=valid, generator=gen(3))
    )
    hidden = random_mask(valid, 0.5, generator=gen(3))
    assert torch.equal(
        decoder_random(hidden, imp, 0.2, generator=gen(5)), decoder_random(hidden, imp, 0.2, generator=gen(5))
    )


def test_random_mask_is_uniform_over_positions():
    valid = ragged([40])
    freq = torch.stack([random_mask(valid, 0.5, generator=gen(s))[0] for s in range(2000)]).float().mean(0)
    assert torch.allclose(freq, torch.full((40,), 0.5), atol=0.05)


def piecewise(lengths_of_steps, dim=8, seed=0):
    """A (1, T, dim) sequence of constant steps plus tiny noise; returns it and the step starts."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.nn.functional.normalize(torch.randn(len(lengths_of_steps), dim, generator=g), dim=-1)
    rows, starts, t = [], [], 0
    for k, n in enumerate(lengths_of_steps):
        starts.append(t)
        rows.append(protos[k].expand(n, dim) + 0.01 * torch.randn(n, dim, generator=g))
        t += n
    return torch.cat(rows)[None], starts


def test_consecutive_similarity_first_segment_uses_next():
    emb = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    sim = consecutive_similarity(emb, ragged([3]))
    assert torch.allclose(sim, torch.tensor([[1.0, 1.0, 0.0]]))


def test_semantic_dissimilar_hides_step_changes_first():
    emb, starts = piecewise([10, 10, 10, 10, 10])
    changes = starts[1:]  # the first segment of steps 2..5: least like the segment before
    hidden = semantic_mask(emb, 4 / 50, direction="dissimilar")[0]
    assert sorted(hidden.nonzero().flatten().tolist()) == changes


def test_semantic_similar_hides_redundant_segments_and_never_the_changes():
    emb, starts = piecewise([10, 10, 10, 10, 10])
    hidden = semantic_mask(emb, 0.5, direction="similar")[0]
    assert not hidden[starts[1:]].any()
    sim = consecutive_similarity(emb, ragged([50]))[0]
    # Everything hidden is at least as similar to its predecessor as anything kept.
    assert sim[hidden].min() >= sim[~hidden].max()


def test_semantic_directions_are_complements_at_half():
    emb = torch.randn(1, 40, 8)
    dis = semantic_mask(emb, 0.5, direction="dissimilar")
    sim = semantic_mask(emb, 0.5, direction="similar")
    assert not (dis & sim).any() and torch.equal(dis | sim, torch.ones_like(dis))


def test_semantic_generator_only_breaks_near_ties():
    emb, starts = piecewise([20, 20])
    base = semantic_mask(emb, 0.25, direction="dissimilar")
    a = semantic_mask(emb, 0.25, direction="dissimilar", generator=gen(1))
    b = semantic_mask(emb, 0.25, direction="dissimilar", generator=gen(2))
    for m in (base, a, b):
        assert m[0, starts[1]]  # the real change is always hidden
    emb_ties = torch.ones(1, 30, 4)  # exact ties everywhere: the generator decides
    assert not torch.equal(
        semantic_mask(emb_ties, 0.3, generator=gen(1)), semantic_mask(emb_ties, 0.3, generator=gen(2))
    )


def test_semantic_rejects_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        semantic_mask(torch.randn(1, 5, 3), 0.5, direction="sideways")


def test_adaptive_mask_hides_important_segments_more_often():
    valid = ragged([100])
    imp = torch.linspace(0, 1, 100)[None]
    freq = torch.stack([adaptive_mask(imp, 0.3, valid=valid, generator=gen(s))[0] for s in range(300)]).float().mean(0)
    assert freq[80:].mean() > 2 * freq[:20].mean()
    assert (freq[:20] > 0).any()  # unimportant segments are still hidden sometimes
    # Probability rises with importance: compare quartiles in order.
    quarters = freq.view(4, 25).mean(1)
    assert (quarters[1:] > quarters[:-1]).all()


def test_adaptive_mask_is_scale_free():
    valid = ragged([60])
    imp = torch.rand(1, 60)
    assert torch.equal(
        adaptive_mask(imp, 0.5, valid=valid, generator=gen(7)),
        adaptive_mask(imp * 100 + 3, 0.5, valid=valid, generator=gen(7)),
    )


def test_decoder_all_selects_every_hidden():
    hidden = random_mask(ragged([30, 12], T=30), 0.5, generator=gen())
    assert torch.equal(decoder_all(hidden), hidden)


@pytest.mark.parametrize("kappa", [0.15, 0.3, 1.0])
def test_decoder_adaptive_picks_top_kappa_by_importance(kappa):
    valid = ragged([200, 90], T=200)
    hidden = random_mask(valid, 0.5, generator=gen())
    imp = torch.rand(2, 200)
    imp[~valid] = 100.0  # padding most important: must not be selected
    sel = decoder_adaptive(hidden, imp, kappa)
    assert not (sel & ~hidden).any()
    for b in range(2):
        n_hidden = int(hidden[b].sum())
        k = max(1, round(kappa * n_hidden))
        assert int(sel[b].sum()) == k
        top = imp[b][hidden[b]].topk(k).values
        assert torch.equal(imp[b][sel[b]].sort(descending=True).values, top)


def test_decoder_random_selects_a_subset_of_hidden_with_exact_count():
    valid = ragged([200, 90], T=200)
    hidden = random_mask(valid, 0.75, generator=gen())
    sel = decoder_random(hidden, None, 0.15, generator=gen(2))
    assert not (sel & ~hidden).any()
    assert sel.sum(1).tolist() == [max(1, round(0.15 * int(n))) for n in hidden.sum(1)]


def test_decoder_selects_nothing_when_nothing_hidden():
    hidden = torch.zeros(2, 10, dtype=torch.bool)
    assert not decoder_adaptive(hidden, torch.rand(2, 10), 0.15).any()
    assert not decoder_random(hidden, None, 0.15, generator=gen()).any()


def test_hide_top_ties_keep_time_order():
    score = torch.zeros(1, 6)
    allowed = torch.tensor([[False, True, True, True, True, True]])
    assert select_top(score, torch.tensor([2]), allowed).tolist() == [[False, True, True, False, False, False]]


def test_dispatch_by_config_names():
    valid = ragged([40, 30], T=40)
    emb, imp = torch.randn(2, 40, 8), torch.rand(2, 40)
    for kind in ("random", "semantic", "adaptive", "span"):
        hidden = encoder_mask(kind, emb=emb, importance=imp, valid=valid, ratio=0.5, generator=gen())
        assert hidden.sum(1).tolist() == [20, 15]
        for dec in ("all", "random", "adaptive"):
            sel = decoder_mask(dec, hidden=hidden, importance=imp, kappa=0.15, generator=gen())
            assert not (sel & ~hidden).any()
    with pytest.raises(ValueError, match="encoder mask"):
        encoder_mask("nope", emb=emb, importance=imp, valid=valid, ratio=0.5, generator=gen())
    with pytest.raises(ValueError, match="decoder mask"):
        decoder_mask("nope", hidden=valid, importance=imp, kappa=0.15, generator=gen())


def runs_of(row):
    """Lengths of the runs of True in a 1-D bool tensor."""
    runs, n = [], 0
    for x in row.tolist() + [False]:
        if x:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.75, 0.9])
def test_span_mask_hides_runs_of_whole_pieces(ratio):
    valid = ragged([200, 120, 37, 3, 1], T=200)
    for seed in range(5):
        hidden = span_mask(valid, ratio, generator=gen(seed))
        assert not (hidden & ~valid).any()
        for row, n in zip(hidden, valid.sum(1).tolist()):
            assert int(row.sum()) == expected_hidden(n, ratio)
            short = [r for r in runs_of(row) if r < 5]
            # Pieces of 5-20 are hidden whole; only the one cut to make the count exact can be shorter
            # (and a window shorter than a piece).
            assert len(short) <= 1 or n < 5


def test_span_mask_is_seeded_and_its_lengths_are_a_setting():
    valid = torch.ones(2, 300, dtype=torch.bool)
    a, b = span_mask(valid, 0.5, generator=gen(1)), span_mask(valid, 0.5, generator=gen(1))
    assert torch.equal(a, b) and not torch.equal(a, span_mask(valid, 0.5, generator=gen(2)))
    # Runs far longer than a random mask gives: mean run length well above 2.
    assert sum(map(sum, map(runs_of, a))) / sum(map(len, map(runs_of, a))) > 8
    ones = span_mask(valid, 0.5, lengths=(1, 1), generator=gen(1))
    assert ones.sum(1).tolist() == [150, 150]  # pieces of one segment: a random mask by another name
    with pytest.raises(ValueError, match="span lengths"):
        span_mask(valid, 0.5, lengths=(0, 3), generator=gen(1))


def test_decoder_mix_is_adaptive_plus_as_many_at_random():
    valid = ragged([100, 40], T=100)
    hidden = random_mask(valid, 0.5, generator=gen())
    imp = torch.rand(2, 100)
    top = decoder_adaptive(hidden, imp, 0.15)
    mixed = decoder_mask("mix", hidden=hidden, importance=imp, kappa=0.15, generator=gen(3))
    assert not (mixed & ~hidden).any() and (mixed & top).sum() == top.sum()  # the adaptive part, whole
    assert mixed.sum(1).tolist() == [2 * round(0.15 * 50), 2 * round(0.15 * 20)]
    other = decoder_mask("mix", hidden=hidden, importance=imp, kappa=0.15, generator=gen(4))
    assert not torch.equal(mixed, other) and torch.equal(mixed & top, other & top)  # the random share varies
    everything = decoder_mask("mix", hidden=hidden, importance=imp, kappa=0.9, generator=gen(3))
    assert torch.equal(everything, hidden)  # the random share never exceeds what is left
