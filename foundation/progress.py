"""Progress bars with rates and the one-screen summary every stage ends with.

Bars go to stderr (tqdm's default) so that stdout stays clean for `--json` output; summaries go
to stdout. Library code uses these so every stage reports the same way.

Batch jobs often run where stderr is a log file (nohup, a scheduler, a pipe): there a redrawn bar
would be nothing but carriage returns, and tqdm prints nothing at all. So when stderr is not a
terminal the bar becomes a line every `LOG_INTERVAL_S` seconds, with count, rate and ETA, whether
or not the count moved (a long video can take minutes), plus one at the start and one at the end.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from tqdm import tqdm

log = logging.getLogger("lvmae")


def configure_logging(verbose: int = 0) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


LOG_INTERVAL_S = 30.0
"""Seconds between progress lines when stderr is not a terminal."""


class _Lines:
    """A file for tqdm that turns each redraw ("\\r" + status) into one line of a log."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class LogBar(tqdm):
    """tqdm for a log: its status as a line at the start, every `interval` seconds and at the end."""

    def __init__(self, *args: Any, interval: float = LOG_INTERVAL_S, file: TextIO | None = None, **kwargs: Any):
        # Updates never redraw (mininterval): only the timer and close() print.
        super().__init__(
            *args,
            file=_Lines(file or sys.stderr),
            mininterval=float("inf"),
            bar_format="{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]",
            **kwargs,
        )
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, args=(interval,), daemon=True, name="lvmae-progress")
        self._timer.start()

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)  # shown at the next line, not now

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self.get_lock():
                if not self.disable:
                    self.refresh(nolock=True)

    def close(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
        super().close()


def bar(
    iterable: Iterable | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    unit_scale: bool = False,
    disable: bool | None = None,
    interval: float = LOG_INTERVAL_S,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar showing count, rate (`unit`/s), elapsed and remaining time.

    `disable=None` draws the bar when stderr is a terminal and prints a status line every `interval`
    seconds when it is not (a log file, a pipe); `disable=True` shows nothing. Extra rates (e.g.
    video-hours/s) go through `bar.set_postfix`.
    """
    common = dict(total=total, desc=desc, unit=unit, unit_scale=unit_scale, smoothing=0.1, **kwargs)
    if disable is None and not _is_terminal(kwargs.get("file") or sys.stderr):
        return LogBar(iterable, interval=interval, **common)
    return tqdm(iterable, dynamic_ncols=True, mininterval=0.5, disable=bool(disable), **common)


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


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
    timed: bool = True  # end with the wall time since `started` (off for reports of state)

    def add(self, label: str, value: Any) -> Summary:
        if isinstance(value, float):
            value = f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        self.rows.append((label, str(value)))
        return self

    def note(self, line: str) -> Summary:
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
