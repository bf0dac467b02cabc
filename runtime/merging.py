"""Training-free audio-token merging between the encoder and the decoder, in plain NumPy.

Local Temporal Bipartite Merging (LTBM, the paper "Local Temporal Bipartite Merging"): similar
neighbouring audio embeddings are averaged into one token before the decoder, so the decoder reads
fewer audio tokens. Each round splits the current tokens into alternating sets A (even places) and
B (odd places); every A token finds its most similar B token by cosine similarity, and the A tokens
with the most similar partners are folded into them (size-weighted means, so a merged token is the
mean of every 40 ms frame it holds). Rounds repeat until ``merged_length(frames, ratio)`` tokens are
left; a round folds at most half of A, so each round merges only its closer pairs.

    "local"   an A token's candidates are its two neighbours: every merged token covers a run of
              consecutive frames, a segment of the time axis with a width in frames, which the
              decoding reads as such (``posterior_mode(..., widths=...)``).
    "global"  any B token is a candidate (ToMe-style bipartite matching, the control the LTBM
              authors compare against): merged tokens can hold frames far apart, so their scores are
              spread back to every frame they hold before decoding.

The frame head scores each merged token once; that score is the log-rate per 40 ms frame inside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from framestamp.runtime.errors import InputError

MERGE_KINDS = ("local", "global")
POSITION_KINDS = ("first", "mean", "compact")  # where a merged token sits on the decoder's position axis
DEFAULT_POSITIONS = "first"
# Where the frame head reads: every 40 ms frame (each reading its token's final state, the look-ahead
# reaching the next frames' tokens), or each merged token once (a segment of its width).
HEAD_PLACES = ("frames", "segments")
DEFAULT_HEAD_PLACES = "frames"


def check_merging(ratio, kind: str, positions: str, head: str) -> None:
    """Refuse merging settings that do not exist, naming the ones that do."""
    check_ratio(ratio)
    for name, value, known in (("merging", kind, MERGE_KINDS), ("merged-token positions", positions, POSITION_KINDS),
                               ("the head's places", head, HEAD_PLACES)):
        if value not in known:
            raise InputError(f"{name} must be one of {', '.join(known)}, got {value!r}")


def check_ratio(ratio) -> float:
    """``ratio`` (the share of audio tokens merged away) if it is a number in [0, 1); an InputError otherwise."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating, np.integer)) or not (
            0.0 <= float(ratio) < 1.0):
        raise InputError(f"the merge ratio is the share of audio tokens merged away, a number in [0, 1), got {ratio!r}")
    return float(ratio)


def merged_length(frames: int, ratio: float) -> int:
    """Audio tokens left after merging ``ratio`` of ``frames`` away (at least one): known before the
    encoder runs, so prompts can be built with that many placeholders."""
    removed = math.floor(check_ratio(ratio) * frames + 1e-9)
    return max(1, int(frames) - removed)


@dataclass(frozen=True)
class MergePlan:
    """Which merged token each 40 ms frame went into. Tokens keep the order of the sequence they came from."""

    group: np.ndarray  # (frames,) int64: the merged token holding each frame
    sizes: np.ndarray  # (tokens,) int64: frames per merged token
    local: bool  # every token holds consecutive frames (in order): a time segment

    @property
    def tokens(self) -> int:
        return int(self.sizes.size)

    @property
    def widths(self) -> np.ndarray | None:
        """Each token's width in frames when tokens are time segments (local merging); else None."""
        return self.sizes if self.local else None

    def merge(self, embeddings: np.ndarray) -> np.ndarray:
        """(frames, H) -> (tokens, H): each token the mean of its frames' embeddings."""
        embeddings = np.asarray(embeddings)
        return (_sums_by(embeddings.astype(np.float64), self.group) / self.sizes[:, None]).astype(embeddings.dtype)

    def spread(self, values: np.ndarray) -> np.ndarray:
        """Per-token values (tokens, ...) back on the frame grid (frames, ...): each frame its token's value."""
        return np.asarray(values)[self.group]

    def positions(self, kind: str = DEFAULT_POSITIONS) -> np.ndarray:
        """Each token's place on the decoder's position axis, counted in frames from the audio's start.

        "first": its first frame (the time it starts); "mean": the mean of its frames (fractional);
        "compact": its index, as if the audio were that many tokens long.
        """
        if kind not in POSITION_KINDS:
            raise InputError(f"merged-token positions must be one of {', '.join(POSITION_KINDS)}, got {kind!r}")
        if kind == "compact":
            return np.arange(self.tokens, dtype=np.float64)
        frames = np.arange(self.group.size, dtype=np.float64)
        if kind == "mean":
            return np.bincount(self.group, weights=frames, minlength=self.tokens) / self.sizes
        first = np.full(self.tokens, np.inf)
        first[self.group[::-1]] = frames[::-1]  # the last write to each token wins: its first frame
        return first


