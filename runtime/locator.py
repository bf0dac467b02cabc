"""Timestamps from an exported artifact: one forward pass per batch, decoding in NumPy.

    from framestamp.runtime import Locator
    locator = Locator("out/fp32")                       # an artifact folder from `framestamp export`
    locator = Locator("shipped")                        # the shipped model, from any folder (the default)
    locator.word("clip.wav", "doctor", occurrence=2).times
    locator.transcript("clip.wav", "the doctor came late").times

No torch, no transformers: ONNX Runtime (or TensorRT engines), tokenizers, soundfile, soxr, NumPy.
A Locator is safe to share between threads: sessions are thread-safe and nothing else is mutated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from framestamp.runtime import caveats
from framestamp.runtime.artifact import (MANIFEST, SHIPPED, TOKENIZER, ArtifactError, GraphSessions, artifact_folder,
                                         folder_version, read_manifest)
from framestamp.runtime.audio import MAX_RATE, MIN_RATE, SILENCE_PEAK, load_audio, to_model_rate
from framestamp.runtime.chain import (CHAIN_SECONDS, CHAINED_TASKS, chain_occurrences, check_chain_seconds, joint_occurrences,
                                     link_audio)
from framestamp.runtime.decoding import (OCCURRENCES, after_earlier, align_word_tracks, aligned_confidence, check_decoding,
                                        check_pace, check_transcript_by, decode_events, ended_tasks, event_confidence,
                                        every_occurrence, heard_occurrences, interval_ends_for, kth_of_every,
                                        transcript_rows)
from framestamp.runtime.errors import InputError
from framestamp.runtime.features import FeatureSettings, log_mel
from framestamp.runtime.frames import audio_frames_for_mel
from framestamp.runtime.merging import MergingGraphs, check_ratio
from framestamp.runtime.pacing import WEIGHT as PACE
from framestamp.runtime.prompts import (AUDIO_END, AUDIO_START, AUDIO_TOKEN, PAD_TOKEN, check_free_text, normalize_transcript, normalize_word, ordinal, pad_prompts,
                                        known_words, prompt_ids, render_prompt, special_token_id,
                                        transcript_word_questions)
from framestamp.runtime.windows import (SAMPLES_PER_FRAME, AudioStream, Window, align_transcript, find_occurrence,
                                        plan_windows, span_windows)

DEFAULT_MAX_PROMPT_TOKENS = 2048  # a transcript of ~1,000 words: far past any training prompt
AUDIO_FRAMES_PER_SECOND = 25
ATTENTION_COPIES = 6  # see attention_bytes
FRAME_OBJECTIVES = ("poisson", "interpolated", "binary")
MAX_COUNT_CHECK = 16  # the k-th occurrence is checked against at most this many earlier ones
# Recordings longer than a window are answered a window at a time; chosen on held-out 8-30 s clips
# (benchmarks/results/cpu/long-audio-accuracy.md).
DEFAULT_WINDOW_SECONDS = 20.0
# The default windows: audio no longer than the clips the model was trained on in one pass, as trained (and as
# `framestamp evaluate` scores it); longer audio in DEFAULT_WINDOW_SECONDS windows. Transcripts of 8-30 s held-out
# clips: 99.4% within 40 ms either way; of spontaneous real speech (three 25-27 s clips): 36.0% against 24.7% in
# 20 s windows (benchmarks/results/cpu/long-audio-auto/, real-speech/mfa/long-audio-accuracy.md).
AUTO_WINDOWS = "auto"
DEFAULT_OVERLAP_SECONDS = 4.0
ENCODE_SLICE_SECONDS = 60  # a bounded-span model's long clip is encoded this much at a time (whole 2 s chunks)


@dataclass(frozen=True)
class Query:
    """One question about one clip. ``audio`` is a path, or an array with ``rate``."""

    audio: object
    task: str  # word | speaker | event | transcript | raw
    fields: dict = field(default_factory=dict)  # the task's prompt fields (runtime/prompts.py)
    count: int = 1  # how many times to return
    rate: int | None = None
    with_intensity: bool = False
    question: str | None = None  # task "raw": the question text itself


@dataclass(frozen=True)
class Timestamps:
    """What a question returns: sorted times in seconds, how sure the model is of each, and for a
    transcript the words they belong to (as the caller wrote them).

    ``confidence[i]`` is the model's probability that ``times[i]`` is within 40 ms of the truth:
    the posterior mass there for a Poisson head (runtime.decoding.event_confidence), the frame's
    probability for a binary head. ``warnings`` say when an answer is probably a guess.
    """

    task: str
    question: str
    times: tuple[float, ...]
    duration: float  # seconds of audio
    words: tuple[str, ...] | None = None
    log_intensity: np.ndarray | None = field(default=None, repr=False)  # per 40 ms frame, when asked for
    frame_seconds: float = 0.04
    confidence: tuple[float, ...] = ()
    warnings: tuple[str, ...] = ()
    ends: tuple[float, ...] = ()  # where each interval ends, from a head with an inside channel; else empty

    def as_dict(self) -> dict:
        record = {"task": self.task, "question": self.question, "times": [round(t, 3) for t in self.times],
                  "confidence": [round(c, 3) for c in self.confidence], "duration": round(self.duration, 3)}
        if self.ends:
            record["ends"] = [round(e, 3) for e in self.ends]
        if self.words is not None:
            record["words"] = [{"word": w, "start": round(t, 3), "confidence": round(c, 3)}
                               for w, t, c in zip(self.words, self.times, self.confidence)]
            for entry, end in zip(record["words"], self.ends):
                entry["end"] = round(end, 3)
        record["warnings"] = list(self.warnings)
        if self.log_intensity is not None:
            record["log_intensity"] = [round(float(v), 4) for v in self.log_intensity]
        return record

    def confident(self, min_confidence: float) -> "Timestamps":
        """Only the times (and words) whose confidence is at least ``min_confidence``."""
        keep = [c >= min_confidence for c in self.confidence]
        return replace(self, times=tuple(t for t, k in zip(self.times, keep) if k),
                       ends=tuple(e for e, k in zip(self.ends, keep) if k),
                       confidence=tuple(c for c in self.confidence if c >= min_confidence),
                       words=None if self.words is None else tuple(w for w, k in zip(self.words, keep) if k))


class Locator:
    """Answers timestamp questions with an artifact's graphs.

    ``artifact`` is a folder written by ``framestamp export``, or "shipped" (the default): the shipped model.
    ``backend`` is "onnxruntime" (``providers`` as ONNX Runtime names them, CPU by default) or
    "tensorrt" (engines built by ``framestamp build-engine`` in the artifact's engines/ folder).
    ``max_seconds`` / ``max_prompt_tokens`` refuse longer inputs; engines set them from their profile.
    ``decoding`` is "ordered" (a transcript's words on distinct, separated frames, chosen jointly) or
    "posterior" (the paper's per-event posterior mode); for one event they agree.
    ``transcript_by`` is "words" (each word of a transcript asked as its own question, the k-th time
    the transcript says it, and the answers aligned in order: ``align_word_tracks``; a word outside the
    artifact's training vocabulary takes the mean of its own and the transcript question's tracks) or "question"
    (the paper's one transcript question, one track for all its words; fewer decoder rows, less accurate).
    Timed by its words, a transcript is paced by them too: consecutive starts as far apart as the words'
    lengths predict at one speaking rate (runtime/pacing.py), with weight ``pace`` (0: not paced).
    ``merge`` merges that share of the audio tokens away before the decoder (training-free, runtime/
    merging.py; ``merge_kind`` "local" or the "global" control): a faster decoder pass, less accurate.
    Audio longer than ``window_seconds`` is answered a window at a time, ``overlap_seconds`` shared by
    neighbours, the answers stitched over the whole recording (runtime/windows.py); None: one pass. The
    default, "auto", answers audio no longer than the clips the model was trained on in one pass, as
    trained, and longer audio in 20 s windows.
    A k-th occurrence of a word or event whose joint answers (in one pass, or over the first window of a
    longer recording) pass ``chain_seconds`` is found from there on as a chain of first occurrences, each
    after the previous one's end, a window at a time (runtime/chain.py; None or 0: the joint answer
    always; not with ``merge``, whose point is fewer decoder steps).
    """

    def __init__(self, artifact: str | Path = SHIPPED, backend: str = "onnxruntime", providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int | None = None, precision: str | None = None, batch_size: int = 8,
                 max_seconds: float | None = None, max_prompt_tokens: int | None = None, verify: bool = True,
                 decoding: str = "ordered", count_check: bool = True,
                 merge: float | None = None, merge_kind: str = "local", transcript_by: str = "words",
                 pace: float = PACE, window_seconds: float | str | None = AUTO_WINDOWS, overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
                 chain_seconds: float | None = CHAIN_SECONDS):
        self.decoding = check_decoding(decoding)
        self.chain_seconds = check_chain_seconds(chain_seconds)
        self.transcript_by = check_transcript_by(transcript_by)
        self.pace = check_pace(pace)
        _check_options(backend, providers, threads, precision, batch_size, max_seconds, max_prompt_tokens)
        self.windows_past_training = window_seconds == AUTO_WINDOWS
        if self.windows_past_training:
            window_seconds = DEFAULT_WINDOW_SECONDS
        _check_window(window_seconds, overlap_seconds)
        self.folder = artifact_folder(artifact)
        version = folder_version(self.folder)
        self.manifest = read_manifest(self.folder, verify=verify)
        self.backend = backend
        if backend == "onnxruntime":
            self.graphs = GraphSessions.open(self.folder, providers, threads, verify=False)
            limits = {}
        else:
            from framestamp.runtime.engines import EngineGraphs

            self.graphs = EngineGraphs(self.folder, precision or "fp16")
            limits = self.graphs.limits
        self.engine_limits = bool(limits)
        self.max_batch = limits.get("max_batch")
        self.batch_size = min(batch_size, self.max_batch or batch_size)
        model_limits = self.manifest["limits"]
        self.max_positions = model_limits.get("max_positions")  # the decoder's position range
        self.attention_heads = model_limits.get("attention_heads")  # sizes the memory estimate
        self.max_prompt_tokens = (max_prompt_tokens or limits.get("max_prompt_tokens")
                                  or min(DEFAULT_MAX_PROMPT_TOKENS, (self.max_positions or 4 * DEFAULT_MAX_PROMPT_TOKENS) // 4))
        encoder_limit = (model_limits.get("max_mel_frames") or 0) / 100  # Qwen2-Audio: 30 s
        positions_limit = ((self.max_positions - self.max_prompt_tokens - 8) / AUDIO_FRAMES_PER_SECOND
                           if self.max_positions else None)
        # A bounded span (the decoder's audio attends back over span frames): a recording longer than a window
        # is answered in windows that give exactly the one-pass answer (``_span_rows``), each hearing the
        # context its frames depend on (the decoder's layers times the span, plus the head's look-ahead after).
        head = self.manifest["head"]
        span = int(head.get("span") or 0)
        self.lookahead = int(head.get("lookahead") or 0)
        self.span_context = None
        if span and window_seconds and merge is None and self.manifest["backbone"].get("kind") == "omni":
            layers = model_limits.get("decoder_layers")
            if not layers:
                raise ArtifactError(f"{self.folder / MANIFEST}: a bounded-span model's artifact must record its "
                                    "decoder layers (limits.decoder_layers); re-export the artifact")
            self.span_context = layers * (span - 1)
            self.span_seconds = span / AUDIO_FRAMES_PER_SECOND
            trained_on = self.manifest.get("trained_on") or {}
            shifted = trained_on.get("position_shift_seconds")
            # Audio is as far from the question as it was in training up to the shift it trained with.
            positions_limit = shifted + (trained_on.get("max_seconds") or 0) if shifted else positions_limit
            # Each window owns window_seconds, or a third of its context if longer: what a window hears (context
            # + owned) sets its attention's memory, squared, and its decoder work per owned frame; at a third the
            # peak over 60 minutes was 1.1 GiB against 2.0 owning the whole context, for 20-25% more time
            # (benchmarks/results/cpu/span-probe). Within an engine's profile, what its context and look-ahead leave.
            if limits.get("max_seconds"):
                self.span_own = round(limits["max_seconds"] * AUDIO_FRAMES_PER_SECOND) - self.span_context - self.lookahead
            else:
                self.span_own = max(round(window_seconds * AUDIO_FRAMES_PER_SECOND), -(-self.span_context // 3))
            if self.span_own < 1:
                self.span_context = None  # an engine too short for the span's context: windows as for any model
        pass_limit = None if self.span_context is not None else limits.get("max_seconds")  # else per window
        ceilings = [seconds for seconds in (max_seconds, pass_limit, encoder_limit, positions_limit) if seconds]
        self.max_seconds = min(ceilings) if ceilings else None
        self.tokenizer = _open_tokenizer(self.folder / TOKENIZER)
        self.pad_id = special_token_id(self.tokenizer, PAD_TOKEN)
        if folder_version(self.folder) != version:  # an export swapped a new one in: what was read may mix both
            raise ArtifactError(f"{self.folder}: was replaced (a new export?) while it was being opened; open it again")
        try:
            self.settings = FeatureSettings.from_json(self.manifest["features"])
        except InputError as error:
            raise ArtifactError(f"{self.folder / MANIFEST}: {error}; re-export the artifact") from None
        self.objective = self.manifest["head"]["objective"]
        if self.objective == "tokens":
            raise InputError(f"{artifact}: a token-baseline model has no frame head to time with")
        if self.objective not in FRAME_OBJECTIVES:
            raise ArtifactError(f"{self.folder / MANIFEST}: unknown head objective {self.objective!r}; expected one of "
                                f"{', '.join(FRAME_OBJECTIVES)}")
        # "every": a k-th occurrence question's track marks every occurrence, and decoding counts them
        self.occurrences = self.manifest["head"].get("occurrences", "asked")
        if self.occurrences not in OCCURRENCES:
            raise ArtifactError(f"{self.folder / MANIFEST}: unknown head occurrences {self.occurrences!r}; expected one "
                                f"of {', '.join(OCCURRENCES)}")
        self.frame_seconds = self.manifest["frame_seconds"]
        channels = list(self.manifest["channels"])
        self.channels = tuple(channels)
        self.ended_tasks = ended_tasks(self.channels)  # the tasks whose answers carry ends (an end or inside channel)
        trained_on = self.manifest.get("trained_on") or {}
        self.event_labels = trained_on.get("event_labels")
        # None where the artifact does not record them: then there is no such warning.
        self.max_trained_seconds = trained_on.get("max_seconds")
        self.vocabulary = frozenset(trained_on["vocabulary"]) if trained_on.get("vocabulary") else None
        self.absent_below = (self.manifest.get("warning_thresholds") or {}).get("absent_below") or {}
        self.count_check = bool(count_check)
        self.merge = None if merge is None else check_ratio(merge)  # share of audio tokens merged away
        if self.merge:  # prompts and scores stay one per 40 ms frame; the decoder reads merged tokens
            self.graphs = MergingGraphs(self.graphs, self.merge, merge_kind, self.pad_id)
        # Longer recordings are answered a window at a time (runtime/windows.py); None: one pass, up to max_seconds.
        self.recording_max_seconds = max_seconds
        self.window_seconds = min([window_seconds] + [s for s in (limits.get("max_seconds"), encoder_limit) if s]) \
            if window_seconds else None
        self.overlap_seconds = min(overlap_seconds, self.window_seconds / 2) if window_seconds else 0.0

    # ------------------------------------------------------------------------------ questions
    def word(self, audio, word: str, occurrence: int = 1, transcript: str | None = None, **options) -> Timestamps:
        """When the ``occurrence``-th ``word`` starts. With ``transcript`` (what the audio says), checks it
        occurs that often and, timing transcripts by their words (the default), answers from the aligned
        transcript: the order of the words settles which word and which occurrence is which. The
        answer's track (``with_intensity``) is then the transcript's.

        Words are compared and asked about as training spelled them (``normalize_word``): "Dog," is "dog".
        """
        if transcript is not None:
            asked = _one_word(word)
            if not isinstance(transcript, str):
                raise InputError(f"transcript must be a string, got {type(transcript).__name__}")
            positions = [index for index, (_, said) in enumerate(normalize_transcript(transcript)) if said == asked]
            if not positions:
                raise InputError(f"the word {asked!r} is not in the transcript; ask about one of its words")
            if isinstance(occurrence, int) and occurrence > len(positions):
                raise InputError(f"{asked!r} occurs {len(positions)} time(s) in the transcript; "
                                 f"cannot ask for the {ordinal(occurrence)}")
            if (self.transcript_by == "words" and isinstance(occurrence, int) and not isinstance(occurrence, bool)
                    and occurrence >= 1):
                aligned = self.transcript(audio, transcript, **options)
                index = positions[occurrence - 1]
                return replace(aligned, task="word", question=render_prompt("word", {"word": asked, "occurrence": occurrence}),
                               words=None, times=aligned.times[index:index + 1],
                               confidence=aligned.confidence[index:index + 1], ends=aligned.ends[index:index + 1])
        return self.run([Query(audio, "word", {"word": word, "occurrence": occurrence}, **options)])[0]

    def speaker(self, audio, k: int = 1, **options) -> Timestamps:
        """When the ``k``-th speaker starts speaking."""
        return self.run([Query(audio, "speaker", {"occurrence": k}, **options)])[0]

    def event(self, audio, label: str, occurrence: int = 1, **options) -> Timestamps:
        """When the ``occurrence``-th ``label`` event starts."""
        return self.run([Query(audio, "event", {"event": label, "occurrence": occurrence}, **options)])[0]

    def transcript(self, audio, text: str, **options) -> Timestamps:
        """The start of every word of ``text`` (whitespace-separated; punctuation-only tokens are not words)."""
        return self.run([Query(audio, "transcript", {"transcript": text}, **options)])[0]

    def ask(self, audio, question: str, count: int = 1, **options) -> Timestamps:
        """A question of your own wording and how many times it should return."""
        return self.run([Query(audio, "raw", count=count, question=question, **options)])[0]

    # ------------------------------------------------------------------------------ batches
    def run(self, queries: Sequence[Query]) -> list[Timestamps]:
        """Answer ``queries`` in batches of ``batch_size`` (one forward pass each); results in input order.

        A k-th occurrence question also asks for occurrences 1..k-1 in the same passes (``count_check``).
        With ordered decoding (the default) the k-th is decoded jointly with them: the most probable
        frames f_1 < ... < f_k, each scored on its own question's track (``ordered_map`` with a row per
        event), so it cannot land on or before an earlier occurrence. Their own answers warn when the
        k-th lands where an earlier question answered. A transcript timed by its words
        (``transcript_by="words"``) asks its words' questions in the same passes instead of its own.
        """
        if isinstance(queries, (Query, str, bytes)) or not isinstance(queries, Sequence):
            raise InputError(f"run() takes a list of Query objects, e.g. run([query]); got {type(queries).__name__}")
        long = {index: stream for index, stream in ((i, self._long_recording(q)) for i, q in enumerate(queries)) if stream}
        if long:
            short = [i for i in range(len(queries)) if i not in long]
            answers = dict(zip(short, self.run([queries[i] for i in short]) if short else []))
            answers.update({index: self._long_answer(queries[index], stream) for index, stream in long.items()})
            return [answers[index] for index in range(len(queries))]
        asked = [self._prepare(query) for query in queries]
        words = [self._transcript_words(one) for one in asked]  # a transcript's word questions, or none
        earlier = [self._earlier_occurrences(one) for one in asked]  # asked alongside, for the count check
        everything = asked + [one for group in words + earlier for one in group]
        # A transcript timed by its words needs its own question's pass only for words the model was not trained on.
        by_words = [one.query.task == "transcript" and self.transcript_by == "words" for one in asked]
        needed = [i for i in range(len(everything))
                  if i >= len(asked) or not by_words[i] or not all(known_words(asked[i].fields["transcript"].split(),
                                                                               self.vocabulary))]
        scores: list[np.ndarray | None] = [None] * len(everything)
        for chunk in self._batches([everything[i] for i in needed]):
            for i, rows in zip(chunk, self._forward([everything[needed[i]] for i in chunk])):
                scores[needed[i]] = rows
        results, position, word_rows = [], len(asked), []
        for group in words:
            word_rows.append(scores[position:position + len(group)])
            position += len(group)
        for index, (one, group) in enumerate(zip(asked, earlier)):
            if by_words[index]:  # aligned on its words' rows (a new word's mixed with the transcript question's), paced
                known = known_words(one.fields["transcript"].split(), self.vocabulary)
                answer, peak = self._aligned(one, transcript_rows(known, word_rows[index], scores[index]))
                results.append(self._with_warnings(one, answer, peak, {}))
                continue
            earlier_rows = scores[position:position + len(group)]
            before = {other.occurrence: self._decode(other, rows)[0] for other, rows in zip(group, earlier_rows)}
            position += len(group)
            complete = group and len(group) == one.occurrence - 1  # all of 1..k-1 were asked: decode the k-th with them
            answer, peak = self._answer(one, scores[index], earlier_rows if complete else ())
            if complete and self._chains(one):
                chained = self._chained(one, [*earlier_rows, scores[index]], answer)
                if chained is not answer:  # the chain's own warning says when the k-th is probably not there,
                    answer, before = chained, {}  # and whether the word is heard at all is the 1st's track's to say
                    peak = float(earlier_rows[0][:, 0].max())
            alone = self._decode(one, scores[index])[0] if group else answer.times[0]
            results.append(self._with_warnings(one, answer, peak, before, alone))
        return results

    # ------------------------------------------------------------------------------ long recordings
    def _long_recording(self, query) -> AudioStream | None:
        """A stream of the query's audio when it is longer than a window; None otherwise (also for input
        the single pass refuses, so that its error message is the one the user sees)."""
        if not self.window_seconds or not isinstance(query, Query):
            return None
        audio, rate = query.audio, query.rate
        if isinstance(audio, (str, Path)):
            try:
                if rate is not None or not Path(audio).is_file():
                    return None
                stream = AudioStream(audio, None, str(audio))
            except (InputError, OSError):  # e.g. a name too long for the system: load_audio says so
                return None
        elif (isinstance(audio, np.ndarray) and audio.ndim in (1, 2) and audio.size and audio.dtype.kind in "iuf"
              and isinstance(rate, (int, np.integer)) and not isinstance(rate, bool) and MIN_RATE <= rate <= MAX_RATE):
            stream = AudioStream(audio, int(rate), "audio array")
        else:
            return None
        if self._trained_pass(stream.seconds):
            return None  # no longer than the clips the model was trained on: one pass, as trained
        if query.task != "transcript" and self._span_pass(stream.seconds):
            return None  # answered as in one pass, its rows computed a window at a time (``_span_rows``)
        return stream if stream.seconds > self.window_seconds else None

    def _trained_pass(self, seconds: float) -> bool:
        """With the default windows ("auto"), whether ``seconds`` of audio is no longer than the clips the model
        was trained on (its artifact's ``trained_on.max_seconds``) and one pass takes it: then every question is
        answered in one pass, as in training and as ``framestamp evaluate`` scores it."""
        return (self.windows_past_training and self.max_trained_seconds is not None
                and seconds <= self.max_trained_seconds and (not self.max_seconds or seconds <= self.max_seconds))

    def _span_pass(self, seconds: float) -> bool:
        """Whether a bounded-span model answers ``seconds`` of audio as one pass would (its rows computed a
        window at a time): up to as far from the question as training shifted its audio, plus its clips.
        A longer recording gets the windows every model gets, each heard as a recording of its own."""
        return self.span_context is not None and (not self.max_seconds or seconds <= self.max_seconds)

    def _long_answer(self, query: Query, stream: AudioStream) -> Timestamps:
        """One question over a recording longer than a window: a k-th occurrence of a word or event decoded
        jointly over the first window and, once that passes ``chain_seconds``, chained over the whole
        recording (``_chained``); otherwise (and where no chain is needed) answered window by window."""
        fields = query.fields if isinstance(query.fields, dict) else {}
        occurrence = fields.get("occurrence")
        if (not self._may_chain(query.task) or query.count != 1 or isinstance(occurrence, bool)
                or not isinstance(occurrence, int) or not 2 <= occurrence <= MAX_COUNT_CHECK + 1):
            return self._windowed(query, stream)
        stream.check(SILENCE_PEAK)
        rate = self.settings.sample_rate
        first_window = stream.read(0, min(int(round(self.window_seconds * rate)), stream.samples))
        try:
            one = self._prepare(replace(query, audio=first_window, rate=rate))
        except InputError:  # e.g. a silent first window: the windows answer, or say what is wrong
            return self._windowed(query, stream)
        group = self._earlier_occurrences(one)
        rows = self._forward([*group, one])
        answer, _ = self._answer(one, rows[-1], rows[:-1])
        # The links hear the rest of the recording: read whole, and only if a link is asked.
        chained = self._chained(one, rows, answer, lambda: stream.read(0, stream.samples), stream.frames)
        if chained is answer:  # every joint answer stands: the windows answer as they always do
            return self._windowed(query, stream)
        # The chain's own warning says when the k-th is probably not there, not the first window's tracks, and
        # whether the word is heard at all is the 1st occurrence's track's to say.
        return replace(self._with_warnings(one, chained, float(rows[0][:, 0].max()), {}), duration=stream.seconds)

    def _windowed(self, query: Query, stream: AudioStream) -> Timestamps:
        """One question over a recording longer than a window (runtime/windows.py says how each keeps its meaning)."""
        name = self._name(query)
        if query.task == "raw":
            raise InputError(f"{name}: a question of your own wording cannot keep its meaning across windows; ask it of "
                             f"at most {self.window_seconds:g} s of audio, or ask a word, event, speaker or transcript")
        question, count, words, fields = self._question(query)
        if query.task != "transcript" and count != 1:
            raise InputError(f"{name}: over a recording longer than {self.window_seconds:g} s, a {query.task} question "
                             "returns one time (its occurrence); ask once per occurrence")
        if self.recording_max_seconds and stream.seconds > self.recording_max_seconds:
            raise InputError(f"{name}: {stream.seconds:.1f} s of audio is longer than the "
                             f"{self.recording_max_seconds:g} s this model takes; split the audio")
        stream.check(SILENCE_PEAK)
        frames = stream.frames
        windows = plan_windows(frames, int(round(self.window_seconds / self.frame_seconds)),
                               int(round(self.overlap_seconds / self.frame_seconds)))
        encoded: dict = {}  # the current window's encoder output, reused when a window is asked again

        def ask(window: Window, questions: list[str]) -> np.ndarray:
            return self._window_scores(stream, window, questions, encoded, name)

        # The model hears one window at a time: only a window longer than its training clips (by more than a frame) is warned about.
        heard = self.window_seconds if self.window_seconds > (self.max_trained_seconds or 0) + self.frame_seconds else 0.0
        one = _Asked(query, fields, question, count, words, np.zeros((0, 0), np.float32), frames, (), heard,
                     fields.get("occurrence") if query.task in ("word", "event", "speaker") else None)
        stitched = np.full((frames, len(self.manifest["channels"])), np.nan, dtype=np.float64)
        times, confidence, missing, fewer = [], [], None, None
        word_ends = None  # a transcript timed by its words: each word's end from its own row
        if query.task == "transcript":
            said, by_words = fields["transcript"].split(), self.transcript_by == "words"

            def ask_part(window: Window, part: list[str]) -> np.ndarray:
                whole = [render_prompt("transcript", {"transcript": " ".join(part)})]
                if not by_words:
                    return ask(window, whole)
                known = known_words(part, self.vocabulary)
                questions = [render_prompt("word", fields) for fields in transcript_word_questions(part)]
                scores = ask(window, questions + ([] if all(known) else whole))
                return transcript_rows(known, scores[:len(questions)], None if all(known) else scores[-1])

            stretches = align_transcript(windows, said, ask_part, self.objective, self.decoding, by_words, self.pace)
            word_ends = [] if by_words and query.task in self.ended_tasks else None
            for stretch in stretches:
                if not stretch.word_count:
                    continue
                offset = stretch.window.own_start * self.frame_seconds
                if by_words:
                    owned = self._own(stitched, stretch.window, _words_track(stretch.track, self.objective))
                    skip = stretch.window.own_start - stretch.window.start
                    rows = stretch.track[:, skip:skip + len(owned)]
                    part = said[stretch.first_word:stretch.first_word + stretch.word_count]
                    found, found_ends = align_word_tracks(rows, self.objective, self.decoding, self.channels,
                                                          self.frame_seconds, part, self.pace)
                    confidence += list(self._word_confidence(rows[:, :, 0], found, part))
                    if word_ends is not None:
                        word_ends += list(found_ends + offset)
                else:
                    owned = self._own(stitched, stretch.window, stretch.track)
                    found = decode_events(owned[:, 0], stretch.word_count, self.objective, self.decoding,
                                          self.frame_seconds)
                    confidence += list(event_confidence(owned[:, 0], found, self.objective, self.frame_seconds))
                times += list(found + offset)
        elif self.occurrences == "every":  # every window's track of every occurrence, stitched, counted once
            for window in windows:
                self._own(stitched, window, ask(window, [question])[0])
            found, found_confidence, fewer = self._kth_heard(one, stitched[:, 0])
            times, confidence = list(found), list(found_confidence)
        else:
            def ask_occurrences(window: Window, numbers: list[int]) -> np.ndarray:
                return ask(window, [render_prompt(query.task, {**fields, "occurrence": n}) for n in numbers])

            occurrence = find_occurrence(windows, fields["occurrence"], ask_occurrences)
            owned = self._own(stitched, occurrence.window, occurrence.track)
            asked = occurrence.asked
            if not occurrence.complete and self.decoding == "ordered" and asked is not None \
                    and 1 < len(asked) <= len(owned):
                # Fewer than k heard: placed as one pass places it, after the window's earlier occurrences, jointly.
                skip = occurrence.window.own_start - occurrence.window.start
                found = after_earlier(asked[:-1, skip:skip + len(owned), 0], owned[:, 0], self.frame_seconds)
            else:
                found = decode_events(owned[:, 0], 1, self.objective, self.decoding, self.frame_seconds)
            confidence = list(event_confidence(owned[:, 0], found, self.objective, self.frame_seconds))
            times = list(found + occurrence.window.own_start * self.frame_seconds)
            if not occurrence.complete:
                missing = {number + 1: frame * self.frame_seconds for number, frame in enumerate(occurrence.found)}
        ends = ()
        if word_ends is not None:
            ends = tuple(float(end) for end in word_ends)
        elif query.task in self.ended_tasks:
            unheard = -1e4  # frames no window owns: outside anything, never an end
            found_ends = interval_ends_for(query.task, np.nan_to_num(stitched, nan=unheard), self.channels, times,
                                           self.frame_seconds)
            ends = tuple(float(end) for end in found_ends)
        scores = stitched[:, 0]
        floor = float(np.nanmin(scores))
        answer = Timestamps(task=query.task, question=question, times=tuple(float(t) for t in times),
                            duration=stream.seconds, words=words, frame_seconds=self.frame_seconds,
                            confidence=tuple(float(c) for c in confidence), ends=ends,
                            log_intensity=np.nan_to_num(scores, nan=floor).astype(np.float32) if query.with_intensity else None,
                            warnings=(fewer,) if fewer else ())
        warned = self._with_warnings(one, answer, float(np.nanmax(scores)), {})
        if missing is not None:  # the recording ran out before the k-th: say how many were found
            warned = replace(warned, warnings=warned.warnings + (caveats.occurrence_not_found(
                query.task, fields.get("word") or fields.get("event"), fields["occurrence"], missing),))
        return warned

    @staticmethod
    def _own(stitched: np.ndarray, window: Window, track: np.ndarray) -> np.ndarray:
        """Write the window's owned stretch of ``track`` into ``stitched``; return that stretch."""
        owned = track[window.own_start - window.start: window.own_stop - window.start]
        stitched[window.own_start: window.own_start + len(owned)] = owned
        return owned

    def _window_scores(self, stream: AudioStream, window: Window, questions: list[str], encoded: dict,
                       name: str) -> np.ndarray:
        """Head scores (questions, window frames, channels) of one window, the encoder run once per window."""
        if encoded.get("window") != window:
            # The last window reads to the recording's end: the samples short of a whole frame still shape its last frames.
            stop = stream.samples if window.stop >= stream.frames else window.stop * SAMPLES_PER_FRAME
            samples = stream.read(window.start * SAMPLES_PER_FRAME, stop)
            mel = log_mel(samples, self.settings, source=name)
            audio, frame_counts = self.graphs.encode(mel[None], np.array([mel.shape[1]], dtype=np.int64))
            encoded.update(window=window, audio=audio, frame_counts=frame_counts)
        audio, frame_counts = encoded["audio"], encoded["frame_counts"]
        frames = min(int(frame_counts[0]), window.frames)
        scores = []
        for start in range(0, len(questions), self.batch_size):
            prompts = [prompt_ids(self.tokenizer, question, int(frame_counts[0]))
                       for question in questions[start:start + self.batch_size]]
            text_tokens = len(prompts[-1][0]) - int(frame_counts[0]) - 2
            if self.max_prompt_tokens and text_tokens > self.max_prompt_tokens:
                raise InputError(f"{name}: a window's question is {text_tokens} tokens, more than the "
                                 f"{self.max_prompt_tokens} allowed (max_prompt_tokens)")
            self._check_fits(max(len(ids) for ids, _ in prompts), window.frames * self.frame_seconds, name)
            input_ids, attention_mask, audio_start = pad_prompts(prompts, self.pad_id)
            rows = len(prompts)
            scores.append(self.graphs.scores(input_ids, attention_mask, audio_start, np.repeat(audio, rows, axis=0),
                                             np.repeat(frame_counts, rows))[:, :frames])
        scores = np.concatenate(scores).astype(np.float64)
        if frames < window.frames:  # the encoder may give a frame less than the grid at the recording's end
            scores = np.pad(scores, ((0, 0), (0, window.frames - frames), (0, 0)), mode="edge")
        return scores

    def _transcript_words(self, one: "_Asked") -> list["_Asked"]:
        """For a transcript timed by its words, the question of each of its words, on the same audio (the
        k-th time the transcript says it); [] for any other question."""
        if one.query.task != "transcript" or self.transcript_by != "words":
            return []
        questions = []
        for fields in transcript_word_questions(one.fields["transcript"].split()):
            question = render_prompt("word", fields)
            questions.append(replace(one, query=replace(one.query, task="word", fields=fields, with_intensity=False),
                                     fields=fields, question=question, count=1, words=None,
                                     ids=prompt_ids(self.tokenizer, question, one.frames),
                                     occurrence=fields["occurrence"]))
        return questions

    def _earlier_occurrences(self, one: "_Asked") -> list["_Asked"]:
        """For the k-th occurrence of something, the questions for occurrences 1..k-1 on the same audio."""
        if (not self.count_check or one.occurrence is None or one.occurrence < 2 or one.count != 1
                or self.occurrences == "every"):  # one track holds them all
            return []
        group = []
        for number in range(1, min(one.occurrence, MAX_COUNT_CHECK + 1)):
            fields = {**one.fields, "occurrence": number}
            question = render_prompt(one.query.task, fields)
            ids = prompt_ids(self.tokenizer, question, one.frames)
            group.append(replace(one, fields=fields, question=question, ids=ids, occurrence=number,
                                 query=replace(one.query, with_intensity=False)))
        return group

    def _with_warnings(self, one: "_Asked", answer: Timestamps, peak_score: float, earlier: dict[int, float],
                       alone: float | None = None) -> Timestamps:
        """``answer`` with its caveats; ``alone``: where the k-th question's own track puts it (decoded
        without the earlier occurrences), checked against ``earlier``, their own answers."""
        task, fields = one.query.task, one.fields
        # A bounded-span model's decoder layers each attend back over at most its span, and training moved the audio
        # as far from the question as its one pass reaches: what it hears at once is the span, not the recording.
        within_span = (self._span_pass(one.seconds) and self.max_trained_seconds is not None
                       and self.span_seconds <= self.max_trained_seconds + self.frame_seconds)
        warnings = [None if within_span else caveats.longer_than_trained(one.seconds, self.max_trained_seconds)]
        if task == "word":
            warnings.append(caveats.outside_vocabulary([fields["word"]], self.vocabulary))
        elif task == "transcript":
            warnings.append(caveats.outside_vocabulary(fields["transcript"].split(), self.vocabulary))
        if earlier:
            thing = {"word": f"{fields.get('word')!r}", "event": f"{fields.get('event')!r} event",
                     "speaker": "speaker"}[task]
            warnings.append(caveats.occurrence_unsupported(task, thing, one.occurrence,
                                                           answer.times[0] if alone is None else alone, earlier))
        if task in ("word", "event", "speaker"):
            thing = {"word": f"the word {fields.get('word')!r}", "event": f"the {fields.get('event')!r} event",
                     "speaker": f"a {ordinal(one.occurrence)} speaker"}[task]
            warnings.append(caveats.probably_absent(thing, peak_score, self.absent_below.get(task)))
        return replace(answer, warnings=tuple(answer.warnings) + tuple(w for w in warnings if w))

    def _prepare(self, query: Query) -> "_Asked":
        if not isinstance(query, Query):
            raise InputError(f"run() takes a list of Query objects, got {type(query).__name__} in it")
        question, count, words, fields = self._question(query)
        samples = self._samples(query)
        mel = log_mel(samples, self.settings, source=self._name(query))
        frames = audio_frames_for_mel(mel.shape[1])
        ids = prompt_ids(self.tokenizer, question, frames)
        text_tokens = len(ids[0]) - frames - 2
        if self.max_prompt_tokens and text_tokens > self.max_prompt_tokens:
            raise InputError(f"the question is {text_tokens} tokens, more than the {self.max_prompt_tokens} "
                             + ("this engine's profile takes; rebuild with `framestamp build-engine --max-prompt-tokens "
                                f"{text_tokens}`" if self.engine_limits else "allowed (max_prompt_tokens)"))
        if count > frames:
            raise InputError(f"asked for {count} times in {frames} frames of audio: a clip of "
                             f"{len(samples) / self.settings.sample_rate:.2f} s holds at most one time per 40 ms frame")
        if not self._span_windowed(frames):  # else each window checks
            self._check_fits(len(ids[0]), len(samples) / self.settings.sample_rate, self._name(query))
        return _Asked(query, fields, question, count, words, mel, frames, ids, len(samples) / self.settings.sample_rate,
                      fields.get("occurrence") if query.task in ("word", "event", "speaker") else None)

    def _check_fits(self, positions: int, seconds: float, name: str) -> None:
        """Refuse, before the graphs allocate anything, an example past the decoder's positions or this machine's memory."""
        if self.max_positions and positions > self.max_positions:
            raise InputError(f"{name}: {seconds:.1f} s of audio and the question make {positions} positions, more than "
                             f"the {self.max_positions} the model's decoder takes; split the audio")
        needed, free = attention_bytes(positions, self.attention_heads), available_memory()
        if free is not None and needed > free:
            raise InputError(f"{name}: {seconds:.1f} s of audio needs about {needed / 2**30:.1f} GiB of memory for the "
                             f"decoder's attention, and {free / 2**30:.1f} GiB is free: split the audio into shorter pieces")

    def _batches(self, asked: list["_Asked"]) -> list[list[int]]:
        """Indices of ``asked`` in batches of similar length, at most ``batch_size`` each and small enough for memory."""
        order = sorted(range(len(asked)), key=lambda i: asked[i].mel.shape[1])
        free = available_memory() if self.attention_heads else None
        batches: list[list[int]] = []
        for index in order:
            if batches and len(batches[-1]) < self.batch_size:
                longest = max(len(asked[i].ids[0]) for i in batches[-1] + [index])
                if free is None or (len(batches[-1]) + 1) * attention_bytes(longest, self.attention_heads) <= free:
                    batches[-1].append(index)
                    continue
            batches.append([index])
        return batches

    def _question(self, query: Query) -> tuple[str, int, tuple[str, ...] | None, dict]:
        """The question text as training wrote it, how many times it asks for, a transcript's words as the
        caller wrote them, and the prompt fields as asked."""
        if query.task == "raw":
            if not isinstance(query.question, str) or not query.question.strip():
                raise InputError("a raw question needs its text")
            check_free_text("question", query.question)
            question, words, fields = query.question, None, {}
        else:
            fields, words = self._training_fields(query)
            question = render_prompt(query.task, fields)
        if isinstance(query.count, bool) or not isinstance(query.count, (int, np.integer)) or query.count < 1:
            raise InputError(f"count must be an integer >= 1, got {query.count!r}")
        count = int(query.count)
        if words is not None:
            if count not in (1, len(words)):
                raise InputError(f"a transcript of {len(words)} words returns {len(words)} times; count {count} "
                                 "does not fit (leave it out)")
            count = len(words)
        return question, count, words, fields

    def _training_fields(self, query: Query) -> tuple[dict, tuple[str, ...] | None]:
        """The query's prompt fields spelled as in training, and for a transcript the words as the caller wrote them."""
        if not isinstance(query.fields, dict):
            raise InputError(f"Query.fields must be a dict of the task's prompt fields, got {type(query.fields).__name__}")
        fields, words = dict(query.fields), None
        if query.task == "word" and isinstance(fields.get("word"), str):
            fields["word"] = _one_word(fields["word"])
        elif query.task == "transcript" and isinstance(fields.get("transcript"), str):
            check_free_text("transcript", fields["transcript"])
            pairs = normalize_transcript(fields["transcript"])
            if not pairs:
                raise InputError(f"the transcript {fields['transcript']!r} holds no words")
            words = tuple(written for written, _ in pairs)
            fields["transcript"] = " ".join(said for _, said in pairs)
        elif query.task == "event" and self.event_labels and isinstance(fields.get("event"), str):
            label = fields["event"].strip()
            known = {name.lower(): name for name in self.event_labels}
            if label.lower() not in known:
                check_free_text("event", label)
                raise InputError(f"this model was not trained on the event {label!r}; it knows: "
                                 + ", ".join(self.event_labels))
            fields["event"] = known[label.lower()]  # labels are names: "dog" asks about "Dog"
        return fields, words

    def _samples(self, query: Query) -> np.ndarray:
        name = self._name(query)
        if isinstance(query.audio, (str, Path)):
            if query.rate is not None:
                raise InputError(f"{name}: rate is for arrays; a file carries its own")
            samples = load_audio(query.audio, None if self.engine_limits else self.max_seconds)
        elif isinstance(query.audio, np.ndarray):
            if query.rate is None:
                raise InputError("an audio array needs its sample rate: pass rate=")
            samples = to_model_rate(query.audio, query.rate, source=name)
        else:
            raise InputError(f"audio must be a file path or a NumPy array, got {type(query.audio).__name__}")
        seconds = len(samples) / self.settings.sample_rate
        if len(samples) < self.settings.hop_length * 4:
            raise InputError(f"{name}: {seconds * 1000:.1f} ms of audio is too short to time (at least 40 ms)")
        if self.max_seconds and seconds > self.max_seconds:
            fix = (f"rebuild the engine with `framestamp build-engine --max-seconds {int(np.ceil(seconds))}`"
                   if self.engine_limits else "split the audio")
            raise InputError(f"{name}: {seconds:.1f} s of audio is longer than the {self.max_seconds:g} s "
                             f"{'this engine' if self.engine_limits else 'this model'} takes; {fix}")
        if float(np.abs(samples).max()) < SILENCE_PEAK:
            raise InputError(f"{name}: the audio is silent (peak below -80 dBFS): there is nothing to time")
        if float(samples.max() - samples.min()) < 2 * SILENCE_PEAK:
            raise InputError(f"{name}: the audio is a constant offset (DC) with no sound on it: there is nothing to time")
        return samples

    @staticmethod
    def _name(query: Query) -> str:
        return str(query.audio) if isinstance(query.audio, (str, Path)) else "audio array"

    def _forward(self, asked: list["_Asked"]) -> list[np.ndarray]:
        """One forward pass over ``asked``: each one's head scores, (frames, channels) float64. The encoder
        hears each distinct clip once, however many questions ask about it (a count check's earlier
        occurrences, several questions about one file). A bounded-span model's clips longer than a window
        are computed a window at a time (``_span_rows``), to the same scores."""
        long = [i for i, one in enumerate(asked) if self._span_windowed(one.frames)]
        if long:
            rows: list = [None] * len(asked)
            short = [i for i in range(len(asked)) if i not in long]
            for i, found in zip(short, self._forward([asked[i] for i in short]) if short else []):
                rows[i] = found
            for i, found in zip(long, self._span_rows([asked[i] for i in long])):
                rows[i] = found
            return rows
        clips, clip_of = [], [0] * len(asked)
        for row, group in enumerate(_same_clips(asked)):
            clips.append(asked[group[0]].mel)
            for index in group:
                clip_of[index] = row
        mel_lengths = np.array([mel.shape[1] for mel in clips], dtype=np.int64)
        batch = np.zeros((len(clips), clips[0].shape[0], int(mel_lengths.max())), dtype=np.float32)
        for row, mel in enumerate(clips):
            batch[row, :, : mel.shape[1]] = mel  # zero padding, as training's batches
        input_ids, attention_mask, audio_start = pad_prompts([one.ids for one in asked], self.pad_id)
        audio, frame_counts = self.graphs.encode(batch, mel_lengths)
        audio, frame_counts = np.asarray(audio)[clip_of], np.asarray(frame_counts)[clip_of]
        all_channels = self.graphs.scores(input_ids, attention_mask, audio_start, audio, frame_counts)
        return [all_channels[row, : int(frame_counts[row])].astype(np.float64) for row in range(len(asked))]

    def _span_windowed(self, frames: int) -> bool:
        """Whether a clip of ``frames`` is computed a window at a time (a bounded-span model, longer than a window)."""
        return self.span_context is not None and frames > self.span_own + self.span_context

    def _span_rows(self, asked: list["_Asked"]) -> list[np.ndarray]:
        """``_forward``'s head scores for a bounded-span model, a window at a time: the audio embeddings in
        slices of whole encoder chunks (the encoder attends inside 2 s chunks), then windows that each own
        ``span_own`` frames and hear the ``span_context`` frames before them (all a frame's state depends on)
        and the head's look-ahead after, their audio at the positions it has in the whole clip."""
        results: list = [None] * len(asked)
        for clip in _same_clips(asked):
            mel = asked[clip[0]].mel
            audio = self._encode_slices(mel)
            frames = audio.shape[0]
            tracks = np.empty((len(clip), frames, len(self.channels)))
            for window in span_windows(frames, self.span_own, self.span_context, self.lookahead):
                piece = audio[window.start:window.stop][None]
                positions = np.arange(window.start, window.stop, dtype=np.float32)[None]
                for first in range(0, len(clip), self.batch_size):
                    batch = clip[first:first + self.batch_size]
                    prompts = [prompt_ids(self.tokenizer, asked[i].question, window.frames) for i in batch]
                    self._check_fits(max(len(ids) for ids, _ in prompts), window.frames * self.frame_seconds,
                                     self._name(asked[batch[0]].query))
                    input_ids, attention_mask, audio_start = pad_prompts(prompts, self.pad_id)
                    n = len(batch)
                    scores = self.graphs.scores(input_ids, attention_mask, audio_start, np.repeat(piece, n, axis=0),
                                                np.full(n, window.frames, dtype=np.int64),
                                                np.repeat(positions, n, axis=0))
                    own = slice(window.own_start - window.start, window.own_stop - window.start)
                    tracks[first:first + n, window.own_start:window.own_stop] = scores[:, own]
            for row, i in enumerate(clip):
                results[i] = tracks[row]
        return results

    def _encode_slices(self, mel: np.ndarray) -> np.ndarray:
        """The audio embeddings (frames, width) of one clip's mel, encoded ``ENCODE_SLICE_SECONDS`` at a time:
        slices of whole 2 s chunks, which the chunked encoder answers exactly as it does the whole clip."""
        step = ENCODE_SLICE_SECONDS * 100  # mel frames, a whole number of 200-frame chunks
        pieces = []
        for start in range(0, mel.shape[1], step):
            part = mel[:, start:start + step]
            audio, counts = self.graphs.encode(part[None], np.array([part.shape[1]], dtype=np.int64))
            pieces.append(np.asarray(audio)[0, : int(counts[0])])
        return np.concatenate(pieces)

    def _aligned(self, one: "_Asked", rows: np.ndarray) -> tuple[Timestamps, float]:
        """A transcript's answer from its words' head scores (words, frames, channels) (``transcript_rows``),
        and the peak of their onset tracks. Its track (``with_intensity``): the words' summed intensities."""
        words = one.fields["transcript"].split()
        times, ends = align_word_tracks(rows, self.objective, self.decoding, self.channels, self.frame_seconds,
                                        words, self.pace)
        onsets = rows[:, :, 0]
        confidence = self._word_confidence(onsets, times, words)
        track = _words_track(onsets, self.objective)
        answer = Timestamps(task="transcript", question=one.question, times=tuple(float(t) for t in times),
                            duration=one.seconds, words=one.words, frame_seconds=self.frame_seconds,
                            confidence=tuple(float(c) for c in confidence),
                            ends=() if ends is None else tuple(float(end) for end in ends),
                            log_intensity=track.astype(np.float32) if one.query.with_intensity else None)
        return answer, float(onsets.max())

    def _word_confidence(self, onsets: np.ndarray, times, words) -> np.ndarray:
        """Confidence of ``words`` aligned from their own tracks (words, frames): for log-intensity heads each
        word's marginal among the (paced) ordered placements (``aligned_confidence``), a binary head's own probability."""
        if self.objective == "binary":
            return np.array([event_confidence(track, [time], self.objective, self.frame_seconds)[0]
                             for track, time in zip(onsets, times)])
        return aligned_confidence(onsets, times, self.frame_seconds, words=words,
                                  pace=self.pace if self.decoding == "ordered" else 0.0)

    def _decode(self, one: "_Asked", rows: np.ndarray) -> np.ndarray:
        """``one``'s times from its own head scores (frames, channels) alone."""
        if self._counts_every(one):
            return kth_of_every(rows[:, 0], one.occurrence, self.frame_seconds)
        return decode_events(rows[:, 0], one.count, self.objective, self.decoding, self.frame_seconds)

    def _counts_every(self, one: "_Asked") -> bool:
        """Whether ``one`` is a k-th occurrence question whose track marks every occurrence."""
        return self.occurrences == "every" and one.occurrence is not None and one.count == 1

    def _kth_heard(self, one: "_Asked", track: np.ndarray) -> tuple[np.ndarray, np.ndarray, str | None]:
        """The k-th of every occurrence on ``track``: its time (1,), its confidence as the k-th among them all
        (1,), and a warning listing those heard when the track holds fewer than k (else None)."""
        k = one.occurrence
        heard = every_occurrence(track, k, self.frame_seconds)
        confidence = event_confidence(track, heard, self.objective, self.frame_seconds)[k - 1:k]
        count = heard_occurrences(track)
        fewer = None if count >= k else caveats.occurrence_not_found(
            one.query.task, one.fields.get("word") or one.fields.get("event"), k,
            {number + 1: float(time) for number, time in enumerate(heard[:count])})
        return heard[k - 1:k], confidence, fewer

    def _may_chain(self, task: str) -> bool:
        """Whether a k-th occurrence question of ``task`` may be answered by a chain of first occurrences."""
        return (self.chain_seconds is not None and task in CHAINED_TASKS and self.decoding == "ordered"
                and not self.merge and self.occurrences != "every")

    def _chains(self, one: "_Asked") -> bool:
        """Whether ``one`` (a k-th occurrence asked with 1..k-1, in one pass) may be chained: long enough to."""
        return self._may_chain(one.query.task) and one.seconds > self.chain_seconds

    def _chained(self, one: "_Asked", rows: list[np.ndarray], answer: Timestamps, read=None,
                 frames: int | None = None) -> Timestamps:
        """``answer`` (the joint one) unless occurrences 1..k's joint answers (``rows``: their head scores)
        pass ``chain_seconds``: then the k-th found as a chain of first occurrences from there on
        (runtime/chain.py), its time, end, confidence and track those of the chain's last link. The links
        hear what ``read()`` returns, read once when the first link is asked (``frames`` frames; default:
        ``one``'s own audio)."""
        joint = joint_occurrences(rows, one.query.task, self.objective, self.channels, self.frame_seconds)
        samples = functools.cache(read or (lambda: self._samples(one.query)))
        frames = one.frames if frames is None else frames
        rate = self.settings.sample_rate
        first = {**one.query.fields, "occurrence": 1}
        heard_from = self.absent_below.get(one.query.task)

        def ask_first(offset: float):
            """The first occurrence from ``offset`` on: a window at a time (one pass each), the first window
            whose track peaks where answers that exist do (``absent_below``); none such: the first window's.
            (A bounded-span model's link is one pass over the rest, where its one pass reaches.)"""
            part = link_audio(samples(), offset, rate)
            if part is None:
                return None
            # A bounded-span model hears the rest in one pass (its windows give exactly that pass's answer).
            one_pass = not self.window_seconds or self._span_pass(len(part) / rate)
            piece = len(part) if one_pass else int(round(self.window_seconds * rate))
            step = max(piece - int(round(self.overlap_seconds * rate)), 1)
            found = None
            for start in range(0, len(part), step):
                heard = link_audio(part[start:start + piece], 0.0, rate)
                if heard is None:
                    continue
                link = self.run([Query(heard, one.query.task, first, rate=rate, with_intensity=True)])[0]
                at = offset + start / rate
                answered = (link.times[0] + at, link.ends[0] + at if link.ends else None, (at, link, offset))
                found = found or answered
                if heard_from is None or float(np.max(link.log_intensity)) >= heard_from:
                    return answered
                if start + piece >= len(part):
                    break
            return found

        index, links = chain_occurrences(joint, ask_first, self.chain_seconds)
        if index is None:
            return answer
        thing = {"word": f"the word {one.fields.get('word')!r}", "event": f"the {one.fields.get('event')!r} event"}
        warnings = []
        for number, (_, _, (_, link, offset)) in enumerate(links, start=index + 1):
            absent = caveats.no_later_occurrence(thing[one.query.task], number, offset,
                                                 float(np.max(link.log_intensity)), heard_from)
            if absent:
                warnings.append(absent)
                break
        start, end, (at, link, _) = links[-1]
        track = None
        if one.query.with_intensity:  # the last link's track where it heard the audio; its floor before
            track = np.full(frames, link.log_intensity.min(), np.float32)
            skip = min(int(round(at / self.frame_seconds)), frames)
            track[skip:skip + len(link.log_intensity)] = link.log_intensity[:frames - skip]
        return replace(answer, times=(start,), ends=() if end is None else (end,), confidence=link.confidence,
                       log_intensity=track, warnings=tuple(answer.warnings) + tuple(warnings))

    def _answer(self, one: "_Asked", rows: np.ndarray, earlier: Sequence[np.ndarray] = ()) -> tuple[Timestamps, float]:
        """``one``'s answer from its head scores (frames, channels), and the peak of its onset track.
        ``earlier``: the scores of occurrences 1..k-1 of a k-th occurrence question, decoded jointly."""
        frame_scores = rows[:, 0]
        fewer = None
        if self._counts_every(one):
            times, confidence, fewer = self._kth_heard(one, frame_scores)
        else:
            if earlier and self.decoding == "ordered":
                times = after_earlier([previous[:, 0] for previous in earlier], frame_scores, self.frame_seconds)
            else:
                times = self._decode(one, rows)
            confidence = event_confidence(frame_scores, times, self.objective, self.frame_seconds)
        ends = ()
        if one.query.task in self.ended_tasks:
            ends = tuple(float(end) for end in interval_ends_for(one.query.task, rows, self.channels, times,
                                                                 self.frame_seconds))
        answer = Timestamps(task=one.query.task, question=one.question, times=tuple(float(t) for t in times),
                            duration=one.seconds, words=one.words, frame_seconds=self.frame_seconds,
                            confidence=tuple(float(c) for c in confidence), ends=ends,
                            log_intensity=frame_scores.astype(np.float32) if one.query.with_intensity else None,
                            warnings=(fewer,) if fewer else ())
        return answer, float(frame_scores.max())


@dataclass(frozen=True)
class _Asked:
    """One query made ready for the graphs: its question as training wrote it, features and prompt ids."""

    query: Query
    fields: dict  # prompt fields as asked (spelled as in training)
    question: str
    count: int
    words: tuple[str, ...] | None  # a transcript's words as the caller wrote them
    mel: np.ndarray = field(repr=False)
    frames: int = 0
    ids: tuple = field(default=(), repr=False)  # (prompt ids, audio start)
    seconds: float = 0.0
    occurrence: int | None = None  # the k of a k-th occurrence (or k-th speaker) question


def _same_clips(asked: list["_Asked"]) -> list[list[int]]:
    """Indices of ``asked`` grouped by the clip they ask about: the same mel array (a count check's
    questions) or equal values (one file asked twice)."""
    groups: list[list[int]] = []
    for index, one in enumerate(asked):
        mel = one.mel
        group = next((group for group in groups if asked[group[0]].mel is mel or (
            asked[group[0]].mel.shape == mel.shape and np.array_equal(asked[group[0]].mel, mel))), None)
        if group is None:
            groups.append([index])
        else:
            group.append(index)
    return groups


def _words_track(rows: np.ndarray, objective: str) -> np.ndarray:
    """One track for the words of a transcript from their own rows (words, frames, ...): the log of their summed
    intensities (the superposed process), or a binary head's most probable word per frame."""
    return rows.max(axis=0) if objective == "binary" else np.logaddexp.reduce(rows, axis=0)


def _one_word(word) -> str:
    """``word`` spelled as training spelled it; refuses several words, or none."""
    if not isinstance(word, str):
        raise InputError(f"the word must be a string, got {type(word).__name__}")
    check_free_text("word", word)
    spelled = normalize_word(word)
    if not spelled:
        raise InputError(f"{word!r} holds no word (punctuation only); ask about one word")
    if len(spelled.split()) > 1:
        raise InputError(f"{word!r} is {len(spelled.split())} words; ask about one word (its --occurrence), "
                         "or give them all as a transcript")
    return spelled


def _check_window(window_seconds, overlap_seconds) -> None:
    for name, value in (("window_seconds", window_seconds), ("overlap_seconds", overlap_seconds)):
        if value is None and name == "window_seconds":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0 or (
                name == "window_seconds" and value <= 0):
            other = " (or None: one pass, or 'auto')" if name == "window_seconds" else ""
            raise InputError(f"{name} must be a {'positive' if name == 'window_seconds' else 'non-negative'} number of "
                             f"seconds{other}, got {value!r}")
    if window_seconds is not None and overlap_seconds >= window_seconds:
        raise InputError(f"overlap_seconds ({overlap_seconds:g}) must be shorter than window_seconds ({window_seconds:g})")


def _check_options(backend, providers, threads, precision, batch_size, max_seconds, max_prompt_tokens) -> None:
    """Refuse Locator options that cannot work, or that would do nothing, before opening anything."""
    if backend not in ("onnxruntime", "tensorrt"):
        raise InputError(f"backend must be 'onnxruntime' or 'tensorrt', got {backend!r}")
    if precision is not None and backend == "onnxruntime":
        raise InputError("precision picks TensorRT engines (backend='tensorrt'); ONNX Runtime runs the artifact at the "
                         "precision it was exported with: choose the artifact instead")
    if precision is not None and precision not in ("fp16", "int8"):
        raise InputError(f"precision must be 'fp16' or 'int8' (the engines `framestamp build-engine` builds), got {precision!r}")
    if isinstance(providers, str) or not isinstance(providers, Sequence) or not providers or not all(
            isinstance(name, str) and name for name in providers):
        raise InputError(f"providers must be a non-empty list of ONNX Runtime provider names, got {providers!r}")
    for name, value in (("batch_size", batch_size), ("threads", threads), ("max_prompt_tokens", max_prompt_tokens)):
        if (value is not None or name == "batch_size") and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))
                                    or not np.isfinite(max_seconds) or max_seconds <= 0):
        raise InputError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")


