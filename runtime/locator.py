"""Timestamps from an exported artifact: one forward pass per batch, decoding in NumPy.

    from framestamp.runtime import Locator
    locator = Locator("out/fp32")                       # an artifact folder from `framestamp export`
    locator.word("clip.wav", "doctor", occurrence=2).times
    locator.transcript("clip.wav", "the doctor came late").times

No torch, no transformers: ONNX Runtime (or TensorRT engines), tokenizers, soundfile, soxr, NumPy.
A Locator is safe to share between threads: sessions are thread-safe and nothing else is mutated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from framestamp.runtime.artifact import GraphSessions, TOKENIZER, read_manifest
from framestamp.runtime.audio import load_audio, to_model_rate
from framestamp.runtime.decoding import check_decoding, decode_events, event_confidence
from framestamp.runtime.errors import InputError
from framestamp.runtime.features import FeatureSettings, log_mel
from framestamp.runtime.frames import audio_frames_for_mel
from framestamp.runtime.prompts import (PAD_TOKEN, check_free_text, normalize_transcript, normalize_word, ordinal, pad_prompts,
                                        prompt_ids, render_prompt, special_token_id)

SILENCE_PEAK = 1e-4  # -80 dBFS: below this a clip holds nothing to time


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

    def as_dict(self) -> dict:
        record = {"task": self.task, "question": self.question, "times": [round(t, 3) for t in self.times],
                  "confidence": [round(c, 3) for c in self.confidence], "duration": round(self.duration, 3)}
        if self.words is not None:
            record["words"] = [{"word": w, "start": round(t, 3), "confidence": round(c, 3)}
                               for w, t, c in zip(self.words, self.times, self.confidence)]
        record["warnings"] = list(self.warnings)
        if self.log_intensity is not None:
            record["log_intensity"] = [round(float(v), 4) for v in self.log_intensity]
        return record

    def confident(self, min_confidence: float) -> "Timestamps":
        """Only the times (and words) whose confidence is at least ``min_confidence``."""
        keep = [c >= min_confidence for c in self.confidence]
        return replace(self, times=tuple(t for t, k in zip(self.times, keep) if k),
                       confidence=tuple(c for c in self.confidence if c >= min_confidence),
                       words=None if self.words is None else tuple(w for w, k in zip(self.words, keep) if k))


class Locator:
    """Answers timestamp questions with an artifact's graphs.

    ``backend`` is "onnxruntime" (``providers`` as ONNX Runtime names them, CPU by default) or
    "tensorrt" (engines built by ``framestamp build-engine`` in the artifact's engines/ folder).
    ``max_seconds`` / ``max_prompt_tokens`` refuse longer inputs; engines set them from their profile.
    ``decoding`` is "ordered" (a transcript's words on distinct, separated frames, chosen jointly) or
    "posterior" (the paper's per-event posterior mode); for one event they agree.
    """

    def __init__(self, artifact: str | Path, backend: str = "onnxruntime", providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int | None = None, precision: str = "fp16", batch_size: int = 8,
                 max_seconds: float | None = None, max_prompt_tokens: int | None = None, verify: bool = True,
                 decoding: str = "ordered"):
        from tokenizers import Tokenizer

        self.decoding = check_decoding(decoding)
        self.folder = Path(artifact)
        self.manifest = read_manifest(self.folder, verify=verify)
        self.backend = backend
        if backend == "onnxruntime":
            self.graphs = GraphSessions.open(self.folder, providers, threads, verify=False)
            limits = {}
        elif backend == "tensorrt":
            from framestamp.runtime.engines import EngineGraphs

            self.graphs = EngineGraphs(self.folder, precision)
            limits = self.graphs.limits
        else:
            raise InputError(f"backend must be 'onnxruntime' or 'tensorrt', got {backend!r}")
        self.engine_limits = bool(limits)
        self.max_batch = limits.get("max_batch")
        self.batch_size = min(batch_size, self.max_batch or batch_size)
        encoder_limit = (self.manifest["limits"].get("max_mel_frames") or 0) / 100  # Qwen2-Audio: 30 s
        ceilings = [seconds for seconds in (max_seconds, limits.get("max_seconds"), encoder_limit) if seconds]
        self.max_seconds = min(ceilings) if ceilings else None
        self.max_prompt_tokens = max_prompt_tokens or limits.get("max_prompt_tokens")
        self.tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER))
        self.pad_id = special_token_id(self.tokenizer, PAD_TOKEN)
        self.settings = FeatureSettings.from_json(self.manifest["features"])
        self.objective = self.manifest["head"]["objective"]
        if self.objective == "tokens":
            raise InputError(f"{artifact}: a token-baseline model has no frame head to time with")
        self.frame_seconds = self.manifest["frame_seconds"]
        trained_on = self.manifest.get("trained_on") or {}
        self.event_labels = trained_on.get("event_labels")

    # ------------------------------------------------------------------------------ questions
    def word(self, audio, word: str, occurrence: int = 1, transcript: str | None = None, **options) -> Timestamps:
        """When the ``occurrence``-th ``word`` starts. With ``transcript``, checks it occurs that often.

        Words are compared and asked about as training spelled them (``normalize_word``): "Dog," is "dog".
        """
        if transcript is not None:
            asked = _one_word(word)
            if not isinstance(transcript, str):
                raise InputError(f"transcript must be a string, got {type(transcript).__name__}")
            found = [said for _, said in normalize_transcript(transcript) if said == asked]
            if not found:
                raise InputError(f"the word {asked!r} is not in the transcript; ask about one of its words")
            if isinstance(occurrence, int) and occurrence > len(found):
                raise InputError(f"{asked!r} occurs {len(found)} time(s) in the transcript; "
                                 f"cannot ask for the {ordinal(occurrence)}")
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
        """Answer ``queries`` in batches of ``batch_size`` (one forward pass each); results in input order."""
        prepared = [self._prepare(query) for query in queries]
        order = sorted(range(len(prepared)), key=lambda i: prepared[i][1].shape[1])  # similar lengths together
        results: list[Timestamps | None] = [None] * len(prepared)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for index, result in zip(chunk, self._forward([prepared[i] for i in chunk])):
                results[index] = result
        return results

    def _prepare(self, query: Query):
        question, count, words = self._question(query)
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
        return query, mel, ids, question, count, len(samples) / self.settings.sample_rate, words

    def _question(self, query: Query) -> tuple[str, int, tuple[str, ...] | None]:
        """The question text as training wrote it, how many times it asks for, and a transcript's words."""
        if query.task == "raw":
            if not isinstance(query.question, str) or not query.question.strip():
                raise InputError("a raw question needs its text")
            check_free_text("question", query.question)
            question, words = query.question, None
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
        return question, count, words

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
            samples = load_audio(query.audio)
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
        return samples

    @staticmethod
    def _name(query: Query) -> str:
        return str(query.audio) if isinstance(query.audio, (str, Path)) else "audio array"

    def _forward(self, prepared) -> list[Timestamps]:
        mels = [mel for _, mel, *_ in prepared]
        mel_lengths = np.array([mel.shape[1] for mel in mels], dtype=np.int64)
        batch = np.zeros((len(mels), mels[0].shape[0], int(mel_lengths.max())), dtype=np.float32)
        for row, mel in enumerate(mels):
            batch[row, :, : mel.shape[1]] = mel  # zero padding, as training's batches
        input_ids, attention_mask, audio_start = pad_prompts([ids for _, _, ids, *_ in prepared], self.pad_id)
        audio, frame_counts = self.graphs.encode(batch, mel_lengths)
        scores = self.graphs.scores(input_ids, attention_mask, audio_start, audio, frame_counts)[..., 0]
        results = []
        for row, (query, _, _, question, count, seconds, words) in enumerate(prepared):
            frame_scores = scores[row, : int(frame_counts[row])].astype(np.float64)
            times = decode_events(frame_scores, count, self.objective, self.decoding, self.frame_seconds)
            confidence = event_confidence(frame_scores, times, self.objective, self.frame_seconds)
            results.append(Timestamps(task=query.task, question=question, times=tuple(float(t) for t in times),
                                      duration=seconds, words=words, frame_seconds=self.frame_seconds,
                                      confidence=tuple(float(c) for c in confidence),
                                      log_intensity=frame_scores.astype(np.float32) if query.with_intensity else None))
        return results


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
