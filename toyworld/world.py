"""The toy world: objects (shape x colour) on backgrounds, moving, rendered with vectorised numpy.

Shape legend: `F` frames, `S` frame side in pixels.

A frame shows at most one object. Its caption names what a single frame shows — shape, colour,
background ("a red circle on a blue background") — and never the motion, which only a model that
sees several frames (the tokenizer) can tell. Everything here is pure and deterministic: the same
parameters give the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross", "star", "ring")

# Saturated, well-separated object colours: after h264's 4:2:0 chroma subsampling at 64x64 the
# centre of a 20-30 px object still carries its colour unambiguously.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 195, 70),
    "blue": (45, 95, 245),
    "yellow": (245, 215, 35),
    "purple": (155, 55, 215),
    "orange": (250, 135, 20),
    "white": (245, 245, 245),
}

# Backgrounds are muted so any object stands out; a same-named object/background pair is never drawn.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (22, 22, 22),
    "gray": (118, 118, 118),
    "white": (228, 228, 228),
    "blue": (30, 50, 135),
    "green": (30, 105, 45),
    "brown": (105, 68, 38),
}

MOTIONS = ("left", "right", "up", "down", "spin", "grow", "blink", "still")

# Object radius as a fraction of the frame side, and the extremes `grow` scales it by.
RADIUS_RANGE = (0.18, 0.22)
GROW_RANGE = (0.75, 1.2)
# Blink: 2 cycles per second, visible for the first 70 % of each (3 of every 4 frames at 8 fps).
BLINK_HZ = 2.0
BLINK_ON = 0.7


def object_caption(shape: str, colour: str, background: str) -> str:
    return f"a {colour} {shape} on a {background} background"


def empty_caption(background: str) -> str:
    return f"an empty {background} background"


def valid_pair(colour: str, background: str) -> bool:
    return colour != background


@dataclass(frozen=True)
class Look:
    """What one step shows: an object (shape, colour) on a background, or the empty background."""

    shape: str | None
    colour: str | None
    background: str

    @property
    def caption(self) -> str:
        if self.shape is None:
            return empty_caption(self.background)
        return object_caption(self.shape, self.colour, self.background)


def all_looks() -> list[Look]:
    """Every look the world can show, in a fixed order: objects first, then empty backgrounds."""
    objects = [Look(s, c, b) for s in SHAPES for c in COLOURS for b in BACKGROUNDS if valid_pair(c, b)]
    return objects + [Look(None, None, b) for b in BACKGROUNDS]


def caption_bank() -> list[str]:
    """Every caption the world can show, in `all_looks` order."""
    return [look.caption for look in all_looks()]


@dataclass(frozen=True)
class Layout:
    """Where and how an object moves during one step. Lengths are fractions of the frame side."""

    x: float  # start centre
    y: float
    radius: float
    angle: float  # radians at step start
    speed: float  # frame sides per second for left/right/up/down
    spin: float  # radians per second for spin
    grow_hz: float  # grow cycles per second
    phase: float  # in [0, 1): offsets periodic motions so steps do not all start alike

    @staticmethod
    def random(rng: np.random.Generator) -> Layout:
        radius = rng.uniform(*RADIUS_RANGE)
        lo, hi = margin(radius, GROW_RANGE[1]), 1 - margin(radius, GROW_RANGE[1])
        return Layout(
            x=rng.uniform(lo, hi),
            y=rng.uniform(lo, hi),
            radius=radius,
            angle=rng.uniform(0, 2 * np.pi),
            speed=rng.uniform(0.08, 0.16),
            spin=rng.choice([-1, 1]) * rng.uniform(1.5, 3.0),
            grow_hz=rng.uniform(0.25, 0.5),
            phase=rng.uniform(0, 1),
        )


def margin(radius: float, scale: float = 1.0) -> float:
    """Distance from the frame edge that keeps an object of this radius wholly inside the frame."""
    # 1.25: the triangle and star reach a little past the unit circle (see `_shape_mask`).
    return radius * scale * 1.25


@dataclass(frozen=True)
class FrameParams:
    """Per-frame drawing parameters, each an array of length F (centre/radius in pixels)."""

    shape: np.ndarray  # (F,) int index into SHAPES, -1 for no object
    colour: np.ndarray  # (F, 3) uint8
    background: np.ndarray  # (F, 3) uint8
    cx: np.ndarray  # (F,)
    cy: np.ndarray  # (F,)
    radius: np.ndarray  # (F,)
    angle: np.ndarray  # (F,)


def motion_params(look: Look, layout: Layout, motion: str, t: np.ndarray, size: int) -> FrameParams:
    """Drawing parameters of one step at times `t` (seconds since the step started), shape (F,)."""
    t = np.asarray(t, dtype=np.float64)
    F = t.shape[0]
    r = np.full(F, layout.radius)
    x = np.full(F, layout.x)
    y = np.full(F, layout.y)
    angle = np.full(F, layout.angle)
    lo, hi = margin(layout.radius), 1 - margin(layout.radius)
    travel = hi - lo
    # Linear motions run as a sawtooth inside the frame (leave one edge, reappear at the other)
    # so the object is always whole: a frame's caption stays true at every time.
    along = (layout.phase * travel + layout.speed * t) % travel
    if motion == "left":
        x = hi - along
    elif motion == "right":
        x = lo + along
    elif motion == "up":
        y = hi - along
    elif motion == "down":
        y = lo + along
    elif motion == "spin":
        angle = layout.angle + layout.spin * t
    elif motion == "grow":
        g0, g1 = GROW_RANGE
        r = layout.radius * (g0 + (g1 - g0) * ((layout.phase + layout.grow_hz * t) % 1.0))
    elif motion not in ("blink", "still"):
        raise ValueError(f"unknown motion {motion!r}; expected one of {', '.join(MOTIONS)}")
    shape = np.full(F, -1 if look.shape is None else SHAPES.index(look.shape))
    if motion == "blink" and look.shape is not None:
        shape = np.where(blink_visible(t, layout.phase), shape, -1)
    colour = np.tile(np.array(COLOURS[look.colour] if look.colour else (0, 0, 0), np.uint8), (F, 1))
    background = np.tile(np.array(BACKGROUNDS[look.background], np.uint8), (F, 1))
    return FrameParams(
        shape=shape, colour=colour, background=background, cx=x * size, cy=y * size, radius=r * size, angle=angle
    )


def blink_visible(t: np.ndarray, phase: float) -> np.ndarray:
    return ((phase + BLINK_HZ * np.asarray(t)) % 1.0) < BLINK_ON


def render(p: FrameParams, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw frames. Returns (frames (F, S, S, 3) uint8 RGB, object masks (F, S, S) bool)."""
    F = p.shape.shape[0]
    coords = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    Y, X = np.meshgrid(coords, coords, indexing="ij")  # (S, S)
    mask = np.zeros((F, size, size), dtype=bool)
    for k in np.unique(p.shape):
        if k < 0:
            continue
        idx = np.nonzero(p.shape == k)[0]
        cos = np.cos(p.angle[idx]).astype(np.float32)[:, None, None]
        sin = np.sin(p.angle[idx]).astype(np.float32)[:, None, None]
        dx = X[None] - p.cx[idx].astype(np.float32)[:, None, None]  # (f, S, S)
        dy = Y[None] - p.cy[idx].astype(np.float32)[:, None, None]
        inv_r = (1.0 / p.radius[idx]).astype(np.float32)[:, None, None]
        u = (dx * cos + dy * sin) * inv_r  # object frame, unit radius
        v = (-dx * sin + dy * cos) * inv_r
        mask[idx] = _shape_mask(SHAPES[k], u, v)
    frames = np.empty((F, size, size, 3), dtype=np.uint8)
    # A gentle vertical shading (+-8 %) so backgrounds are not perfectly flat colour fields.
    shade = (0.92 + 0.16 * (coords / size)).astype(np.float32)[None, :, None, None]  # (1, S, 1, 1)
    bg = np.clip(p.background.astype(np.float32)[:, None, None, :] * shade, 0, 255).astype(np.uint8)
    frames[:] = bg  # (F, S, S, 3) via broadcast
    obj = np.broadcast_to(p.colour[:, None, None, :], frames.shape)
    np.copyto(frames, obj, where=mask[..., None])
    return frames, mask