def plan_merge(embeddings: np.ndarray, ratio: float, kind: str = "local") -> MergePlan:
    """Bipartite merging rounds over one clip's audio embeddings (frames, H) until
    ``merged_length(frames, ratio)`` tokens are left. Ties go to the earlier token."""
    if kind not in MERGE_KINDS:
        raise InputError(f"merging must be one of {', '.join(MERGE_KINDS)}, got {kind!r}")
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise InputError(f"audio embeddings must be a non-empty (frames, H) array, got shape {embeddings.shape}")
    frames = embeddings.shape[0]
    target = merged_length(frames, ratio)
    sums, sizes = embeddings.copy(), np.ones(frames, dtype=np.int64)
    group = np.arange(frames)
    while sizes.size > target:
        tokens = sums / sizes[:, None]
        folded, into = _one_round(tokens, sizes.size - target, kind)
        keep = np.ones(sizes.size, dtype=bool)
        keep[folded] = False
        renumber = np.cumsum(keep) - 1  # new index of each kept token
        destination = renumber.copy()
        destination[folded] = renumber[into]
        sums, sizes = _sums_by(sums, destination), _sums_by(sizes, destination)
        group = destination[group]
    return MergePlan(group=group.astype(np.int64), sizes=sizes.astype(np.int64), local=kind == "local")


