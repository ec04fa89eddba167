import numpy as np

from lvmae.toyworld.procedures import (
    INTERLUDE_SECONDS,
    ORDERS_PER_GROUP,
    STEP_SECONDS,
    _cyclic_key,
    plan_video,
    procedure,
    procedures,
)


def test_classes_come_in_groups_sharing_steps_in_different_orders():
    by_group = {}
    for p in procedures():
        by_group.setdefault(p.group, []).append(p)
    assert len(by_group) >= 2
    for group in by_group.values():
        assert len(group) == ORDERS_PER_GROUP
        step_sets = {frozenset(p.steps) for p in group}
        assert len(step_sets) == 1  # same steps ...
        keys = {_cyclic_key(p.order) for p in group}
        assert len(keys) == len(group)  # ... in orders that differ even as cycles


def test_classes_are_part_of_the_world_not_of_a_seed():
    assert procedures() == procedures()
    assert procedure("p00").steps == procedures()[0].steps


def test_plan_covers_duration_with_steps_in_procedure_order():
    proc = procedures()[4]
    duration = 600.0
    plan = plan_video(proc, duration, np.random.default_rng(0))
    assert plan[0].t_start == 0.0 and plan[-1].t_end == duration
    for a, b in zip(plan, plan[1:]):
        assert a.t_end == b.t_start
    steps = [s for s in plan if s.kind == "step"]
    order = [s.step_index for s in steps]
    assert order[: 2 * len(proc.steps)] == list(range(len(proc.steps))) * 2
    for s in steps:
        assert s.look == proc.steps[s.step_index].look and s.motion == proc.steps[s.step_index].motion
    for s in plan[:-1]:
        lo, hi = STEP_SECONDS if s.kind == "step" else INTERLUDE_SECONDS
        assert lo <= s.t_end - s.t_start <= hi
    kinds = {s.kind for s in plan}
    assert kinds == {"step", "idle", "distractor"}
    used = {st.look for st in proc.steps}
    assert all(s.look not in used for s in plan if s.kind == "distractor")
