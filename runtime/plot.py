"""`framestamp locate --plot`: the waveform, the head's intensity and the timestamps in one figure.

Needs matplotlib (``framestamp[plot]``). The file's extension picks its format.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from framestamp.runtime.errors import InputError

# extension -> the format matplotlib writes (JPEG goes through Pillow, which matplotlib requires).
PLOT_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg"}
LABEL_GAP_PIXELS = 6  # between two word labels on the same row
ROW_INCHES = 0.2  # one row of word labels (8 pt text is 0.11 in high)
PANEL_INCHES = 2.2  # the waveform's and the intensity's height
TITLE_LINES = 3


def plot_format(path: Path) -> str:
    """The format ``path``'s extension names; refuses one this command does not write."""
    path = Path(path)
    known = PLOT_FORMATS.get(path.suffix.lower())
    if known is None:
        what = f"a {path.suffix} file" if path.suffix else "a file without an extension"
        raise InputError(f"--plot {path}: cannot write {what}; end the name in {', '.join(PLOT_FORMATS)}")
    return known


def check_plot_path(path: Path) -> None:
    """Refuse, before the model runs, a --plot that could not be written."""
    import importlib.util

    plot_format(path)
    if Path(path).is_dir():
        raise InputError(f"--plot {path}: is a folder; give a file name")
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:  # the folders still to make must go in a folder
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--plot {path}: {folder} is a file, so no folder can be made in it")
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("--plot needs matplotlib: pip install 'framestamp[plot]'")


def save_plot(samples: np.ndarray, sample_rate: int, result, title: str, score_name: str, path: Path) -> None:
    """Draw ``result`` over ``samples`` and write it to ``path``, in the format its extension names."""
    from framestamp.runtime.files import atomic_path

    plt = _pyplot()
    figure = draw(samples, sample_rate, result, title, score_name)
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=120, format=plot_format(path))
    finally:
        plt.close(figure)


def draw(samples: np.ndarray, sample_rate: int, result, title: str, score_name: str = "log-intensity"):
    """Waveform above, the head's per-frame scores (``score_name``) below, a line at each time through
    both; a transcript's words above the waveform, on as many rows as they need not to overlap."""
    plt = _pyplot()
    seconds = len(samples) / sample_rate
    width = float(np.clip(seconds * 0.6, 10, 48))  # inches: long transcripts get room for their words
    labels = list(result.words) if result.words else []
    figure = plt.figure(figsize=(width, 2 * PANEL_INCHES + 1.4), layout="constrained")
    panels = figure.add_gridspec(3, 1, height_ratios=[0.01, PANEL_INCHES, PANEL_INCHES])
    strip = figure.add_subplot(panels[0])
    wave = figure.add_subplot(panels[1], sharex=strip)
    curve = figure.add_subplot(panels[2], sharex=strip)
    _draw_waveform(wave, samples, sample_rate)
    wave.set_ylabel("amplitude")
    if result.log_intensity is not None:
        frames = (np.arange(len(result.log_intensity)) + 0.5) * result.frame_seconds
        curve.plot(frames, result.log_intensity, color="tab:blue")
    curve.set_ylabel(f"{score_name} per {result.frame_seconds * 1000:g} ms frame")
    curve.set_xlabel("time (s)")
    curve.set_xlim(0, seconds)
    for time in result.times:
        for axis in (wave, curve):
            axis.axvline(time, color="tab:red", linewidth=0.8)
    strip.axis("off")
    figure.suptitle(_wrapped(title, int(width * 11)), fontsize=10)
    if labels:
        _place_labels(figure, panels, strip, labels, result.times)
    return figure


def _draw_waveform(axis, samples: np.ndarray, sample_rate: int, columns: int = 4000) -> None:
    """The samples, or for a long clip their min-max envelope over ``columns`` spans (what a pixel shows
    anyway; drawing every sample of a minute takes seconds)."""
    if len(samples) <= 2 * columns:
        axis.plot(np.arange(len(samples)) / sample_rate, samples, linewidth=0.4, color="0.35")
        return
    span = len(samples) // columns
    spans = samples[: span * columns].reshape(columns, span)
    times = (np.arange(columns) + 0.5) * span / sample_rate
    axis.fill_between(times, spans.min(axis=1), spans.max(axis=1), color="0.35", linewidth=0)


def _place_labels(figure, panels, strip, labels: list[str], times) -> None:
    """Each word at its time, on the first row where it does not touch the word before it. Rows are
    measured in pixels once the layout is drawn, and again after the strip grows to hold them."""
    texts = [strip.text(time, 0, label, fontsize=8, ha="left", va="top", color="tab:red")
             for time, label in zip(times, labels)]
    for _ in range(2):  # the second pass measures the final layout
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        right_edge = strip.get_window_extent(renderer).x1
        row_ends: list[float] = []  # per row, where its last label ends (pixels)
        for text in sorted(texts, key=lambda t: t.get_position()[0]):
            text.set_horizontalalignment("left")
            box = text.get_window_extent(renderer)
            if box.x1 > right_edge:  # would run off the figure: end it at its time instead
                text.set_horizontalalignment("right")
                box = text.get_window_extent(renderer)
            row = next((r for r, end in enumerate(row_ends) if end + LABEL_GAP_PIXELS <= box.x0), len(row_ends))
            if row == len(row_ends):
                row_ends.append(box.x1)
            row_ends[row] = box.x1
            text.set_y(row)
        strip.set_ylim(len(row_ends), -0.1)  # row 0 on top
        strip_inches = ROW_INCHES * (len(row_ends) + 0.5)
        panels.set_height_ratios([strip_inches, PANEL_INCHES, PANEL_INCHES])
        figure.set_figheight(strip_inches + 2 * PANEL_INCHES + 1.6)  # + the title and the axes' labels


def _wrapped(title: str, characters: int) -> str:
    lines = textwrap.wrap(" ".join(title.split()), width=max(40, characters))
    if len(lines) > TITLE_LINES:
        lines = lines[:TITLE_LINES]
        lines[-1] = lines[-1][: max(0, len(lines[-1]) - 3)] + "..."
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'framestamp[plot]'") from None
    return plt