def _sums_by(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Sums of ``values`` rows per label 0..max(labels) (every label present), in label order."""
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
    return np.add.reduceat(values[order], starts, axis=0)


def _one_round(tokens: np.ndarray, wanted: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One bipartite round: the A tokens to fold away (at most ``wanted``) and the B token each goes into."""
    count = tokens.shape[0]
    norms = np.linalg.norm(tokens, axis=1, keepdims=True)
    unit = tokens / np.where(norms > 0, norms, 1.0)
    a_index, b_index = np.arange(0, count, 2), np.arange(1, count, 2)
    if kind == "local":
        # A token 2m's neighbours are B tokens 2m - 1 and 2m + 1 (where they exist).
        left = np.full(a_index.size, -np.inf)
        right = np.full(a_index.size, -np.inf)
        has_left, has_right = a_index >= 1, a_index + 1 < count
        left[has_left] = np.einsum("ij,ij->i", unit[a_index[has_left]], unit[a_index[has_left] - 1])
        right[has_right] = np.einsum("ij,ij->i", unit[a_index[has_right]], unit[a_index[has_right] + 1])
        similarity = np.maximum(left, right)
        partner = np.where(left >= right, a_index - 1, a_index + 1)
    else:
        scores = unit[a_index] @ unit[b_index].T  # (A, B)
        best = np.argmax(scores, axis=1)  # the first maximum: the earlier B token
        similarity = scores[np.arange(a_index.size), best]
        partner = b_index[best]
    fold = min(wanted, max(1, a_index.size // 2))
    order = np.argsort(-similarity, kind="stable")[:fold]  # most similar first, earlier on ties
    order = order[np.isfinite(similarity[order])]
    return a_index[order], partner[order]


def head_places(plans: list[MergePlan], head: str = DEFAULT_HEAD_PLACES) -> np.ndarray:
    """(B, places) int64: the merged token the head reads at each place, -1 past a row's end.
    "frames": one place per 40 ms frame (its token); "segments": one place per token."""
    rows = [plan.group if head == "frames" else np.arange(plan.tokens) for plan in plans]
    places = np.full((len(rows), max(row.size for row in rows)), -1, dtype=np.int64)
    for index, row in enumerate(rows):
        places[index, : row.size] = row
    return places


def merge_batch(audio: np.ndarray, frame_counts: np.ndarray, ratio: float, kind: str = "local",
                positions: str = DEFAULT_POSITIONS, head: str = DEFAULT_HEAD_PLACES):
    """Merge each row of an encoder's output (B, F, H) over its valid frames.

    Returns ``(merged (B, F', H) zero-padded, token counts (B,), token positions (B, F') float32
    padded with the last position, the head's places (``head_places``), plans)``; F' is the longest
    row's token count. The decoder graph takes the first four after the prompt.
    """
    check_merging(ratio, kind, positions, head)
    plans = [plan_merge(audio[row, : int(frames)], ratio, kind) for row, frames in enumerate(frame_counts)]
    width = max(plan.tokens for plan in plans)
    merged = np.zeros((len(plans), width, audio.shape[2]), dtype=np.float32)
    token_positions = np.zeros((len(plans), width), dtype=np.float32)
    for row, plan in enumerate(plans):
        merged[row, : plan.tokens] = plan.merge(audio[row, : plan.group.size])
        where = plan.positions(positions)
        token_positions[row, : plan.tokens] = where
        token_positions[row, plan.tokens:] = where[-1]
    counts = np.array([plan.tokens for plan in plans], dtype=np.int64)
    return merged, counts, token_positions, head_places(plans, head), plans


def shorten_prompts(input_ids: np.ndarray, attention_mask: np.ndarray, audio_start: np.ndarray,
                    frame_counts: np.ndarray, token_counts: np.ndarray, pad_id: int):
    """Prompts built with one audio placeholder per frame, cut to ``token_counts`` placeholders each
    (the placeholders are all alike: the run is shortened and what follows moves up). Right-padded
    (input_ids, attention_mask) with the same audio starts."""
    rows = []
    for row in range(input_ids.shape[0]):
        start, frames, tokens = int(audio_start[row]), int(frame_counts[row]), int(token_counts[row])
        length = int(attention_mask[row].sum())
        ids = input_ids[row, :length]
        rows.append(np.concatenate((ids[: start + tokens], ids[start + frames:])))
    width = max(len(ids) for ids in rows)
    shortened = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for row, ids in enumerate(rows):
        shortened[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return shortened, mask


class MergingGraphs:
    """An artifact's graphs (``GraphSessions`` or TensorRT engines) with audio tokens merged between the
    encoder and the decoder: callers build prompts and read scores per 40 ms frame as without merging."""

    def __init__(self, graphs, ratio: float, kind: str, pad_id: int):
        check_merging(ratio, kind, DEFAULT_POSITIONS, DEFAULT_HEAD_PLACES)
        if not graphs.takes_merged_audio:
            raise InputError(f"{getattr(graphs, 'folder', 'this artifact')}: its decoder was exported before audio-token "
                             "merging; re-export the artifact with `framestamp export` to merge")
        self.graphs, self.ratio, self.kind, self.pad_id = graphs, ratio, kind, pad_id

    def __getattr__(self, name):
        return getattr(self.graphs, name)

    def encode(self, mel: np.ndarray, mel_lengths: np.ndarray):
        return self.graphs.encode(mel, mel_lengths)

    def scores(self, input_ids, attention_mask, audio_start, audio, frame_counts) -> np.ndarray:
        """(B, frames, channels) scores, each 40 ms frame reading the merged token that holds it."""
        merged, token_counts, positions, places, _ = merge_batch(audio, frame_counts, self.ratio, self.kind)
        input_ids, attention_mask = shorten_prompts(np.asarray(input_ids), np.asarray(attention_mask),
                                                    np.asarray(audio_start), frame_counts, token_counts, self.pad_id)
        return self.graphs.scores(input_ids, attention_mask, audio_start, merged, token_counts, positions, places)
