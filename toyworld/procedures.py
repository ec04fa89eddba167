"""Procedures: the long-range structure of toy-world videos.

A procedure class is an ordered list of steps (a look plus a motion). Classes come in groups
that share the same steps in different orders, so a model that pools segments without regard to
order cannot tell the classes of a group apart. A video performs its procedure again and again
until it ends, each step for a random duration of several segments, with idle (empty
background) and distractor (an object from no step of the procedure) steps in between.

The classes are part of the world, fixed by `WORLD_SEED`: corpora generated with different seeds
share them, which is what makes held-out corpora comparable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from lvmae.toyworld.world import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, Layout, Look, valid_pair

WORLD_SEED = 20261125
N_GROUPS = 4
ORDERS_PER_GROUP = 3
STEPS_PER_PROCEDURE = 5
STEP_SECONDS = (6.0, 20.0)
INTERLUDE_SECONDS = (2.0, 8.0)
INTERLUDE_PROBABILITY = 0.3


@dataclass(frozen=True)
class StepSpec:
    look: Look
    motion: str


@dataclass(frozen=True)
class Procedure:
    name: str  # e.g. "p07"
    group: int  # classes of one group share their steps
    order: tuple[int, ...]  # permutation of the group's steps
    steps: tuple[StepSpec, ...]  # the steps in this class's order


@dataclass(frozen=True)
class PlannedStep:
    """One step as performed in a video, over [t_start, t_end) seconds."""

    t_start: float
    t_end: float
    kind: str  # step | idle | distractor
    step_index: int  # position in the procedure, -1 for idle and distractor steps
    look: Look
    motion: str
    layout: Layout


def _random_look(rng: np.random.Generator) -> Look:
    while True:
        colour = str(rng.choice(list(COLOURS)))
        background = str(rng.choice(list(BACKGROUNDS)))
        if valid_pair(colour, background):
            return Look(str(rng.choice(SHAPES)), colour, background)


def _cyclic_key(order: tuple[int, ...]) -> tuple[int, ...]:
    # Videos repeat their procedure, so orders that are rotations of each other look the same
    # after the first cycle; compare orders as cycles, starting from step 0.
    start = order.index(0)
    return order[start:] + order[:start]


@functools.cache
def procedures() -> tuple[Procedure, ...]:
    """All procedure classes, N_GROUPS x ORDERS_PER_GROUP of them, the same on every call."""
    rng = np.random.default_rng(WORLD_SEED)
    out = []
    for group in range(N_GROUPS):
        looks: list[Look] = []
        while len(looks) < STEPS_PER_PROCEDURE:
            look = _random_look(rng)
            if look not in looks:
                looks.append(look)
        motions = [str(m) for m in rng.choice([m for m in MOTIONS], size=STEPS_PER_PROCEDURE, replace=False)]
        base = tuple(StepSpec(look, motion) for look, motion in zip(looks, motions))
        orders = [tuple(range(STEPS_PER_PROCEDURE))]
        while len(orders) < ORDERS_PER_GROUP:
            order = tuple(int(i) for i in rng.permutation(STEPS_PER_PROCEDURE))
            if all(_cyclic_key(order) != _cyclic_key(o) for o in orders):
                orders.append(order)
        for order in orders:
            out.append(
                Procedure(name=f"p{len(out):02d}", group=group, order=order, steps=tuple(base[i] for i in order))
            )
    return tuple(out)


def procedure(name: str) -> Procedure:
    for p in procedures():
        if p.name == name:
            return p
    raise KeyError(f"unknown procedure class {name!r}; known: {', '.join(p.name for p in procedures())}")


def _distractor_look(rng: np.random.Generator, proc: Procedure) -> Look:
    used = {s.look for s in proc.steps}
    while True:
        look = _random_look(rng)
        if look not in used:
            return look


def plan_video(proc: Procedure, duration: float, rng: np.random.Generator) -> list[PlannedStep]:
    """Steps covering [0, duration) seconds: the procedure repeated, with interludes between steps."""
    plan: list[PlannedStep] = []
    t = 0.0
    while t < duration:
        for index, spec in enumerate(proc.steps):
            if t >= duration:
                break
            if rng.random() < INTERLUDE_PROBABILITY:
                length = rng.uniform(*INTERLUDE_SECONDS)
                if rng.random() < 0.5:
                    look = Look(None, None, str(rng.choice(list(BACKGROUNDS))))
                    plan.append(PlannedStep(t, t + length, "idle", -1, look, "still", Layout.random(rng)))
                else:
                    plan.append(
                        PlannedStep(
                            t,
                            t + length,
                            "distractor",
                            -1,
                            _distractor_look(rng, proc),
                            str(rng.choice(MOTIONS)),
                            Layout.random(rng),
                        )
                    )
                t += length
                if t >= duration:
                    break
            length = rng.uniform(*STEP_SECONDS)
            plan.append(PlannedStep(t, t + length, "step", index, spec.look, spec.motion, Layout.random(rng)))
            t += length
    last = plan[-1]
    plan[-1] = PlannedStep(last.t_start, duration, last.kind, last.step_index, last.look, last.motion, last.layout)
    return plan
