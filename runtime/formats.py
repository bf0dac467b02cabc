"""Timestamps as files people open: JSON, SRT and WebVTT subtitles, Praat TextGrid.

A word's interval runs from its start to its end where the model gives ends (an inside channel),
else to the next word's start; the last word then ends ``LAST_WORD_SECONDS`` later, or at the end
of the audio. Words placed on the same
frame share one interval.
"""

from __future__ import annotations

import json

import numpy as np

LAST_WORD_SECONDS = 0.5
FORMATS = ("json", "srt", "vtt", "textgrid")


def format_seconds(seconds: float) -> str:
    """Shortest decimal that reads back as the same float, never in exponent form (1e-05 -> 0.00001).

    Exponent forms break some readers (praatio 6.2 cannot read back a TextGrid time written as 1e-05).
    """
    return np.format_float_positional(float(seconds), trim="-")


def textgrid_text(tiers: list[tuple[str, list[tuple[str, float, float]]]], duration: float) -> str:
    """Praat's long text format, gaps filled with "" intervals as MFA 2+ writes them."""
    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "",
             "xmin = 0", f"xmax = {format_seconds(duration)}", "tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for number, (name, intervals) in enumerate(tiers, start=1):
        filled, cursor = [], 0.0
        for label, start, end in intervals:
            if start > cursor:
                filled.append(("", cursor, start))
            filled.append((label, start, end))
            cursor = end
        if cursor < duration:
            filled.append(("", cursor, duration))
        lines += [f"    item [{number}]:", '        class = "IntervalTier"', f"        name = {quoted(name)}",
                  "        xmin = 0", f"        xmax = {format_seconds(duration)}", f"        intervals: size = {len(filled)}"]
        for index, (label, start, end) in enumerate(filled, start=1):
            lines += [f"        intervals [{index}]:", f"            xmin = {format_seconds(start)}",
                      f"            xmax = {format_seconds(end)}", f"            text = {quoted(label)}"]
    return "\n".join(lines) + "\n"



def intervals(labels, times, duration: float, ends=()) -> list[tuple[str, float, float]]:
    """(label, start, end) per distinct time.

    With ``ends`` (a model with an inside channel) each interval ends where the model says, never
    past the next start; without, it ends where the next starts. Words the model places on the
    same frame share one interval, their labels joined by spaces: a subtitle cue or TextGrid
    interval of zero length is dropped or mishandled by players and editors.
    """
    merged: list[tuple[list[str], float, float | None]] = []
    given = list(ends) if len(ends) == len(times) else [None] * len(times)
    for label, start, end in zip(labels, times, given):
        if merged and float(start) <= merged[-1][1]:
            group, first, last = merged[-1]
            group.append(label)
            merged[-1] = (group, first, end if last is None or end is None else max(last, end))
        else:
            merged.append(([label], float(start), end))
    if not merged:
        return []
    starts = [start for _, start, _ in merged]
    spans = []
    for index, (group, start, end) in enumerate(merged):
        following = starts[index + 1] if index + 1 < len(merged) else None
        if end is None:
            stop = following if following is not None else min(duration, start + LAST_WORD_SECONDS)
        else:
            stop = min(float(end), following if following is not None else duration)
        spans.append((" ".join(group), start, max(stop, start + 0.001)))
    return spans


def _clock(seconds: float, separator: str) -> str:
    milliseconds = int(round(seconds * 1000))
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def render(result, form: str) -> str:
    """``result`` (runtime.Timestamps) in ``form``: json, srt, vtt or textgrid."""
    if form == "json":
        return json.dumps(result.as_dict(), indent=2) + "\n"
    labels = result.words if result.words is not None else [result.question] * len(result.times)
    spans = intervals(labels, result.times, result.duration, getattr(result, "ends", ()))
    if form == "srt":
        return "".join(f"{n}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{label}\n\n"
                       for n, (label, a, b) in enumerate(spans, start=1))
    if form == "vtt":
        return "WEBVTT\n\n" + "".join(f"{_clock(a, '.')} --> {_clock(b, '.')}\n{label}\n\n" for label, a, b in spans)
    if form == "textgrid":
        return textgrid_text([("words" if result.words is not None else result.task, spans)], result.duration)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {form!r}")
