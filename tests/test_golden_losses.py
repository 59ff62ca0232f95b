"""The first training losses of the tiny golden recipe match tests/golden/tiny_losses.json.

A change to the model, loader, masking, optimizer or schedule that moves the curve fails here;
when the move is intended, regenerate the file (`python scripts/bench.py quality golden
--update`) and commit it with the change (modernbert.bench.golden says how the run is made).
"""

from __future__ import annotations

from modernbert.bench.golden import GOLDEN_STEPS, compare, golden_losses, read_golden


def test_golden_file_is_complete():
    golden = read_golden()
    assert len(golden) == GOLDEN_STEPS
    assert golden[-1] < golden[0] - 0.3  # the tiny model learns within the window


def test_training_losses_match_the_golden_curve(tmp_path):
    problems = compare(golden_losses(tmp_path), read_golden())
    assert not problems, "the loss curve moved:\n" + "\n".join(problems)


def test_compare_reports_a_moved_step():
    golden = [5.0, 4.0, 3.0]
    assert compare([5.0, 4.0, 3.0], golden) == []
    moved = compare([5.0, 4.01, 3.0], golden)
    assert len(moved) == 1 and moved[0].startswith("step 1:")
    assert compare([5.0, 4.0], golden) == ["2 steps logged, the golden file has 3"]


def test_default_tolerance_catches_a_small_move():
    golden = read_golden()
    assert compare([golden[0] * (1 + 3e-4), *golden[1:]], golden)
