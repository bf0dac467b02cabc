"""`framestamp locate --plot`: the file is in the format its extension names, the figure has a title and
axis labels, a transcript's words never overprint, and the printed answer does not change (issue 12)."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from framestamp.cli import main
from framestamp.runtime import Timestamps

pytest.importorskip("matplotlib", reason="--plot needs matplotlib (framestamp[plot])")

RATE = 16_000
# What each format's file starts with.
MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff", ".pdf": b"%PDF-",
         ".svg": b"<?xml"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "chirp.wav"
    t = np.arange(2 * RATE) / RATE
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32), RATE)
    return path


def transcript_result(seconds: float, count: int) -> Timestamps:
    """Words bunched at the start and around two thirds in, the way a model's guesses stack up."""
    rng = np.random.default_rng(0)
    times = np.sort(np.concatenate([rng.uniform(0, 0.15 * seconds, count // 2),
                                    rng.uniform(0.6 * seconds, seconds, count - count // 2)]))
    words = tuple(f"word{i}" for i in range(count))
    return Timestamps(task="transcript", question="Transcript: " + " ".join(words) + " Based on the transcript, "
                      "output the timestamps for every word", times=tuple(times), duration=seconds, words=words,
                      log_intensity=rng.normal(size=int(seconds / 0.04)).astype(np.float32))


def test_locate_writes_the_format_its_extension_names_and_prints_the_same_answer(clip, tmp_path, capsys):
    question = ["locate", str(clip), "--transcript", "the dog saw the cat"]
    assert main(question) == 0
    without_plot = json.loads(capsys.readouterr().out)
    picture = tmp_path / "words.jpg"
    assert main(question + ["--plot", str(picture)]) == 0
    assert json.loads(capsys.readouterr().out) == without_plot  # no intensity added to the answer
    assert picture.read_bytes()[:3] == MAGIC[".jpg"]


@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
def test_every_offered_format_is_written_as_itself(tmp_path, suffix):
    from framestamp.runtime.plot import save_plot

    samples = np.sin(np.arange(RATE) / 7).astype(np.float32) * 0.3
    path = tmp_path / f"plot{suffix}"
    one_word = Timestamps(task="word", question="a question", times=(0.5,), duration=1.0,
                          log_intensity=np.zeros(25, np.float32))
    save_plot(samples, RATE, one_word, "clip.wav: a question", "log-intensity", path)
    assert path.read_bytes()[: len(MAGIC[suffix])] == MAGIC[suffix]
    if suffix == ".svg":
        assert b"<svg" in path.read_bytes()[:2000]


@pytest.mark.parametrize("name, message", [
    ("plot.gif", "cannot write a .gif file; end the name in .png, .jpg, .jpeg, .pdf, .svg"),
    ("plot.txt", "cannot write a .txt file"),
    ("plot", "cannot write a file without an extension"),
    ("folder.png", "is a folder; give a file name"),
    ("a-file/plots/words.png", "a-file is a file, so no folder can be made in it"),
])
def test_a_plot_that_cannot_be_written_is_refused_before_the_model_runs(clip, tmp_path, capsys, monkeypatch,
                                                                        name, message):
    import framestamp.runtime.locator as locator_module

    (tmp_path / "folder.png").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setattr(locator_module.Locator, "__init__", lambda *a, **k: pytest.fail("the model was opened"))
    assert main(["locate", str(clip), "--word", "dog", "--plot", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file", "folder.png"]  # nothing written


def boxes(figure, texts):
    renderer = figure.canvas.get_renderer()
    return [text.get_window_extent(renderer) for text in texts]


def test_the_figure_says_what_it_shows_and_no_word_overprints_another():
    import matplotlib.pyplot as plt

    from framestamp.runtime.plot import draw

    seconds = 20.0
    result = transcript_result(seconds, 60)
    samples = (np.sin(np.arange(int(seconds * RATE)) / 5) * 0.3).astype(np.float32)
    figure = draw(samples, RATE, result, f"long.wav: {result.question}", "log-intensity")
    figure.canvas.draw()
    strip, wave, curve = figure.axes
    assert wave.get_ylabel() == "amplitude"
    assert curve.get_xlabel() == "time (s)" and curve.get_ylabel() == "log-intensity per 40 ms frame"
    title = figure._suptitle
    assert title.get_text().startswith("long.wav: Transcript: word0 word1")
    inside = figure.bbox
    (title_box,) = boxes(figure, [title])
    assert inside.x0 <= title_box.x0 and title_box.x1 <= inside.x1 and title_box.y1 <= inside.y1  # not cut

    labels = [text for text in strip.texts]
    assert sorted(text.get_text() for text in labels) == sorted(result.words)
    placed = boxes(figure, labels)
    for i, first in enumerate(placed):
        assert inside.x0 <= first.x0 and first.x1 <= inside.x1, labels[i].get_text()
        for j in range(i + 1, len(placed)):
            assert not first.overlaps(placed[j]), (labels[i].get_text(), labels[j].get_text())
    plt.close(figure)



def test_what_the_system_refuses_to_write_is_one_line(clip, capsys, monkeypatch):
    import framestamp.runtime.plot as plot_module

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/srv/plots/words.png")

    monkeypatch.setattr(plot_module, "save_plot", refuse)
    assert main(["locate", str(clip), "--word", "dog", "--plot", "words.png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "framestamp locate: error: [Errno 13] Permission denied: '/srv/plots/words.png'"
