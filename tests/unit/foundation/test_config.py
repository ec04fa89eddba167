import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from lvmae.foundation import loader as L
from lvmae.foundation import schema as C
from lvmae.foundation.loader import ConfigError, field_docs, iter_keys
from lvmae.foundation.schema import Config, load_config

REPO = Path(__file__).resolve().parents[3]
PIPELINE = REPO / "pipeline.yaml"


def write(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_pipeline_yaml_parses_and_equals_builtin_defaults():
    raw = yaml.safe_load(PIPELINE.read_text())
    assert set(raw) == {f.name for f in dataclasses.fields(Config) if not f.metadata.get("internal")}
    # The file documents the defaults: reading it changes nothing.
    assert load_config(PIPELINE).to_dict() == _defaults_resolved_at(REPO)


def _defaults_resolved_at(base: Path) -> dict:
    import os

    old = os.getcwd()
    os.chdir(base)
    try:
        return load_config(None, use_default_file=False).to_dict()
    finally:
        os.chdir(old)


def test_every_key_is_documented_and_in_pipeline_yaml():
    text = PIPELINE.read_text()
    raw = yaml.safe_load(text)
    for key, _kind, _default, doc in iter_keys(Config):
        assert doc, f"{key} has no docstring"
        *sections, name = key.split(".")
        node = raw
        for section in sections:
            node = node[section]
        assert name in node, f"pipeline.yaml lacks {key}"


def test_field_docs_reads_attribute_docstrings():
    docs = field_docs(C.SegmentConfig)
    assert "seconds" in docs["seconds"]
    assert set(docs) == {f.name for f in dataclasses.fields(C.SegmentConfig)}


def test_relative_paths_resolve_against_config_file(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg = load_config(write(sub, "paths:\n  work_dir: out\n  store: memory://s\n"))
    assert cfg.paths.work_dir == (sub / "out").resolve()
    assert cfg.paths.store == "memory://s"  # URIs are left alone
    # Defaults not written in the file resolve against it too.
    assert cfg.toyworld.out == (sub / "runs" / "toyworld").resolve()
    assert cfg.source == (sub / "cfg.yaml").resolve()


def test_local_store_path_resolves(tmp_path):
    cfg = load_config(write(tmp_path, "paths:\n  store: data/store\n"))
    assert cfg.paths.store == str((tmp_path / "data" / "store").resolve())


def test_pretrained_tag_kept_and_existing_file_resolved(tmp_path):
    cfg = load_config(write(tmp_path, "encoder:\n  pretrained: laion2b_s34b_b79k\n"))
    assert cfg.encoder.pretrained == "laion2b_s34b_b79k"
    (tmp_path / "w.pt").write_bytes(b"x")
    cfg = load_config(write(tmp_path, "encoder:\n  pretrained: w.pt\n"))
    assert cfg.encoder.pretrained == str(tmp_path / "w.pt")


def test_empty_file_gives_defaults(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    assert cfg.pretrain.mask_ratio == 0.75


@pytest.mark.parametrize(
    "override, attr, expected",
    [
        ("pretrain.mask_ratio=0.75", ("pretrain", "mask_ratio"), 0.75),
        ("pretrain.max_segments=256", ("pretrain", "max_segments"), 256),
        ("segment.seconds=5", ("segment", "seconds"), 5.0),  # int coerced to float
        ("segment.seconds=2e0", ("segment", "seconds"), 2.0),  # YAML reads 2e0 as text; floats take it
        ("extract.strict=true", ("extract", "strict"), True),
        ("encoder.model=123", ("encoder", "model"), "123"),  # str fields keep the text
        ("encoder.model=ViT-B-32", ("encoder", "model"), "ViT-B-32"),
        ("ray.address=null", ("ray", "address"), None),
        ("ray.address=auto", ("ray", "address"), "auto"),
        ("toyworld.minutes=[1, 3.5]", ("toyworld", "minutes"), (1.0, 3.5)),
        ("pretrain.encoder_mask=semantic", ("pretrain", "encoder_mask"), "semantic"),
        ("pretrain.encoder_mask=span", ("pretrain", "encoder_mask"), "span"),
        ("pretrain.span_lengths=[3, 9]", ("pretrain", "span_lengths"), (3, 9)),
        ("demo.heldout_minutes=[1, 2]", ("demo", "heldout_minutes"), (1.0, 2.0)),
    ],
)
def test_overrides_coerce_types(tmp_path, override, attr, expected):
    cfg = load_config(write(tmp_path, ""), [override])
    value = getattr(getattr(cfg, attr[0]), attr[1])
    assert value == expected and type(value) is type(expected)


def test_later_override_wins_and_beats_file(tmp_path):
    path = write(tmp_path, "pretrain:\n  mask_ratio: 0.6\n")
    assert load_config(path).pretrain.mask_ratio == 0.6
    cfg = load_config(path, ["pretrain.mask_ratio=0.7", "pretrain.mask_ratio=0.8"])
    assert cfg.pretrain.mask_ratio == 0.8


def test_unknown_section_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="nosuchkey"):
        load_config(write(tmp_path, ""), ["nosuchsection.nosuchkey=1"])


def test_misspelt_key_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"did you mean 'pretrain\.mask_ratio'"):
        load_config(write(tmp_path, ""), ["pretrain.mask_ratoi=0.5"])
    with pytest.raises(ConfigError, match=r"did you mean 'segment\.clip_frames'"):
        load_config(write(tmp_path, "segment:\n  clip_frame: 4\n"))


def test_misspelt_section_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"did you mean 'pretrain'"):
        load_config(write(tmp_path, "pretrian:\n  mask_ratio: 0.5\n"))


