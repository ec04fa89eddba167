import numpy as np
import pytest

from lvmae.toyworld.world import (
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    SHAPES,
    Layout,
    Look,
    all_looks,
    blink_visible,
    caption_bank,
    motion_params,
    render,
)

SIZE = 64


def frames_of(look, motion, t, seed=0):
    layout = Layout.random(np.random.default_rng(seed))
    return render(motion_params(look, layout, motion, np.asarray(t, float), SIZE), SIZE)


def test_caption_bank_is_unique_and_never_names_motion():
    bank = caption_bank()
    assert len(bank) == len(set(bank)) == len(all_looks())
    assert all(not any(m in c.split() for m in MOTIONS) for c in bank)
    assert "a red circle on a blue background" in bank and "an empty gray background" in bank
    assert not any(cap.startswith(f"a {c} ") and cap.endswith(f"on a {c} background") for c in COLOURS for cap in bank)


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_draws_a_whole_object_in_its_colour(shape):
    look = Look(shape, "red", "blue")
    for motion in MOTIONS:
        frames, masks = frames_of(look, motion, np.linspace(0, 20, 41))
        area = masks.reshape(len(masks), -1).sum(1)
        visible = area > 0
        assert visible.mean() > 0.5, motion
        # Whole object, never cut by the frame edge: no mask pixel on the border.
        border = masks[:, 0].any() or masks[:, -1].any() or masks[:, :, 0].any() or masks[:, :, -1].any()
        assert not border, (shape, motion)
        assert (frames[masks] == COLOURS["red"]).all()
        assert area[visible].min() > 60  # big enough to tell shapes apart at 64 px


def test_shapes_differ_from_each_other():
    masks = []
    for shape in SHAPES:
        layout = Layout(x=0.5, y=0.5, radius=0.2, angle=0.0, speed=0.1, spin=1.0, grow_hz=0.3, phase=0.0)
        _, m = render(motion_params(Look(shape, "red", "gray"), layout, "still", np.zeros(1), SIZE), SIZE)
        masks.append(m[0])
    for i in range(len(SHAPES)):
        for j in range(i + 1, len(SHAPES)):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.85, (SHAPES[i], SHAPES[j], iou)


@pytest.mark.parametrize("motion, axis, sign", [("left", 1, -1), ("right", 1, 1), ("up", 0, -1), ("down", 0, 1)])
def test_linear_motions_move_the_object_that_way(motion, axis, sign):
    t = np.array([0.0, 0.5])
    for seed in range(5):
        _, masks = frames_of(Look("square", "white", "black"), motion, t, seed)
        centre = [np.argwhere(m)[:, axis].mean() for m in masks]
        step = centre[1] - centre[0]
        # Sawtooth wrap-around aside (a large jump the other way), the object moves in `sign`'s direction.
        assert step * sign > 0 or abs(step) > SIZE / 4


def test_still_is_still_and_spin_grow_blink_change_pixels():
    t = np.linspace(0, 2, 17)
    still, _ = frames_of(Look("star", "yellow", "gray"), "still", t)
    assert (still == still[0]).all()
    for motion in ("spin", "grow", "blink"):
        frames, _ = frames_of(Look("star", "yellow", "gray"), motion, t)
        assert (frames != frames[0]).any(), motion


def test_blink_hides_object_a_quarter_of_the_time_at_8fps():
    t = np.arange(64) / 8.0
    assert blink_visible(t, 0.0).mean() == pytest.approx(0.75)


def test_empty_look_and_background_shading():
    frames, masks = frames_of(Look(None, None, "green"), "still", [0.0])
    assert not masks.any()
    column = frames[0, :, 0, 1].astype(int)
    assert column[-1] > column[0]  # gentle vertical shading
    assert abs(int(frames[0, 32, 32, 1]) - BACKGROUNDS["green"][1]) < 10


def test_render_is_deterministic():
    a, _ = frames_of(Look("cross", "purple", "white"), "spin", np.linspace(0, 5, 9), seed=3)
    b, _ = frames_of(Look("cross", "purple", "white"), "spin", np.linspace(0, 5, 9), seed=3)
    assert np.array_equal(a, b)


def test_unknown_motion_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown motion 'jump'"):
        frames_of(Look("circle", "red", "gray"), "jump", [0.0])
