import json

from bench._common import emit, machine, parse_args


def test_parse_args_quick_and_out():
    args = parse_args("a benchmark", ["--quick", "--out", "r.json"])
    assert args.quick and args.out == "r.json"
    args = parse_args("a benchmark", [])
    assert not args.quick and args.out is None


def test_emit_prints_one_json_line_last_and_writes_the_file(tmp_path, capsys):
    print("progress line")
    emit({"rate_per_s": 1.5, **machine()}, tmp_path / "out" / "r.json")
    last = capsys.readouterr().out.splitlines()[-1]
    assert json.loads(last)["rate_per_s"] == 1.5
    assert json.loads((tmp_path / "out" / "r.json").read_text()) == json.loads(last)
