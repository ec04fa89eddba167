import pytest

from lvmae.foundation.loader import ConfigError
from lvmae.foundation.schema import load_config, parse_bytes
from lvmae.retrieval import kinds


def test_auto_picks_flat_then_hnsw_then_ivfpq_by_size_and_budget():
    gib = 2**30
    assert kinds.choose(10_000, 512, 8 * gib, hnsw_m=32).kind == "flat"
    mid = kinds.choose(200_000, 512, 8 * gib, hnsw_m=32)
    assert mid.kind == "hnsw" and mid.factory == "HNSW32,Flat"
    assert "439.5 MiB" in mid.reason  # 4 * 2e5 * (512 + 64) bytes
    big = kinds.choose(1_000_000, 512, 8 * gib, hnsw_m=32)
    assert big.kind == "ivfpq" and big.factory == "IVF1024,PQ64x4fs,Refine(SQ8)" and "builds slowly" in big.reason
    tight = kinds.choose(200_000, 512, 256 * 2**20, hnsw_m=32)
    assert tight.kind == "ivfpq" and "over the 256.0 MiB budget" in tight.reason
    with pytest.raises(kinds.IndexKindError, match="max_index_memory"):
        kinds.choose(1_000_000, 512, 100 * 2**20, hnsw_m=32)


def test_flat_is_kept_only_while_it_fits():
    # small enough to scan, but the budget is smaller than the vectors themselves
    assert kinds.choose(50_000, 128, 10 * 2**20, hnsw_m=32).kind == "ivfpq"


def test_ivfpq_needs_enough_vectors_to_train():
    with pytest.raises(kinds.IndexKindError, match="1,248 vectors"):
        kinds.spec_for("ivfpq", 1_000, 64, hnsw_m=32)
    with pytest.raises(kinds.IndexKindError, match="not one of"):
        kinds.spec_for("lsh", 5_000, 64, hnsw_m=32)


def test_ivf_lists_scale_with_the_square_root():
    assert kinds.ivf_lists(1_000_000) == 1024
    assert kinds.ivf_lists(10_000) == 128
    assert kinds.ivf_lists(2_000) == 32  # √n = 45 -> 32; 39 points a list allow 51
    assert kinds.pq_subquantizers(512) == 64 and kinds.pq_subquantizers(100) == 10 and kinds.pq_subquantizers(90) == 10


def test_ivfpq_refuses_to_grow_past_its_training():
    assert kinds.add_refusal("flat", 10, 1000) is None
    assert kinds.add_refusal("ivfpq", 10_000, 20_000) is None
    assert "training again" in kinds.add_refusal("ivfpq", 10_000, 20_001)


def test_memory_sizes_parse_with_units():
    assert parse_bytes("8GiB", "k") == 8 * 2**30
    assert parse_bytes("512 MiB", "k") == 512 * 2**20
    assert parse_bytes("2GB", "k") == 2 * 10**9
    with pytest.raises(ConfigError, match="retrieval.max_index_memory"):
        load_config(None, ["retrieval.max_index_memory=lots"], use_default_file=False)
    with pytest.raises(ConfigError, match="retrieval.per_video"):
        load_config(None, ["retrieval.per_video=-1"], use_default_file=False)