def _open_tokenizer(path: Path):
    from tokenizers import Tokenizer

    if not path.is_file():
        raise ArtifactError(f"{path}: missing; re-export the artifact")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # noqa: BLE001 (tokenizers raises a bare Exception for a file it cannot parse)
        raise ArtifactError(f"{path}: not a tokenizer tokenizers can read ({str(error).splitlines()[0][:200]}); "
                            "re-export the artifact") from None
    for token in (PAD_TOKEN, AUDIO_START, AUDIO_TOKEN, AUDIO_END):
        special_token_id(tokenizer, token)
    return tokenizer


def available_memory() -> int | None:
    """Bytes this process may still allocate: the smaller of the system's available memory and the
    cgroup's remaining limit, where they can be read (Linux); None elsewhere."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            candidates.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):
        pass
    return min(candidates) if candidates else None


def attention_bytes(positions: int, heads: int | None) -> int:
    """Peak memory one example of ``positions`` tokens needs in the decoder: its attention scores.

    ONNX Runtime holds several (positions x positions) float32 score matrices per head at once; the
    shipped model peaked at ~6 x heads x positions^2 x 4 bytes (1.9 GB at 180 s, 20 GB at 10 minutes).
    """
    return ATTENTION_COPIES * (heads or 0) * positions * positions * 4
