"""Recordings longer than a window: read them a window at a time, answer per window, stitch one track.

A model is trained on clips up to some length and its decoder attends over every frame it is given,
so a long recording is cut into windows of ``window`` frames that overlap by ``overlap`` frames.
Each window owns the middle of its overlaps (``Window.own_start`` .. ``own_stop``): the stretches
of the recording partition into owned stretches, each answered by the window that sees it furthest
from its edges. A window's answer is its per-frame head scores; the stitched track takes every
owned stretch from its window.

Questions keep their meaning over the whole recording because each window is asked what it holds,
in recording order:

- **first occurrence**: ``find_first`` asks every window for its first occurrence and answers with the
  earliest window whose candidate scores about as high as the best one in the recording (a window
  without the word answers somewhere too, so the first window's answer is not the recording's).
- **k-th occurrence** (a word, an event, the k-th speaker): ``find_occurrence`` walks the windows
  in order, counting occurrences from the start of the recording. A window is asked for its local
  occurrences 1..m at once (m = k minus the occurrences already found before the window starts);
  the answers that rise in time are that window's occurrences, and those in its owned stretch join
  the count. The window where the count reaches k answers with that local question's track.
- **transcript**: ``align_transcript`` walks the windows in order, asking each one for the part of
  the transcript it should hold: from the first word placed at or after the window's start, as many
  words as the recording's average speaking rate puts in a window (the model spreads whatever words
  it is given over the speech it hears, so asking for spare words would squeeze them all in). The
  words a window places in its owned stretch are committed to it, so every word belongs to exactly
  one stretch, in order; the last window takes the words left. Timed by its words (the runtime's
  default), a window is asked each word's question instead, the k-th time the window's part says it,
  and places them by ``paced_map``. Each word then has a track of its own, so the window is asked for
  ``SURPLUS`` times the words the rate predicts, and frames past its end are added on which every word
  scores a high quantile of its own track: a word the window does not hold falls there, behind the
  ones it does, instead of squeezing them (on 5-minute recordings of held-out voices: 88.1% of word
  starts within 40 ms without, 98.0% with).

Decoding then runs once on the stitched track, each event held to the owned stretch it was committed
to (an ordered decode per stretch, which is the global ordered decode with that constraint, in time
linear in the recording's length).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from framestamp.runtime.audio import MAX_FLOAT_PEAK, _check_complete, to_model_rate
from framestamp.runtime.decoding import align_word_tracks, decode_events, paced_map
from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import FRAME_SECONDS, HOP_LENGTH, SAMPLE_RATE, audio_frames_for_mel
from framestamp.runtime.pacing import PAUSE
from framestamp.runtime.pacing import WEIGHT as PACE

SAMPLES_PER_FRAME = round(FRAME_SECONDS * SAMPLE_RATE)  # 640: a 40 ms frame
RESAMPLE_MARGIN_SECONDS = 0.1  # read on both sides of a window so the resampler's filter sees real context
SCAN_BLOCK = 1 << 20  # source frames read at once when checking a file
MAX_LOCAL_OCCURRENCES = 16  # a window is asked for at most this many occurrences at once
# A first occurrence over windows: the earliest window whose candidate peaks within this (log intensity) of the
# recording's highest (0.5 of 0.5 / 1 / 2 / 3 on 3-minute recordings in training voices; the first window
# hearing one above a fixed score, 16.3-20, found fewer).
FIRST_WITHIN = 0.5
# A transcript timed by its words asks a window for more words than the speaking rate puts there, and lets
# the ones it does not hold fall past its end (onto frames scored at the SLACK_QUANTILE of each word's own
# track): 1.5x + 2 words, the 0.9 quantile (0.75-0.97 and 1.25-2x measured the same on a tuning recording).
SURPLUS, SURPLUS_WORDS, SLACK_QUANTILE = 1.5, 2, 0.9
ONSET_LEAD = 1  # frames a transcript window starts before the first word it is asked for


@dataclass(frozen=True)
class Window:
    """Frames [start, stop) of the recording go through the model together; [own_start, own_stop) are answered from them."""

    start: int
    stop: int
    own_start: int
    own_stop: int

    @property
    def frames(self) -> int:
        return self.stop - self.start


def plan_windows(frames: int, window: int, overlap: int) -> list[Window]:
    """Windows of ``window`` frames, each starting ``window - overlap`` after the last, covering ``frames`` frames."""
    if not 0 <= overlap < window:
        raise InputError(f"the overlap ({overlap} frames) must be shorter than the window ({window} frames)")
    hop = window - overlap
    starts = [0]
    while starts[-1] + window < frames:
        starts.append(starts[-1] + hop)
    windows = []
    for index, start in enumerate(starts):
        own_start = 0 if index == 0 else start + overlap // 2
        own_stop = frames if index == len(starts) - 1 else starts[index + 1] + overlap // 2
        windows.append(Window(start, min(start + window, frames), own_start, own_stop))
    return windows


def span_windows(frames: int, own: int, context: int, lookahead: int) -> list[Window]:
    """Windows for a bounded-span model: each owns ``own`` frames (the last owns the rest) and starts
    ``context`` frames before them, where the earliest audio its first owned frame's state depends on sits,
    and stops ``lookahead`` frames after them (the head reads that far ahead), so that every owned frame
    scores exactly as in one pass over all ``frames``."""
    if own < 1 or context < 0 or lookahead < 0:
        raise InputError(f"a window owns >= 1 frame with context and look-ahead >= 0, got {own}, {context}, {lookahead}")
    return [Window(max(0, start - context), min(frames, start + own + lookahead), start, min(frames, start + own))
            for start in range(0, frames, own)]


# ------------------------------------------------------------------------------------------ audio
class AudioStream:
    """A recording read a window at a time as 16 kHz mono float32, from a file or from an array.

    A file is checked once, block by block (complete, finite, not silent), and never held whole in
    memory; each window is read with a margin on both sides and resampled on its own.
    """

    def __init__(self, audio, rate: int | None, source: str):
        self.source = source
        if isinstance(audio, (str, Path)):
            import soundfile

            self.path = Path(audio)
            try:
                info = soundfile.info(str(self.path))
            except (RuntimeError, soundfile.LibsndfileError) as error:
                raise InputError(f"{self.path}: cannot be read as audio ({error}); use wav, flac, ogg or another "
                                 "format libsndfile reads") from None
            self.rate, self.source_frames, self.array = int(info.samplerate), int(info.frames), None
        else:
            self.path, self.rate, self.array = None, int(rate), np.asarray(audio)
            self.source_frames = len(self.array)
        self.samples = int(self.source_frames * SAMPLE_RATE // self.rate)  # at the model's rate
        self._checked: float | None = None  # the silence peak the whole stream passed check() with

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def frames(self) -> int:
        return audio_frames_for_mel(self.samples // HOP_LENGTH)

    def check(self, silence_peak: float) -> None:
        """Refuse a file cut short, NaN or out-of-range samples, silence or a bare DC offset, reading block by block
        (once: a stream that passed is not read again)."""
        if self._checked == silence_peak:
            return
        if self.array is not None:
            blocks = (self.array[start:start + SCAN_BLOCK] for start in range(0, len(self.array), SCAN_BLOCK))
        else:
            import soundfile

            _check_complete(self.path)
            blocks = soundfile.blocks(str(self.path), blocksize=SCAN_BLOCK, dtype="float32", always_2d=True)
        peak, low, high, read = 0.0, np.inf, -np.inf, 0
        for block in blocks:
            mono = _mono(block)
            read += len(block)
            if not np.isfinite(mono).all():
                raise InputError(f"{self.source}: contains NaN or infinite samples")
            peak = max(peak, float(np.abs(mono).max()))
            low, high = min(low, float(mono.min())), max(high, float(mono.max()))
        if self.path is not None and read < self.source_frames:
            raise InputError(f"{self.path}: is cut short: its header promises {self.source_frames / self.rate:.2f} s but "
                             f"only {read / self.rate:.2f} s could be decoded; the file is incomplete")
        if peak >= MAX_FLOAT_PEAK:
            raise InputError(f"{self.source}: float samples reach {peak:.3g}, far outside [-1, 1]: integer PCM stored as "
                             "floats? Divide by the full scale (32768 for 16-bit) or pass the integer array as it is")
        if peak < silence_peak:
            raise InputError(f"{self.source}: the audio is silent (peak below -80 dBFS): there is nothing to time")
        if high - low < 2 * silence_peak:
            raise InputError(f"{self.source}: the audio is a constant offset (DC) with no sound on it: there is "
                             "nothing to time")
        self._checked = silence_peak

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) at 16 kHz, mono float32."""
        if self.rate == SAMPLE_RATE:
            return to_model_rate(self._source(start, stop), SAMPLE_RATE, source=self.source)
        margin = int(RESAMPLE_MARGIN_SECONDS * self.rate)
        first = max(0, int(start * self.rate // SAMPLE_RATE) - margin)
        last = min(self.source_frames, -(-stop * self.rate // SAMPLE_RATE) + margin)
        resampled = to_model_rate(self._source(first, last), self.rate, source=self.source)
        offset = int(round(first * SAMPLE_RATE / self.rate))
        piece = resampled[start - offset: stop - offset]
        return np.pad(piece, (0, (stop - start) - len(piece)))

    def _source(self, first: int, last: int) -> np.ndarray:
        if self.array is not None:
            return self.array[first:last]
        import soundfile

        with soundfile.SoundFile(str(self.path)) as handle:
            handle.seek(first)
            return handle.read(last - first, dtype="float32", always_2d=True)


def _mono(block: np.ndarray) -> np.ndarray:
    block = np.asarray(block)
    if block.dtype.kind in "iu":  # PCM: full scale is 2^(bits-1), unsigned PCM offset by it (as to_model_rate reads it)
        info = np.iinfo(block.dtype)
        half_range = (float(info.max) + 1) / 2 if info.min == 0 else -float(info.min)
        block = ((block.astype(np.float64) - (half_range if info.min == 0 else 0.0)) / half_range).astype(np.float32)
    block = block.astype(np.float32, copy=False)
    return block @ np.full(block.shape[1], 1.0 / block.shape[1], np.float32) if block.ndim == 2 else block


# ------------------------------------------------------------------------------------------ questions
# ask(window, local questions) -> head scores (len(questions), window.frames, channels), float64
Ask = Callable[[Window, Sequence], np.ndarray]


@dataclass
class Occurrence:
    """Where the k-th occurrence was found: the window, the local question's track, and every occurrence counted."""

    window: Window
    track: np.ndarray  # (window.frames, channels): the answering question's scores
    found: list[int]  # frames of the occurrences counted, in order (k of them when found)
    complete: bool  # False: the recording ran out before the k-th
    asked: np.ndarray | None = None  # (m, window.frames, channels): the window's local occurrences 1..m, track last


def find_occurrence(windows: Sequence[Window], occurrence: int, ask: Ask) -> Occurrence:
    """The window and local question that answer "the ``occurrence``-th" over the whole recording.

    ``ask(window, [1, 2, ..., m])`` returns the scores for local occurrences 1..m of the window. The first
    occurrence is ``find_first``'s (every window asked).
    """
    if occurrence == 1:
        return find_first(windows, ask)
    found: list[int] = []
    track, window = None, windows[0]
    for window in windows:
        before = sum(frame < window.start for frame in found)
        local = min(occurrence - before, MAX_LOCAL_OCCURRENCES)
        scores = ask(window, list(range(1, local + 1)))
        last = -1
        for number in range(local):
            frame = int(np.argmax(scores[number, :, 0]))
            if frame <= last:
                break  # later occurrences land on or before an earlier one: the window holds no more
            last = frame
            track = scores[number]
            at = window.start + frame
            if window.own_start <= at < window.own_stop and (not found or at > found[-1]):
                found.append(at)
                if len(found) == occurrence:
                    return Occurrence(window, track, found, True)
        track = scores[local - 1]
    return Occurrence(window, track, found, False, scores[:local])


def find_first(windows: Sequence[Window], ask: Ask, within: float = FIRST_WITHIN) -> Occurrence:
    """The window and track that answer "the first occurrence" over the whole recording.

    Every window is asked for its own first occurrence (``ask(window, [1])``), whose track peaks where the
    window's best candidate is. A window without the word still answers somewhere, so the first window is
    not the answer: the earliest window whose candidate lies in its owned stretch and peaks within
    ``within`` of the highest peak over the recording is.
    """
    answers = []
    for window in windows:
        track = ask(window, [1])[0]
        frame = int(np.argmax(track[:, 0]))
        answers.append((window, track, window.start + frame, float(track[frame, 0])))
    best = max(peak for *_, peak in answers)
    window, track, at, _ = next((answer for answer in answers if answer[3] >= best - within
                                 and answer[0].own_start <= answer[2] < answer[0].own_stop),
                                max(answers, key=lambda answer: answer[3]))
    return Occurrence(window, track, [at], True)


@dataclass
class Stretch:
    """One owned stretch of a transcript: its window's track and the words committed to it."""

    window: Window
    track: np.ndarray  # (window.frames, channels); timed by words: (word_count, window.frames, channels), a row a word
    first_word: int
    word_count: int


def align_transcript(windows: Sequence[Window], words: Sequence[str], ask: Ask, objective: str,
                     decoding: str, by_words: bool = False, pace: float = PACE) -> list[Stretch]:
    """Each window asked for the transcript's words it should hold, in order; every word committed to one stretch.

    ``ask(window, [words])`` returns the scores (1, frames, channels) of the transcript question over
    ``words``, or with ``by_words`` the scores (len(words), frames, channels) of each word's question,
    then aligned paced by the words' lengths (weight ``pace``, 0: not paced).
    """
    count, frames = len(words), windows[-1].stop
    committed: list[int] = []  # the frame each word was placed at by the window that owns it, in order
    stretches = []
    for index, window in enumerate(windows):
        last_window = index == len(windows) - 1
        # The words already placed at or after this window's start are heard in it too: asked again, as context.
        first = bisect.bisect_left(committed, window.start)  # committed frames rise: each window's lie after the last's
        if first == count:
            stretches.append(Stretch(window, None, count, 0))
            continue
        if first < len(committed):
            # Start the window at the first word it is asked for, so that it does not open on the tail of a
            # word it is not asked about (which it would take for the first word).
            window = replace(window, start=min(committed[first] - ONSET_LEAD, window.own_start))
        # The model spreads whatever words it is given over the speech it hears (asked for more words than a
        # window holds, it squeezes them all in): ask for as many as the recording's speaking rate puts there.
        held = max(1, round(count * window.frames / frames), len(committed) - first + 1)
        past_end = by_words and decoding == "ordered" and not last_window  # words may fall past the window's end
        if past_end:
            held = int(np.ceil(held * SURPLUS)) + SURPLUS_WORDS
        asked = count - first if last_window else min(count - first, held, window.frames)
        scores = ask(window, list(words[first:first + asked]))
        if past_end:
            onsets = scores[:, :, 0]
            # "not in this window", per word: above most of its own frames, and above any frame by the most the
            # pacing can charge for the gap to it, so a word with nothing to go on in the window is not paced into it
            beyond = np.quantile(onsets, SLACK_QUANTILE, axis=1, keepdims=True) + pace * PAUSE
            extended = np.concatenate([onsets, np.repeat(beyond, 2 * asked, axis=1)], axis=1)
            times = paced_map(extended, words[first:first + asked], FRAME_SECONDS, pace)
        else:
            times = (align_word_tracks(scores, objective, decoding, words=words[first:first + asked], pace=pace)[0] if by_words
                     else decode_events(scores[0, :, 0], asked, objective, decoding))
        placed = window.start + np.floor(times / FRAME_SECONDS).astype(np.int64)
        context, new_words = len(committed) - first, 0  # the rows of words placed before: asked as context
        for frame in placed[context:]:
            if frame >= window.own_stop and not last_window:
                break
            committed.append(max(int(frame), window.own_start))
            new_words += 1
        track = scores[context:context + new_words] if by_words else scores[0]
        stretches.append(Stretch(window, track, len(committed) - new_words, new_words))
    return stretches
