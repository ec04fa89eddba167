"""The report takes hostile artifacts: every value read from a saved file is escaped or formatted as a
number, and one bad value costs its own cell, never the page nor its section."""

import json
import math

from lvmae.report import Artifacts, build

SCRIPT = "<script>alert(1)</script>"


def probe_record(**changes):
    row = {
        "features": "raw",
        "head": "linear",
        "labels_per_class": "all",
        "accuracy_mean": 0.5,
        "accuracy_std": 0.1,
        "test_videos": 4,
        "per_group": {"0": 0.5},
    }
    record = {"label": "label", "classes": 3, "videos": 12, "seeds": [0], "chance": 1 / 3, "rows": [row]}
    return {**record, **changes}


def inspect_record(**changes):
    methods = {
        m: {"r1": 0.5, "r5": 0.9} for m in ("reconstruction", "original", "copy_nearest", "interpolate", "video_mean")
    }
    split = {"segments": 10, "methods": methods}
    record = {
        "truth": "truth.parquet",
        "bank_size": 240,
        "chance_r1": 1 / 240,
        "chance_r5": 5 / 240,
        "decoders": {"all": {"decoder_mask": "all", "splits": {"all": split}}},
    }
    return {**record, **changes}


def write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_fields_of_crafted_artifacts_never_reach_the_page_as_markup(tmp_path):
    probe = write(tmp_path / "probe.json", probe_record(classes=SCRIPT, videos=SCRIPT, seeds=[SCRIPT]))
    inspect = inspect_record(bank_size=SCRIPT, truth=SCRIPT)
    inspect["decoders"]["all"]["splits"] = {SCRIPT: inspect["decoders"]["all"]["splits"]["all"]}
    inspect = write(tmp_path / "inspect.json", inspect)
    search = write(
        tmp_path / "search.json",
        [
            {
                "query": SCRIPT,
                "rank": SCRIPT,
                "video_id": SCRIPT,
                "start": 1.0,
                "end": 2.0,
                "score": SCRIPT,
                "caption": SCRIPT,
            }
        ],
    )
    page, present = build(Artifacts(probe=probe, inspect=inspect, search=search))
    assert present == ["Reconstruction inspection", "Probes", "Search examples"]
    assert "<script" not in page.lower()
    assert page.count("&lt;script&gt;") >= 6  # shown, as text
    assert "Could not read" not in page  # a string where a number belongs is a "–", not a lost section


def test_a_nan_in_a_record_costs_its_cell_not_the_section(tmp_path):
    stages = tmp_path / "stages"
    stages.mkdir()
    (stages / "corpus.json").write_text('{"key": {}, "result": {"videos": 4}, "seconds": NaN}')
    write(stages / "extract.json", {"key": {}, "result": {"segments/s": 40.0}, "seconds": 12.5})
    probe = probe_record(chance=math.nan)
    probe["rows"][0]["accuracy_mean"] = math.nan
    page, present = build(Artifacts(stages=stages, probe=write(tmp_path / "probe.json", probe)))
    assert present == ["What ran", "Probes"]
    assert "Could not read" not in page
    assert "not timed" in page and "12.5 s" in page and "40.0 segments/s" in page
