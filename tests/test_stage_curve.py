"""bench stages: held-out accuracy by stage, read from a record of measurements, against targets."""

import json

import pytest

from framestamp.benchmarks import stage_curve
from framestamp.runtime import InputError


def write(path, stages, targets):
    path.write_text(json.dumps({"about": "measured on runs/x", "targets": targets, "stages": stages}))
    return path


def test_rows_follow_stage_order_and_the_gap_is_the_latest_reported_value_short_of_its_target(tmp_path):
    stages = {"10": {"acc@40ms": {"words": 80.0, "speakers": 40.0}},
              "2": {"acc@40ms": {"words": 60.0, "speakers": 45.0, "events": 91.5}},
              "11": {"acc@40ms": {"words": 82.5, "extra": 12.0}}}  # speakers and events last reported earlier
    path = write(tmp_path / "stages.json", stages, {"words": 90, "speakers": 85, "events": 90})
    targets, loaded, about = stage_curve.load(path)
    assert about == "measured on runs/x"
    assert list(loaded) == [2, 10, 11]
    latest = {}
    for number in sorted(int(n) for n in stages):  # independent: walk the stages, keep each measure's last value
        latest.update(stages[str(number)]["acc@40ms"])
    expected = {m: max(0.0, targets[m] - latest[m]) for m in targets}
    assert stage_curve.gaps(targets, loaded) == {**expected, "extra": None}
    assert expected == {"words": 7.5, "speakers": 45.0, "events": 0.0}

    assert stage_curve.main([str(path), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "stages.md").read_text().splitlines()
    assert "measured on runs/x" in table and "| stage | words | speakers | events | extra |" in table
    assert "| target | 90 | 85 | 90 | - |" in table
    rows = [line for line in table if line.startswith(("| 2 ", "| 10 ", "| 11 "))]
    assert rows == ["| 2 | 60.0 | 45.0 | 91.5 | - |", "| 10 | 80.0 | 40.0 | - | - |", "| 11 | 82.5 | - | - | 12.0 |"]
    assert table[-1] == "| gap, latest | 7.5 short | 45.0 short | met | - |"
    assert (tmp_path / "out" / "stages.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("content, match", [
    ("not json", "cannot read it as JSON"),
    (json.dumps({"targets": {}}), "expected"),
    (json.dumps({"stages": {"final": {"acc@40ms": {"words": 1}}}}), "stage 'final'"),
    (json.dumps({"stages": {"3": {"words": 1}}}), '"acc@40ms"'),
])
def test_a_malformed_record_says_what_it_needs(tmp_path, content, match):
    path = tmp_path / "stages.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        stage_curve.load(path)
