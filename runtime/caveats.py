"""When an answer is probably a guess: the warnings a Locator attaches to its Timestamps.

A model always returns a time, even for a word it never learned, an event the clip does not hold or
the fifth of two dogs. Each rule here looks at what the model was trained on (recorded in the
artifact's ``trained_on``) or at what its intensity says, and returns one sentence or None.

The rules for "the k-th occurrence exceeds what the clip holds" and "probably absent" were measured
on held-out clips with the shipped model (benchmarks/confidence.py, results in
benchmarks/results/cpu/confidence.md):

- occurrence k: the Locator also asks for occurrences 1..k-1 (same forward pass) and warns when the
  k-th answer lands on or before an earlier one. Two occurrences cannot share a start, so one of
  those answers is wrong either way. ``estimate_count`` (Lambda(T)) cannot serve here: a single-event
  question's intensity is trained towards one event whether or not k exceeds the count, and heads
  trained without the count term (the shipped one) leave Lambda(T) uncalibrated altogether.
  The number of distinct intensity peaks was no help either: it did not differ between k within and
  beyond the count.
- absent: the peak log-intensity below a per-model threshold recorded at calibration
  (``warning_thresholds.absent_below`` in the manifest: the 5th percentile of the peak on questions whose
  answer exists). Without a recorded threshold there is no such warning.
"""

from __future__ import annotations

from typing import Iterable

from framestamp.runtime.prompts import ordinal

TOUCHING_SECONDS = 0.04  # answers closer than this name the same moment


def longer_than_trained(seconds: float, max_trained_seconds: float | None) -> str | None:
    if max_trained_seconds is None or seconds <= max_trained_seconds:
        return None
    return (f"the audio is {seconds:.1f} s, longer than any clip the model was trained on ({max_trained_seconds:g} s): "
            "times past that are probably guesses; split the audio")


def outside_vocabulary(words: Iterable[str], vocabulary: frozenset[str] | None) -> str | None:
    if vocabulary is None:
        return None
    unknown = list(dict.fromkeys(word for word in words if word not in vocabulary))
    if not unknown:
        return None
    shown = ", ".join(repr(word) for word in unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
    return (f"the model was not trained on the word(s) {shown}: it reads them from their spelling, and their times "
            "are wrong more often than a trained word's")


def occurrence_unsupported(task: str, thing: str, occurrence: int, time: float, earlier: dict[int, float]) -> str | None:
    """``earlier`` maps occurrences 1..k-1 to the model's answers for them."""
    for number, earlier_time in sorted(earlier.items()):
        if time <= earlier_time + TOUCHING_SECONDS:
            where = "the same moment as" if abs(time - earlier_time) <= TOUCHING_SECONDS else "before"
            return (f"the {ordinal(occurrence)} {thing} ({time:.2f} s) lands at {where} the {ordinal(number)} "
                    f"({earlier_time:.2f} s): the clip may hold fewer than {occurrence}")
    return None


def occurrence_not_found(task: str, name: str | None, occurrence: int, found: dict[int, float]) -> str:
    """The recording holds fewer than ``occurrence`` of the thing asked about: ``found`` maps 1..n to times."""
    thing = {"word": f"{name!r}", "event": f"{name!r} event", "speaker": "speaker"}[task]
    times = ", ".join(f"{time:.2f} s" for time in list(found.values())[:8])
    return (f"found {len(found)} {thing}{'' if task == 'speaker' else ' occurrence'}(s) over the recording"
            f"{' (' + times + ')' if found else ''}, not {occurrence}: the {ordinal(occurrence)} is probably not "
            "there; the time given is only a guess")


def no_later_occurrence(thing: str, occurrence: int, after: float, peak_log_intensity: float,
                        threshold: float | None) -> str | None:
    """A chained k-th occurrence (runtime/chain.py): the link for ``occurrence``, asked of the audio from
    ``after`` seconds on, peaks below ``threshold``."""
    if threshold is None or peak_log_intensity >= threshold:
        return None
    return (f"the {ordinal(occurrence)} occurrence of {thing} is probably not in the audio: after {after:.2f} s the "
            f"model's peak score for a further one ({peak_log_intensity:.1f}) is below what 95% of answers that exist "
            f"reach ({threshold:.1f}); the time given is only a guess")


def probably_absent(thing: str, peak_log_intensity: float, threshold: float | None) -> str | None:
    if threshold is None or peak_log_intensity >= threshold:
        return None
    return (f"{thing} is probably not in the audio: the model's peak score ({peak_log_intensity:.1f}) is below "
            f"what 95% of answers that exist reach ({threshold:.1f})")