@pytest.mark.parametrize(
    "override, pieces",
    [
        ("pretrain.max_segments=abc", ["pretrain.max_segments", "'abc'", "integer"]),
        ("pretrain.max_segments=2.5", ["pretrain.max_segments", "2.5", "integer"]),
        ("extract.strict=maybe", ["extract.strict", "'maybe'", "true or false"]),
        ("segment.seconds=fast", ["segment.seconds", "'fast'", "number"]),
        ("toyworld.minutes=3", ["toyworld.minutes", "3", "list of 2"]),
        ("pretrain=3", ["pretrain", "3", "mapping"]),
    ],
)
def test_wrong_type_names_key_value_and_expected_type(tmp_path, override, pieces):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, ""), [override])
    for piece in pieces:
        assert piece in str(err.value)


@pytest.mark.parametrize(
    "override, pieces",
    [
        ("pretrain.mask_ratio=1.5", ["pretrain.mask_ratio", "1.5", "(0, 1)"]),
        ("segment.tok_frames=8", ["segment.tok_frames", "8", "1 + 4k"]),
        ("pretrain.encoder_mask=foo", ["pretrain.encoder_mask", "'foo'", "'semantic'"]),
        ("toyworld.minutes=[5, 1]", ["toyworld.minutes", "[5.0, 1.0]", "min <= max"]),
        ("pretrain.span_lengths=[0, 3]", ["pretrain.span_lengths", "[0, 3]", "1 <= min <= max"]),
        ("demo.heldout_videos=0", ["demo.heldout_videos", "0", "at least 1"]),
        ("encoder.device=tpu", ["encoder.device", "'tpu'", "cuda"]),
    ],
)
def test_bad_value_names_key_value_and_allowed(tmp_path, override, pieces):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, ""), [override])
    for piece in pieces:
        assert piece in str(err.value)


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(write(tmp_path, ""), ["pretrain.mask_ratio"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [\n"))


def test_override_below_a_value_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"pretrain\.mask_ratio.*expected a number"):
        load_config(write(tmp_path, ""), ["pretrain.mask_ratio.x=1"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(write(tmp_path, "pretrain:\n  mask_ratio: 0.5\n"), ["pretrain.mask_ratio.x=1"])


def test_dumps_round_trip_through_yaml(tmp_path):
    cfg = load_config(write(tmp_path, ""), ["pretrain.mask_ratio=0.75"])
    again = load_config(write(tmp_path, L.dump_yaml(cfg)))
    assert again.to_dict() == cfg.to_dict()
    assert json.loads(L.dump_json(cfg))["pretrain"]["mask_ratio"] == 0.75


def test_every_schema_type_is_supported():
    # Guards the schema: each field type must be one the coercion understands.
    for key, kind, _default, _doc in iter_keys(Config):
        assert not kind.startswith("<"), f"{key}: unsupported type {kind}"
