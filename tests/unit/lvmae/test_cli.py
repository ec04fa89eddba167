import argparse
import json
import subprocess
import sys

import pytest

from lvmae import __version__, cli


def _walk(parser: argparse.ArgumentParser, path: list[str]):
    """Yield the argv prefix of every (sub)command reachable from `parser`."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + [name])


def all_command_paths():
    for name in cli.COMMANDS:
        yield from _walk(cli.command(name).build_parser(), [name])


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_version(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("path", list(all_command_paths()), ids=lambda p: " ".join(p))
def test_help_of_every_subcommand(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(path + ["--help"])
    assert exit_.value.code == 0
    assert "usage: lvmae " + path[0] in capsys.readouterr().out


def test_unknown_command_fails(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["nosuchcommand"])
    assert exit_.value.code == 2


def test_config_show_json_applies_overrides(capsys):
    assert cli.main(["config", "show", "--json", "--set", "pretrain.mask_ratio=0.75"]) == 0
    assert json.loads(capsys.readouterr().out)["pretrain"]["mask_ratio"] == 0.75


def test_config_show_unknown_key_exits_nonzero_naming_it(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["config", "show", "--set", "nosuchsection.nosuchkey=1"])
    assert exit_.value.code != 0
    assert "nosuchkey" in capsys.readouterr().err


def test_config_keys_lists_documented_keys(capsys):
    assert cli.main(["config", "keys", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    keys = {r["key"] for r in rows}
    assert "pretrain.mask_ratio" in keys and all(r["doc"] for r in rows)


def test_console_script_runs_as_a_process(tmp_path):
    # The installed entry point, as a user runs it (in a directory without pipeline.yaml).
    out = subprocess.run(
        [sys.executable, "-m", "lvmae", "config", "show", "--set", "pretrian.k=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "did you mean 'pretrain'" in out.stderr