def _regular_polygon(u: np.ndarray, v: np.ndarray, n: int, circumradius: float) -> np.ndarray:
    # Inside when on the inner side of every edge; the first vertex points up (image y grows down).
    inside = np.ones(u.shape, dtype=bool)
    apothem = circumradius * np.cos(np.pi / n)
    for k in range(n):
        phi = -np.pi / 2 + np.pi / n + 2 * np.pi * k / n
        inside &= u * np.cos(phi) + v * np.sin(phi) <= apothem
    return inside


def _star(u: np.ndarray, v: np.ndarray, points: int = 5, outer: float = 1.25, inner: float = 0.55) -> np.ndarray:
    r = np.hypot(u, v)
    theta = np.arctan2(v, u) + np.pi / 2  # 0 at the top point
    sector = 2 * np.pi / points
    phi = np.abs((theta % sector) - sector / 2)  # 0 mid-way between two points
    phi = sector / 2 - phi  # 0 at a point, sector/2 at an inner corner
    px, py = r * np.cos(phi), r * np.sin(phi)
    c, s = np.cos(sector / 2), np.sin(sector / 2)
    # Straight edge from the outer point (outer, 0) to the inner corner (inner*c, inner*s).
    return (px - outer) * inner * s + py * (outer - inner * c) <= 0


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    if shape == "circle":
        return r2 <= 1.0
    if shape == "ring":
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if shape == "square":
        return (np.abs(u) <= 0.82) & (np.abs(v) <= 0.82)
    if shape == "triangle":
        return _regular_polygon(u, v, 3, 1.15)
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.33) & (av <= 0.95)) | ((av <= 0.33) & (au <= 0.95))
    if shape == "star":
        return _star(u, v)
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
