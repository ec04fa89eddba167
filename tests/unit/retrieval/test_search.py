import numpy as np
import pytest

from lvmae.extract.encoder import ImageTextEncoder
from lvmae.foundation.schema import EncoderConfig, RetrievalConfig
from lvmae.retrieval.captions import CaptionBank, check_encoder_matches, text_refusal
from lvmae.retrieval.errors import NotTextAligned, RetrievalError
from lvmae.retrieval.index import SegmentIndex
from lvmae.retrieval.search import Searcher, clock, parse_like
from lvmae.toyworld.encoder import CONFIG_DIR, SHIPPED_WEIGHTS
from lvmae.toyworld.world import caption_bank

CFG = RetrievalConfig()


@pytest.fixture(scope="module")
def encoder():
    return ImageTextEncoder("toyclip", SHIPPED_WEIGHTS, model_configs=[CONFIG_DIR], device="cpu", precision="fp32")


@pytest.fixture
def captions(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text("\n".join(caption_bank()[:40]) + "\n")
    return path


def encoder_cfg(**changes):
    return EncoderConfig(
        **{"model": "toyclip", "pretrained": str(SHIPPED_WEIGHTS), "model_configs": [CONFIG_DIR], **changes}
    )


def test_the_caption_bank_finds_its_own_captions_and_is_cached(encoder, captions, tmp_path, monkeypatch):
    bank = CaptionBank.load(captions, encoder, cache_dir=tmp_path / "cache")
    assert len(bank) == 40
    assert bank.caption_of(encoder.encode_text(bank.texts[:5])) == bank.texts[:5]
    # a second load reads the cache: nothing is encoded again
    monkeypatch.setattr(encoder, "encode_text", lambda texts: pytest.fail("encoded again"))
    again = CaptionBank.load(captions, encoder, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(again.vectors, bank.vectors, atol=1e-6)
    assert again.texts == bank.texts


def test_the_caption_bank_refuses_another_encoders_store(encoder, captions):
    bank = CaptionBank.load(captions, encoder)
    ours = {"encoder": encoder.identity.to_dict()}
    bank.check_store("runs/store", ours)
    other = {"encoder": {**encoder.identity.to_dict(), "weights_sha256": "f" * 64}}
    with pytest.raises(RetrievalError, match="was encoded by toyclip .* but store runs/store was embedded by"):
        bank.check_store("runs/store", other)
    with pytest.raises(RetrievalError, match="but the config's encoder is"):
        check_encoder_matches("runs/store", other, encoder_cfg())


def test_text_queries_on_lvmae_features_are_refused_with_the_reason(make_store):
    lvmae = {"name": "lvmae:model.pt", "weights_sha256": "c" * 64, "input_encoder": {"name": "toyclip"}}
    store = make_store({"a": (20, 1), "b": (20, 2)}, encoder=lvmae)
    refusal = text_refusal(store.uri, store.identity.to_attrs())
    assert isinstance(refusal, NotTextAligned)
    index = SegmentIndex.build(store, CFG, kind="flat", progress=False)
    searcher = Searcher(index, CFG, refusal=refusal)
    with pytest.raises(NotTextAligned, match="not in any text encoder's embedding space.*--like VIDEO_ID@SECONDS"):
        searcher.text(["a red circle"])
    with pytest.raises(NotTextAligned):
        check_encoder_matches(store.uri, store.identity.to_attrs(), encoder_cfg())
    assert searcher.like("a", 5.0, k=3)  # query by example still works (the moment holding 5 s excluded)


def test_query_by_example_excludes_itself_and_names_bad_targets(make_store):
    store = make_store({"a": (20, 1), "b": (20, 2)})
    searcher = Searcher(SegmentIndex.build(store, CFG, kind="flat", progress=False), CFG)
    results = searcher.like("a", 9.0, k=5, per_video=0)
    assert results and all(not (r.moment.video_id == "a" and r.moment.start <= 9.0 < r.moment.end) for r in results)
    assert [r.rank for r in results] == list(range(1, len(results) + 1))
    with pytest.raises(RetrievalError, match="no video 'zz' in the index"):
        searcher.like("zz", 1.0)
    with pytest.raises(RetrievalError, match="has no segment at 500 s"):
        searcher.like("a", 500.0)


def test_empty_query_and_k_zero_are_clear_errors(make_store):
    searcher = Searcher(SegmentIndex.build(make_store({"a": (5, 1)}), CFG, kind="flat", progress=False), CFG)
    with pytest.raises(RetrievalError, match="empty query"):
        searcher.text(["  "])
    with pytest.raises(RetrievalError, match="at least 1"):
        searcher.like("a", 1.0, k=0)


def test_times_parse_and_print():
    assert parse_like("tw0-0003@95") == ("tw0-0003", 95.0)
    assert parse_like("a@b@1:35") == ("a@b", 95.0)
    assert parse_like("v@0:01:35.5") == ("v", 95.5)
    for bad in ("novideo", "v@", "v@soon", "v@-3"):
        with pytest.raises(RetrievalError, match="--like"):
            parse_like(bad)
    assert clock(3725.9) == "1:02:05" and clock(0) == "0:00:00"


def test_a_step_longer_than_the_hits_grows_into_one_whole_moment(tmp_path):
    import dataclasses

    from lvmae.store import Store
    from tests.unit.retrieval.stores import D, identity

    rng = np.random.default_rng(5)
    step = rng.standard_normal(D)
    store = Store.create(tmp_path / "s", identity())
    with store.shard_writer("s0") as w:
        for video_id in ("a", "b"):
            emb = rng.standard_normal((40, D))
            emb[5:35] = step + 0.05 * rng.standard_normal((30, D))  # one long step: rows 5-34, 10 s to 70 s
            t0 = np.arange(40, dtype=np.float32) * 2
            w.add_video(
                video_id=video_id,
                uri=f"/{video_id}.mp4",
                duration=80.0,
                fps=8.0,
                emb=emb.astype(np.float32),
                importance=np.ones(40, np.float32),
                span=np.stack([t0, t0 + 2], 1),
            )
    shallow = dataclasses.replace(CFG, depth=12)  # far fewer hits than the two steps have segments
    searcher = Searcher(SegmentIndex.build(Store.open(tmp_path / "s"), shallow, kind="flat", progress=False), shallow)
    top = searcher.like("a", 41.0, k=2)  # a's own step is excluded: b's is the answer
    assert top[0].moment.video_id == "b"
    assert (top[0].moment.start, top[0].moment.end) == (10.0, 70.0) and top[0].moment.segments == 30


def caption_searcher(tmp_path, encoder, videos):
    """A searcher over a store whose segments are the text tower's vectors of captions (plus noise), a
    caption a segment, as a perfect image encoder would give: `videos` is {video_id: [caption, ...]}."""
    from lvmae.store import Store
    from tests.unit.retrieval.stores import identity

    bank_file = tmp_path / "bank.txt"
    bank_file.write_text("\n".join(caption_bank()) + "\n")
    rng = np.random.default_rng(0)
    store = Store.create(tmp_path / "captioned", identity())
    with store.shard_writer("s0") as w:
        for video_id, captions in videos.items():
            emb = encoder.encode_text(captions) + 0.01 * rng.standard_normal((len(captions), 128))
            t0 = np.arange(len(captions), dtype=np.float32) * 2
            w.add_video(
                video_id=video_id,
                uri=f"/{video_id}.mp4",
                duration=float(t0[-1] + 2),
                fps=8.0,
                emb=(emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32),
                importance=np.ones(len(captions), np.float32),
                span=np.stack([t0, t0 + 2], 1),
            )
    index = SegmentIndex.build(Store.open(tmp_path / "captioned"), CFG, kind="flat", progress=False)
    return Searcher(index, CFG, text_tower=lambda: encoder, bank=CaptionBank.load(bank_file, encoder))


def no_overlaps(answer):
    for a in answer:
        for b in answer:
            same = a.moment.video_id == b.moment.video_id
            assert a is b or not (same and a.moment.start < b.moment.end and b.moment.start < a.moment.end)


def test_a_moment_stops_where_the_segments_change_to_another_captions_match(encoder, tmp_path):
    """A video showing a purple star for 20 s, then an orange one (near captions, near embeddings): the
    answer to "a orange star ..." is the orange step alone, and no moment runs across the change."""
    purple, orange = "a purple star on a white background", "a orange star on a white background"
    searcher = caption_searcher(tmp_path, encoder, {"v": [purple] * 10 + [orange] * 10})
    answer = searcher.text([orange], k=5, per_video=0)[0]
    assert (answer[0].moment.start, answer[0].moment.end) == (20.0, 40.0) and answer[0].caption == orange
    assert all(not (r.moment.start < 20.0 < r.moment.end) for r in answer)
    no_overlaps(answer)


def test_a_caption_shown_six_times_in_one_long_video_gives_all_six_with_the_default_cap(encoder, tmp_path):
    target, others = "a red circle on a blue background", caption_bank()[100:106]
    long = []
    for other in others:  # six steps of the target, each between steps of other captions
        long += [other] * 4 + [target] * 3
    videos = {"long": long, "x": [caption_bank()[150]] * 12, "y": [caption_bank()[200]] * 12}
    answer = caption_searcher(tmp_path, encoder, videos).text([target], k=10)[0]  # retrieval.per_video: 3
    assert CFG.per_video == 3
    assert [r.moment.video_id for r in answer[:6]] == ["long"] * 6 and all(r.caption == target for r in answer[:6])
    assert sorted(r.moment.start for r in answer[:6]) == [8.0 + 14 * i for i in range(6)]
    no_overlaps(answer)
