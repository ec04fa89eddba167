"""Decode only the frames the segment samplers need: which packets to decode, and how.

A sampled frame may be any frame within its tolerance of the time it stands for (half its sample
interval, see `extract.segments.sample_times`), or the frame on screen then when no frame lies
that close. So most frames need not be decoded: `SparseSchedule` reads the packets a group of
pictures ahead (from a keyframe to the next one, in decode order) and decides for each packet:

- `DECODE`: a frame chosen for some wanted time; decoded whatever its kind.
- `REFS`: decoded only if other frames may refer to it (FFmpeg's `skip_frame = NONREF`): frames
  before the last chosen one in the group, which the chosen ones may need.
- `DROP`: not sent to the decoder at all: a group's packets after its last chosen frame in decode
  order (nothing later in the group is needed, and the next keyframe starts afresh), or a whole group
  with no chosen frame.

For each wanted time the frames of the group within its tolerance (and the next keyframe, which
is decoded anyway when its group is) are the candidates; the group's last chosen frame is placed
as early in decode order as the wanted times allow, then each wanted time takes its nearest
candidate up to there, preferring frames decoded anyway (B-frames, shown after a frame decoded
ahead of them, are the ones that may be skipped). A time with no frame within its tolerance takes
the frame on screen then. What is not known is decoded as before: the last group of the stream (the
trailing partial segment is known only at the end), a group longer than the lookahead allows,
packets without timestamps, timestamps that go back at a keyframe. A group after which the next keyframe has leading frames (an open GOP: frames shown
before the keyframe that refer to this group) is never cut short. A decoder that ignores
`skip_frame` decodes `REFS` packets whole, which is slower and as right.

The decoded frames are a superset of the chosen ones; `extract.decode.FrameSampler` given the same
tolerances fills each slot with a decoded frame within them (or the one on screen), which the
tests check against every wanted time.

There is no seeking past unneeded stretches: the encoder frames' tolerance windows tile the whole
timeline at any segment length, so some frame is always wanted within a window's width, and a group
with nothing wanted is already left out of the decoding; a seek would save only reading it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import numpy as np

DECODE, REFS, DROP = "DEFAULT", "NONREF", None
# Wanted times (and their tolerances) in [a, b): the samplers' plan, known ahead of the decoding.
Wanted = Callable[[float, float], tuple[np.ndarray, np.ndarray]]
# How far under its tolerance a frame is chosen, so that rounding never puts it just outside the
# sampler's reach.
_MARGIN_S = 1e-6


@dataclass
class _Packet:
    packet: av.Packet
    time: float  # presentation time, seconds from the stream's start
    key: bool
    index: int  # in the stream, decode order


class SparseSchedule:
    """Yields (packet, how) for a stream's packets in decode order; `how` is DECODE, REFS or DROP.

    Called with the packets and `time_of(pts)`, which turns a packet's pts into seconds the way
    frames' times are computed. `wanted(a, b)` gives the wanted times in [a, b) and their
    tolerances. At most `lookahead` packets and `lookahead_bytes` are held (a group longer than that
    is decoded whole). `packets` counts the video packets seen (the stream's frames), `dropped`
    those never sent to the decoder.
    """

    def __init__(self, wanted: Wanted, *, lookahead: int = 600, lookahead_bytes: int = 64 << 20):
        self.wanted, self.lookahead, self.lookahead_bytes = wanted, lookahead, lookahead_bytes
        self.packets = 0
        self.dropped = 0
        self._chosen: set[int] = set()  # packets (by index) a group before chose from the next group
        self._timed = True  # every packet so far has a timestamp
        # Wanted times from here on are not yet planned (None: from the next planned group's start).
        self._from: float | None = -np.inf

    def __call__(
        self, packets: Iterator[av.Packet], time_of: Callable[[int], float]
    ) -> Iterator[tuple[av.Packet, str | None]]:
        held: list[_Packet] = []  # from a keyframe on, in decode order
        size = 0  # bytes held
        nxt = None  # where in `held` the next group's keyframe is, once there
        whole = False  # decoding whole until the next keyframe (a group too long to hold)
        for packet in packets:
            if packet.size == 0 or packet.pts is None:
                if packet.size and packet.pts is None:
                    self._timed = False
                    self.packets += 1
                yield from self._whole(held)  # the end (a flush packet) or a stream that cannot be planned
                held, size, nxt = [], 0, None
                yield packet, DECODE
                continue
            self.packets += 1
            p = _Packet(packet, time_of(packet.pts), bool(packet.is_keyframe), self.packets - 1)
            if not self._timed or (not held and not p.key) or (whole and not p.key):
                yield packet, DECODE  # before the first keyframe, or inside a group decoded whole
                continue
            whole = False
            held.append(p)
            size += packet.size
            if p.key and nxt is None and len(held) > 1:
                nxt = len(held) - 1
            while nxt is not None:
                # The next group's leading frames (shown before its keyframe) follow the keyframe
                # directly: the group can be planned at the first frame shown after the keyframe.
                after = held[nxt + 1 :]
                if not after or not (after[-1].key or after[-1].time > held[nxt].time):
                    break
                if held[nxt].time <= held[0].time:  # timestamps start again or go back: cannot plan
                    yield from self._whole(held[:nxt])
                else:
                    yield from self._plan(held[:nxt], held[nxt], [q for q in after[:-1] if q.time < held[nxt].time])
                held = held[nxt:]
                size = sum(q.packet.size for q in held)
                nxt = next((i for i in range(1, len(held)) if held[i].key), None)
            if len(held) > self.lookahead or size > self.lookahead_bytes:
                yield from self._whole(held)
                held, size, nxt, whole = [], 0, None, True
        yield from self._whole(held)

    def _whole(self, held: list[_Packet]) -> Iterator[tuple[av.Packet, str | None]]:
        for q in held:
            yield q.packet, DECODE
        self._chosen.clear()
        if held:
            self._from = None

    def _plan(self, group: list[_Packet], key: _Packet, leading: list[_Packet]):
        """Decide a group's packets, from its keyframe to before `key`, the next group's keyframe."""
        start, end = group[0].time, key.time
        a = start if self._from is None else min(self._from, start)
        self._from = end
        # Candidates in presentation order: this group's frames shown from its keyframe on (its
        # leading frames, shown before, were the group before's candidates), the next keyframe, and
        # the next group's leading frames, which rank after this whole group in decode order.
        cands = [(q.time, i) for i, q in enumerate(group) if q.time >= start]
        cands += [(key.time, len(group))] + [(q.time, len(group) + 1 + j) for j, q in enumerate(leading)]
        cands.sort()
        times = np.array([c[0] for c in cands])
        order = np.array([c[1] for c in cands])
        # The last packet of this group each candidate needs decoded: itself; none for the next
        # keyframe; all of them for the next group's leading frames.
        needs = np.where(order < len(group), order, np.where(order == len(group), -1, len(group) - 1))
        # Frames shown before one decoded ahead of them (B-frames) are the ones that may be skipped as
        # non-reference; the others are decoded anyway, so a wanted time takes one of those if it can.
        shown = np.maximum.accumulate([q.time for q in group])
        late = {i for i in range(1, len(group)) if group[i].time < shown[i - 1]}
        late |= set(range(len(group) + 1, len(group) + 1 + len(leading)))
        # Per wanted time, the candidates it may take: positions lo..hi-1 in `cands`.
        wanted, tol = self.wanted(a, end)
        tol = np.maximum(0.0, tol - _MARGIN_S)
        lo, hi = np.searchsorted(times, wanted - tol, "left"), np.searchsorted(times, wanted + tol, "right")
        # No frame within the tolerance: the one on screen.
        on_screen = np.maximum(0, np.searchsorted(times, wanted, "right") - 1)
        lo, hi = np.where(hi > lo, lo, on_screen), np.where(hi > lo, hi, on_screen + 1)
        choices = list(zip(wanted.tolist(), lo.tolist(), hi.tolist()))
        # The last chosen frame in decode order, as early as every wanted time allows; frames already
        # chosen by the group before (this group's leading frames) are needed too.
        chosen = {i for i, q in enumerate(group) if q.index in self._chosen}
        last = max([int(needs[lo:hi].min()) for _, lo, hi in choices] + list(chosen), default=-1)
        for t, lo, hi in choices:
            reach = [j for j in range(lo, hi) if needs[j] <= last]
            chosen.add(int(order[min(reach, key=lambda j: (order[j] in late, abs(times[j] - t), times[j]))]))
        if leading:
            last = len(group) - 1  # leading frames of the next group may refer to any frame of this one
        self._chosen = {key.index} if len(group) in chosen else set()
        self._chosen |= {q.index for j, q in enumerate(leading) if len(group) + 1 + j in chosen}
        for i, q in enumerate(group):
            if i > last:
                self.dropped += 1
                yield q.packet, DROP
            else:
                yield q.packet, DECODE if i in chosen else REFS
