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

The spelling aid asks the same audio embeddings to spell what is said: a CTC loss over the letters
of the clip's words, in order, with each letter's class the tied embedding of that letter's own
token and the blank the audio placeholder's (a token the decoder never reads: audio replaces it):

    log p(class | frame) = log_softmax(state[frame] . embed_tokens[blank, a, ..., z]^T)

Words are what the question spells; hearing letters is what a word the model never heard needs.
No extra weights either (at 25 frames a second a clip's letters fit: at most 0.92 per frame in
the shipped model's training clips, with a blank between doubled letters). Measured from stage 22 at
weights 0.3 and 1.0 it moved no held-out set beyond noise (README, stage 23): an option, not the recipe.

Labels come from the manifest itself: a clip's transcript question (task "transcript" with ``ends``)
lists every word with its start and end, so any corpus whose loader writes transcript lines (the
synthetic words, LibriSpeech aligned by MFA) supplies them.
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import FRAME_SECONDS
from framestamp.runtime.prompts import special_token_id

IGNORE = -100  # cross-entropy's ignore_index: frames outside any word
WHERE = ("audio", "decoder")
LETTERS = string.ascii_lowercase
BLANK = "<|AUDIO|>"  # the spelling aid's blank: the audio placeholder, whose embedding no prompt reads


@dataclass
class Aids:
    word_identity: float = 0.0  # weight of the frame-level word-identity loss (0: off)
    word_identity_at: str = "audio"  # audio: the encoder's embeddings; decoder: final states at audio frames
    inside: float = 0.0  # weight of the BCE on the head's "inside" channel (needs that channel)
    inside_speakers: bool = False  # also label speaker questions: inside = the asked (k-th) speaker has started
    end: float = 0.0  # weight of the Poisson NLL of the asked thing's end on the head's "end" channel
    every: float = 0.0  # weight of the Poisson NLL (with the count term) of every occurrence on the "every" channel
    spelling: float = 0.0  # weight of the CTC over the letters a clip's words spell, on the audio embeddings
    position_shift: int = 0  # audio positions moved a random 0..this many frames from the question (0: off)

    def __post_init__(self):
        weights = {"word_identity": self.word_identity, "inside": self.inside, "end": self.end, "every": self.every,
                   "spelling": self.spelling}
        if min(weights.values()) < 0:
            raise InputError("aid weights must be >= 0, got " + ", ".join(f"{k}={v}" for k, v in weights.items()))
        if isinstance(self.position_shift, bool) or not isinstance(self.position_shift, int) or self.position_shift < 0:
            raise InputError(f"position_shift must be a whole number of frames >= 0, got {self.position_shift!r}")
        if self.inside_speakers and not self.inside:
            raise InputError("--inside-speakers labels the inside channel: give it a weight with --inside")
        if self.word_identity_at not in WHERE:
            raise InputError(f"word_identity_at must be one of {', '.join(WHERE)}, got {self.word_identity_at!r}")

    @property
    def needs_frame_labels(self) -> bool:
        """Whether an aid reads per-frame labels (``WordFrameLabels``): word identity and inside do."""
        return self.word_identity > 0 or self.inside > 0

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


class Spellings:
    """Per clip: the letters its words spell, in order, as class indices of the spelling aid (1..26;
    0 is CTC's blank), and ``token_ids``: the embedding row of each class (blank, a, ..., z).
    Letters only: digits, apostrophes and hyphens are not sounds of their own."""

    def __init__(self, spans: dict, tokenizer):
        letters = []
        for letter in LETTERS:
            ids = tokenizer.encode(letter, add_special_tokens=False).ids
            if len(ids) != 1:
                raise InputError(f"the spelling aid needs one token per letter; this tokenizer splits {letter!r} into {ids}")
            letters.append(ids[0])
        self.token_ids = np.asarray([special_token_id(tokenizer, BLANK)] + letters, dtype=np.int64)
        index = {letter: position + 1 for position, letter in enumerate(LETTERS)}
        self._letters = {}
        for audio, words in spans.items():
            classes = [index[c] for word, _, _ in words for c in word.lower() if c in index]
            if classes:
                self._letters[audio] = np.asarray(classes, dtype=np.int64)

    def __call__(self, audio) -> np.ndarray | None:
        """The clip's letters as class indices, or None for a clip without a transcript line."""
        return self._letters.get(audio)

    def __len__(self) -> int:
        return len(self._letters)


class WordFrameLabels:
    """Per audio frame: the token id of the word being spoken there (IGNORE outside words), and
    whether the frame lies inside what the question asks about (1/0; IGNORE where unknown).

    A word of several tokens is split evenly in time among its tokens, in order. Tokens are those
    of the word as the word question spells it (no leading space). "Inside" is every occurrence
    of the asked word (not only the k-th: identity without counting), every word for a
    transcript, and unknown for other tasks; with ``speakers``, a k-th speaker question's frames
    from that speaker's onset on are inside and those before it outside ("have k speakers started
    by now?": a label on every frame of the clip where the onset loss has one).
    """

    def __init__(self, spans: dict, tokenizer, speakers: bool = False):
        self.spans = spans
        self.tokenizer = tokenizer
        self.speakers = speakers
        self._tokens: dict[str, list[int]] = {}

    def tokens(self, word: str) -> list[int]:
        if word not in self._tokens:
            self._tokens[word] = self.tokenizer.encode(word, add_special_tokens=False).ids
        return self._tokens[word]

    def __call__(self, example, num_frames: int) -> np.ndarray:
        """(2, num_frames) int64: row 0 token ids, row 1 the inside target."""
        labels = np.full((2, num_frames), IGNORE, dtype=np.int64)
        if self.speakers and example.task == "speaker":
            labels[1] = (np.arange(num_frames) + 0.5) * FRAME_SECONDS >= example.times[0]
        spans = self.spans.get(example.audio, ())
        if spans and example.task in ("word", "transcript"):
            labels[1] = 0
        asked = example.prompt.get("word", "").lower() if example.task == "word" else None
        centres = (np.arange(num_frames) + 0.5) * FRAME_SECONDS
        for word, start, end in spans:
            tokens = self.tokens(word)
            if not tokens or end <= start:
                continue
            piece = (end - start) / len(tokens)
            inside = (centres >= start) & (centres < end)
            which = np.minimum(((centres[inside] - start) / piece).astype(np.int64), len(tokens) - 1)
            labels[0, inside] = np.asarray(tokens, dtype=np.int64)[which]
            if example.task == "transcript" or (asked is not None and word.lower() == asked):
                labels[1, inside] = 1
        return labels

    def covers(self, example) -> bool:
        return example.audio in self.spans
