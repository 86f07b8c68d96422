import pytest
import torch

from video_features.utils.frames.windows import WindowAssembler, WindowPlan


def cut(plan, n_frames, fps=10.0):
    """Feeds frames whose tensor holds their own index; returns the windows' frame indices and times."""
    assembler = WindowAssembler(plan, 1.0 / fps)
    windows = []
    for i in range(n_frames):
        frame = i if plan.uses(i) or i == n_frames - 1 else None
        window = assembler.add(i, i / fps, frame)
        if window is not None:
            windows.append(window)
    padded = assembler.finish()
    if padded is not None:
        windows.append(padded)
    return [([int(frame) for frame in w.frames], round(w.start, 6), round(w.end, 6)) for w in windows]


def test_non_overlapping_windows_drop_the_tail():
    plan = WindowPlan(stack=4, step=4, offsets=(0, 1, 2, 3))
    assert cut(plan, 10) == [([0, 1, 2, 3], 0.0, 0.4), ([4, 5, 6, 7], 0.4, 0.8)]
    assert plan.count(10) == 2


def test_overlapping_windows():
    plan = WindowPlan(stack=4, step=2, offsets=(0, 1, 2, 3))
    assert [w[0] for w in cut(plan, 8)] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    assert plan.count(8) == 3


def test_windows_with_gaps_between_them():
    plan = WindowPlan(stack=2, step=5, offsets=(0, 1))
    assert cut(plan, 12) == [([0, 1], 0.0, 0.2), ([5, 6], 0.5, 0.7), ([10, 11], 1.0, 1.2)]


def test_subsampled_offsets_see_only_their_frames():
    plan = WindowPlan(stack=8, step=8, offsets=(0, 3, 7))
    assert [i for i in range(16) if plan.uses(i)] == [0, 3, 7, 8, 11, 15]
    assert [w[0] for w in cut(plan, 16)] == [[0, 3, 7], [8, 11, 15]]


def test_overlapping_subsampled_windows():
    plan = WindowPlan(stack=6, step=3, offsets=(0, 5))
    assert [i for i in range(12) if plan.uses(i)] == [0, 3, 5, 6, 8, 9, 11]
    assert [w[0] for w in cut(plan, 12)] == [[0, 5], [3, 8], [6, 11]]


@pytest.mark.parametrize("n_frames", [1, 3, 5])
def test_a_video_shorter_than_a_window_repeats_its_last_frame(n_frames):
    plan = WindowPlan(stack=6, step=6, offsets=(0, 2, 4, 5))
    (frames, start, end), = cut(plan, n_frames)
    assert frames == [min(o, n_frames - 1) for o in (0, 2, 4, 5)]
    assert (start, end) == (0.0, round(n_frames / 10, 6))
    assert plan.count(n_frames) == 1


def test_memory_holds_at_most_one_window_of_frames():
    plan = WindowPlan(stack=4, step=4, offsets=(0, 1, 2, 3))
    assembler = WindowAssembler(plan, 0.1)
    for i in range(1000):
        assembler.add(i, i / 10, torch.zeros(1))
        assert len(assembler._frames) <= plan.stack


@pytest.mark.parametrize(
    "stack, step, offsets, skips",
    [
        (16, 16, range(16), False),
        (16, 8, range(16), False),
        (4, 2, (0, 1), False),  # every frame is in some window, though not in each
        (8, 16, range(8), True),
        (64, 64, range(0, 64, 2), True),
        (4, 2, (0, 3), True),  # frame 1 only
    ],
)
def test_decoding_may_skip_frames_only_where_some_are_in_no_window(stack, step, offsets, skips):
    plan = WindowPlan(stack, step, tuple(offsets))
    assert plan.leaves_frames_out == skips == (not all(plan.uses(i) for i in range(200)))


def test_segments_cut_the_windows_of_the_whole_video_between_them():
    plan = WindowPlan(stack=6, step=4, offsets=(0, 2, 5))  # overlapping windows: a segment's frames reach into the next
    windows = []
    for first, end in [(0, 2), (2, 5), (5, None)]:
        assembler = WindowAssembler(plan, 0.1, first, end)
        last = 30 if end is None else (end - 1) * plan.step + plan.stack
        for i in range(first * plan.step, last):
            window = assembler.add(i, i / 10, i if plan.uses(i, first, end) else None)
            if window is not None:
                windows.append(([int(frame) for frame in window.frames], round(window.start, 6), round(window.end, 6)))
        assert assembler.finish() is None
    assert windows == cut(plan, 30)
    assert [i for i in range(8, 20) if plan.uses(i, 2, 3)] == [8, 10, 13]  # window 2 alone
