"""How long `lvmae --help` and each subcommand's `--help` take, in a fresh process each, as a user waits.

    python -m bench.cli [--quick] [--out FILE]

Each command line runs `repeats` times (5, 1 with --quick) through the installed `lvmae` console script
(the one beside this Python), from an empty temporary folder; the figure is the median wall time of
the process, interpreter start included. The target is 0.3 s: `import lvmae` and the CLI load no torch,
no stage, no API until a command runs. Keys: `help_s` (command -> seconds), `max_help_s`, the slowest
command, `target_s`, and `modules_loaded_by_top_help`: whether the top-level help imported torch or lvmae.api.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import emit, machine, parse_args

TARGET_S = 0.3


def lvmae_script() -> Path:
    """The console script installed beside this interpreter."""
    script = Path(sys.executable).with_name("lvmae")
    if not script.is_file():
        raise SystemExit(f"bench.cli: no lvmae script beside {sys.executable}; install the project first")
    return script


def wall_seconds(argv: list[str], cwd: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"bench.cli: {' '.join(argv[1:])} exited {done.returncode}: {done.stderr.strip()}")
    return statistics.median(times)


def loaded_modules(cwd: str) -> dict[str, bool]:
    """Which heavy modules `lvmae --help` loads, seen from inside the process."""
    probe = (
        "import sys\nfrom lvmae import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(int('torch' in sys.modules), int('lvmae.api' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=True)
    torch, api = out.stdout.strip().splitlines()[-1].split()
    return {"torch": torch == "1", "lvmae.api": api == "1"}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    from lvmae.cli import COMMANDS

    script = str(lvmae_script())
    repeats = 1 if args.quick else 5
    with tempfile.TemporaryDirectory() as empty:
        wall_seconds([script, "--help"], empty, 1)  # warm the file cache: the first start reads every .pyc
        help_s = {"lvmae": wall_seconds([script, "--help"], empty, repeats)}
        for name in COMMANDS:
            help_s[name] = wall_seconds([script, name, "--help"], empty, repeats)
            print(f"lvmae {name} --help: {help_s[name]:.3f} s", flush=True)
        loaded = loaded_modules(empty)
    slowest = max(help_s, key=help_s.__getitem__)
    emit(
        {
            "bench": "cli",
            "quick": args.quick,
            "repeats": repeats,
            "help_s": {k: round(v, 3) for k, v in help_s.items()},
            "max_help_s": round(help_s[slowest], 3),
            "slowest": slowest,
            "target_s": TARGET_S,
            "modules_loaded_by_top_help": loaded,
            "machine": machine(),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
