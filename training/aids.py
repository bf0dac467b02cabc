"""Training aids: extra losses that speed up learning *which* word, and never change what is exported.

The timestamp losses teach identity slowly: a word question rewards one frame against all others,
so the model hears only about the asked word, once per example. The word-identity aid labels every
frame of every spoken word in the clip with that word's tokens and asks the audio embeddings (or the
decoder's final states at the audio frames) to predict them through the language model's own,
tied token embeddings:

    logits[frame] = state[frame] . embed_tokens^T        (the LM's input embedding table)

so audio frames of 'kitchen' are pulled towards the embedding of the token 'kitchen' that the
question holds, which is what the decoder must match when it reads the question before the audio.
Nothing new is learned outside the backbone: no extra weights, so the exported graphs are unchanged.

Labels come from the manifest itself: a clip's transcript question (task "transcript" with ``ends``)
lists every word with its start and end, so any corpus whose loader writes transcript lines (the
synthetic words, LibriSpeech aligned by MFA) supplies them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import FRAME_SECONDS

IGNORE = -100  # cross-entropy's ignore_index: frames outside any word
WHERE = ("audio", "decoder")


@dataclass
class Aids:
    word_identity: float = 0.0  # weight of the frame-level word-identity loss (0: off)
    word_identity_at: str = "audio"  # audio: the encoder's embeddings; decoder: final states at audio frames

    def __post_init__(self):
        if self.word_identity < 0:
            raise InputError(f"word_identity weight must be >= 0, got {self.word_identity}")
        if self.word_identity_at not in WHERE:
            raise InputError(f"word_identity_at must be one of {', '.join(WHERE)}, got {self.word_identity_at!r}")

    @property
    def active(self) -> bool:
        return self.word_identity > 0

    def to_json(self) -> dict:
        return asdict(self)


def clip_word_spans(examples: Iterable) -> dict[str, tuple[tuple[str, float, float], ...]]:
    """audio path -> ((word, start, end), ...) from each clip's transcript question with ends."""
    spans = {}
    for example in examples:
        if example.task != "transcript" or example.ends is None or example.audio is None:
            continue
        words = example.prompt["transcript"].split()
        if len(words) == len(example.times):
            spans[example.audio] = tuple(zip(words, example.times, example.ends))
    return spans


class WordFrameLabels:
    """Per audio frame, the token id of the word being spoken there (IGNORE outside words).

    A word of several tokens is split evenly in time among its tokens, in order. Tokens are those
    of the word as the word question spells it (no leading space).
    """

    def __init__(self, spans: dict, tokenizer):
        self.spans = spans
        self.tokenizer = tokenizer
        self._tokens: dict[str, list[int]] = {}

    def tokens(self, word: str) -> list[int]:
        if word not in self._tokens:
            self._tokens[word] = self.tokenizer.encode(word, add_special_tokens=False).ids
        return self._tokens[word]

    def __call__(self, example, num_frames: int) -> np.ndarray:
        labels = np.full(num_frames, IGNORE, dtype=np.int64)
        centres = (np.arange(num_frames) + 0.5) * FRAME_SECONDS
        for word, start, end in self.spans.get(example.audio, ()):
            tokens = self.tokens(word)
            if not tokens or end <= start:
                continue
            piece = (end - start) / len(tokens)
            inside = (centres >= start) & (centres < end)
            which = np.minimum(((centres[inside] - start) / piece).astype(np.int64), len(tokens) - 1)
            labels[inside] = np.asarray(tokens, dtype=np.int64)[which]
        return labels

    def covers(self, example) -> bool:
        return example.audio in self.spans
