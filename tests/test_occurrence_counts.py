"""`bench occurrence-counts`: a head of every occurrence's answers, with and without the true count."""

import numpy as np
import pytest

from framestamp.benchmarks.occurrence_counts import main, score
from framestamp.runtime import InputError

FRAME = 0.04


def track(peaks: dict[int, float], frames: int = 100) -> np.ndarray:
    """A log-intensity track with the given mass at each peak frame and next to nothing elsewhere."""
    log_intensity = np.full(frames, -30.0)
    for frame, mass in peaks.items():
        log_intensity[frame] = np.log(mass)
    return log_intensity


def test_a_count_off_by_one_shifts_later_occurrences_and_the_true_count_puts_them_back():
    occurrences = [10, 40, 70]
    right = track({10: 1.0, 40: 1.0, 70: 1.0})  # Lambda(T) = 3
    extra = track({5: 0.9, 10: 1.0, 40: 1.0, 70: 1.0})  # a false one first: 3.9 -> 4 counted
    missing = track({10: 1.0, 40: 0.3, 70: 0.9})  # 2.2 -> 2: the weak 2nd is not counted
    rows = {"word": [(right, k, 3, (occurrences[k - 1] + 0.5) * FRAME) for k in (1, 2, 3)]
            + [(extra, k, 3, (occurrences[k - 1] + 0.5) * FRAME) for k in (1, 2, 3)]
            + [(missing, 2, 3, 40.5 * FRAME)]}
    result = score(rows)["word"]
    assert result["questions"] == 7
    # By hand: all 3 right on the clean track; the extra one shifts every k (the 1st lands on frame 5, the
    # 2nd on 10, the 3rd on 40); with 2 counted the 2nd is the strongest after the 1st: frame 70.
    assert result["acc@40ms"] == pytest.approx(3 / 7)
    assert result["acc@40ms given the true count"] == pytest.approx(7 / 7)
    assert (result["count right"], result["count too high"], result["count too low"]) == pytest.approx((3 / 7, 3 / 7, 1 / 7))


def test_a_head_of_the_asked_occurrence_is_refused(tmp_path):
    import framestamp

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    shipped = __import__("pathlib").Path(framestamp.__file__).parent / "models" / "omni-tiny-synth"
    with pytest.raises(InputError, match="marks the asked occurrence alone"):
        main([str(manifest), "--model", str(shipped)])
