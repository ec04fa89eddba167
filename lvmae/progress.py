"""Progress bars with rates and the one-screen summary every stage ends with.

Bars go to stderr (tqdm's default) so that stdout stays clean for `--json` output; summaries go
to stdout. Library code uses these so every stage reports the same way.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, TextIO

from tqdm.auto import tqdm

log = logging.getLogger("lvmae")


def configure_logging(verbose: int = 0) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr, force=True)


def bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
        unit: str = "it", unit_scale: bool = False, disable: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar showing count, rate (`unit`/s), elapsed and remaining time.

    `disable=None` hides the bar when stderr is not a terminal-like stream tqdm can draw on.
    Extra rates (e.g. video-hours/s) go through `bar.set_postfix`.
    """
    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale,
                dynamic_ncols=True, mininterval=0.5, smoothing=0.1, disable=disable, **kwargs)


def human_seconds(seconds: float) -> str:
    """1.5 -> '1.5 s', 125 -> '2 min 5 s', 7300 -> '2 h 1 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@dataclass
class Summary:
    """The one-screen report a stage prints when it ends: a title, aligned rows, optional notes."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    timed: bool = True            # end with the wall time since `started` (off for reports of state)

    def add(self, label: str, value: Any) -> "Summary":
        if isinstance(value, float):
            value = f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        self.rows.append((label, str(value)))
        return self

    def note(self, line: str) -> "Summary":
        self.notes.append(line)
        return self

    def render(self, *, max_notes: int = 12) -> str:
        elapsed = time.perf_counter() - self.started
        rows = self.rows + ([("wall time", human_seconds(elapsed))] if self.timed else [])
        width = max(len(label) for label, _ in rows)
        rule = "─" * max(40, min(78, len(self.title) + 4))
        out = [rule, f"  {self.title}", rule]
        out += [f"  {label:<{width}}  {value}" for label, value in rows]
        if self.notes:
            out.append("")
            out += [f"  {line}" for line in self.notes[:max_notes]]
            if len(self.notes) > max_notes:
                out.append(f"  … and {len(self.notes) - max_notes} more")
        out.append(rule)
        return "\n".join(out)

    def print(self, file: TextIO | None = None) -> None:
        print(self.render(), file=file or sys.stdout, flush=True)
