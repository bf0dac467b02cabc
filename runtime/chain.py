"""The k-th occurrence past the lengths the model counts well: a chain of first occurrences.

A k-th occurrence question is decoded jointly with occurrences 1..k-1 (``after_earlier``): the model
itself counts how many times the word (or event) was heard before each frame. It learned to count on
clips of a few seconds; past them it loses count (on 8-30 s clips in training voices, in one pass, the
1st occurrence was right 86% of the time, the 3rd 57%, the 5th and later 38%). Finding the first
occurrence is what it does best, so past ``chain_seconds`` the count is kept outside the model: once
the joint answer for occurrence j lands past that time, occurrence j is the first one heard in the
audio after occurrence j-1 ends, occurrence j+1 the first after that, and so on up to k, each asked of
the audio from there on (a new pass per link). Up to ``chain_seconds`` nothing changes.

Which audio each link hears: it starts where the previous occurrence ends (its end from the head's
end or inside channel), and at least ``MIN_STEP_SECONDS`` after that occurrence's start, so a link
never hears the start it follows; moved back to the 40 ms frame edge at or before that, so the link
hears the frames the whole audio is cut into. A link with less than ``MIN_LINK_SECONDS`` of audio
left, or only silence, finds nothing, and the chain gives up: the joint answer stands.

Over a recording longer than a window (runtime/windows.py), the joint answers come from its first
window, and each link walks the windows after its start until one holds an occurrence (its track
peaks as answers that exist do: the artifact's ``absent_below``); such a question reads the recording
whole (16 kHz float32: 230 MB an hour). The links' passes cost time: on 8-30 s clips a chained answer
took ~1.4x the joint one's.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from framestamp.runtime.audio import holds_sound
from framestamp.runtime.decoding import after_earlier, decode_events, interval_ends_for
from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import FRAME_SECONDS

CHAIN_SECONDS = 8.0  # the clip lengths most of the shipped model's training counted occurrences in
MIN_STEP_SECONDS = 0.08  # two frames: a link starts at least a frame after the start it follows
MIN_LINK_SECONDS = 0.3  # less audio than this left: no link is asked
CHAINED_TASKS = ("word", "event")  # a k-th speaker keeps talking: the first voice after it is the same voice


def check_chain_seconds(chain_seconds) -> float | None:
    """``chain_seconds`` as a float (None or 0: no chain); an InputError for anything else."""
    if chain_seconds is None or (not isinstance(chain_seconds, bool) and chain_seconds == 0):
        return None
    if isinstance(chain_seconds, bool) or not isinstance(chain_seconds, (int, float)) or not chain_seconds > 0:
        raise InputError(f"chain_seconds (--chain-after) must be a number of seconds > 0 (or 0 / None: no chain), "
                         f"got {chain_seconds!r}")
    return float(chain_seconds)


def link_start(start: float, end: float | None, frame_seconds: float = FRAME_SECONDS) -> float:
    """Where the link after an occurrence at [start, end) starts hearing the audio (seconds): the 40 ms
    frame edge at or before its end (a start right at the end stays in), so that the link's frames are
    the whole audio's frames."""
    after = max(start + MIN_STEP_SECONDS, start if end is None else end)
    return math.floor(after / frame_seconds + 1e-6) * frame_seconds


def link_audio(samples: np.ndarray, offset: float, rate: int) -> np.ndarray | None:
    """The audio a link hears: ``samples`` (at ``rate``) from ``offset`` seconds on; None where less than
    ``MIN_LINK_SECONDS`` is left or it holds no sound."""
    part = samples[int(round(offset * rate)):]
    if len(part) < MIN_LINK_SECONDS * rate or not holds_sound(part):
        return None
    return part


def joint_occurrences(rows: Sequence[np.ndarray], task: str, objective: str, channels, frame_seconds: float):
    """(start, end) of occurrences 1..k decoded jointly as ordered decoding answers each of them (the j-th with
    1..j-1, ``after_earlier``), from their head scores ``rows`` (k arrays (frames, channels)); end None where the
    head gives the task none."""
    joint = []
    for number, track in enumerate(rows):
        if number:
            start = after_earlier([earlier[:, 0] for earlier in rows[:number]], track[:, 0], frame_seconds)
        else:
            start = decode_events(track[:, 0], 1, objective, "ordered", frame_seconds)
        ends = interval_ends_for(task, track, channels, start, frame_seconds)
        joint.append((float(start[0]), None if ends is None else float(ends[0])))
    return joint


def chain_from(joint_starts: Sequence[float], chain_seconds: float | None) -> int | None:
    """The 0-based index of the first occurrence (after the first) whose joint answer lies past
    ``chain_seconds``; None when every joint answer stands (or no chain)."""
    if chain_seconds is None:
        return None
    for index in range(1, len(joint_starts)):
        if joint_starts[index] > chain_seconds:
            return index
    return None


def chain_occurrences(joint: Sequence[tuple[float, float | None]], ask_first: Callable, chain_seconds: float | None):
    """Occurrences 1..k, the later ones chained where the joint answers pass ``chain_seconds``.

    ``joint``: (start, end) of occurrences 1..k decoded jointly (end None where the head gives none).
    ``ask_first(offset)`` answers the first occurrence in the audio from ``offset`` seconds on, as
    (start, end, answer) in seconds of the whole audio (``answer``: whatever the caller wants back), or
    None where there is too little audio or none is heard (``link_audio``).

    Returns (index, links): ``index`` the first chained occurrence (0-based) and ``links`` the answers
    ``ask_first`` gave for occurrences index..k-1, in order; (None, []) where the joint answers stand,
    also when a link has too little audio left or hears nothing.
    """
    index = chain_from([start for start, _ in joint], chain_seconds)
    if index is None:
        return None, []
    start, end = joint[index - 1]
    links = []
    for _ in range(index, len(joint)):
        found = ask_first(link_start(start, end))
        if found is None:
            return None, []
        start, end, _ = found
        links.append(found)
    return index, links
