"""The frame-head model: an audio LM whose final-layer states at the audio frames feed a light head.

    mel (B, 128, L) ──encoder──> audio embeddings (B, F, H) ──merged into the prompt at the
    <|AUDIO|> placeholders──> decoder ──final-layer states at those F positions──> head
    ──> per frame and channel: log-intensity (Poisson, eq. 2) or logit (binary, eq. 1)

The question comes before the audio (runtime/prompts.py): the decoder is causal, so audio frames
can only attend to a question they have already read. Positions are cumsum(attention_mask) - 1,
which makes every example's outputs independent of how much padding its batch adds.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn
from torch.nn import functional as F

from framestamp.runtime.decoding import OCCURRENCES
from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import audio_frames_for_mel
from framestamp.runtime.merging import (DEFAULT_HEAD_PLACES, DEFAULT_POSITIONS, check_merging, head_places,
                                        merged_length, plan_merge)
from framestamp.runtime.prompts import AFTER_AUDIO, answer_text, prompt_ids, special_token_id
from framestamp.training.aids import IGNORE, Aids
from framestamp.training.backbones import BackboneInfo
from framestamp.training.losses import frame_targets, poisson_nll, weighted_bce

OBJECTIVES = ("poisson", "binary", "tokens", "interpolated")


@dataclass
class HeadConfig:
    objective: str = "poisson"  # poisson | binary | tokens | interpolated (tokens + weight x poisson)
    channels: tuple[str, ...] = ("onset",)
    lookahead: int = 0  # following frames the head also reads (0: the paper's per-frame linear head)
    poisson_weight: float = 1.0  # lambda in T + lambda P (paper 4.6), for "interpolated"
    count_term: bool = False  # train Lambda(T) to the event count too (poisson_nll)
    positive_weight: float | None = None  # binary class weight; None: negatives/positives per batch
    # A k-th occurrence question's track marks: "asked", the k-th alone (the paper's); "every", every
    # occurrence of the thing in the clip, the k-th picked by decoding (needs the count term)
    occurrences: str = "asked"
    # How far back (in 40 ms frames, on the decoder's position axis) an audio position attends over the
    # other audio positions; the question before the audio stays in view. 0: every earlier position (the
    # paper's). A bounded span makes a frame's state depend on a bounded stretch of audio (the layers times
    # the span), so a long recording answered in windows gives exactly the one-pass answer (runtime/windows.py).
    span: int = 0

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.lookahead < 0:
            raise InputError(f"lookahead must be >= 0 frames, got {self.lookahead}")
        if isinstance(self.span, bool) or not isinstance(self.span, int) or self.span < 0:
            raise InputError(f"span must be a whole number of frames >= 0 (0: unbounded), got {self.span!r}")
        if self.occurrences not in OCCURRENCES:
            raise InputError(f"occurrences must be one of {', '.join(OCCURRENCES)}, got {self.occurrences!r}")
        if self.occurrences == "every" and not (self.count_term and self.objective in ("poisson", "interpolated")):
            raise InputError("occurrences 'every' decodes the k-th by counting the track's events: it needs a "
                             "Poisson head trained with the count term (--count-term)")
        self.channels = tuple(self.channels)

    @property
    def uses_frames(self) -> bool:
        return self.objective != "tokens"

    @property
    def uses_tokens(self) -> bool:
        return self.objective in ("tokens", "interpolated")

    def to_json(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}


class FrameHead(nn.Module):
    """h . d per frame (eq. 2), or, with look-ahead, a causal-in-reverse convolution over the frame
    and the next ``lookahead`` frames: the state at an onset cannot see the word that follows it."""

    def __init__(self, hidden_size: int, channels: int, lookahead: int = 0):
        super().__init__()
        self.lookahead = lookahead
        self.projection = nn.Conv1d(hidden_size, channels, kernel_size=lookahead + 1)

    def forward(self, frame_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        # Zero padded frames so that the last real frames' look-ahead reads the same as unpadded.
        states = frame_states.masked_fill(~frame_mask[..., None], 0.0).transpose(1, 2)
        scores = self.projection(F.pad(states, (0, self.lookahead)))
        return scores.transpose(1, 2)  # (B, F, channels)


@dataclass
class FrameOutput:
    scores: torch.Tensor  # (B, F, channels): log-intensity (poisson) or logits (binary)
    frame_mask: torch.Tensor  # (B, F) bool
    hidden: torch.Tensor = field(repr=False)  # (B, T, H) final-layer decoder states
    plans: list | None = field(default=None, repr=False)  # scores per merged token: each example's MergePlan


@dataclass(frozen=True)
class Merging:
    """Training-free audio-token merging before the decoder (runtime/merging.py)."""

    ratio: float  # share of the audio tokens merged away
    kind: str = "local"  # local (neighbours: time segments) | global (ToMe-style control)
    positions: str = DEFAULT_POSITIONS  # where merged tokens sit on the decoder's position axis
    head: str = DEFAULT_HEAD_PLACES  # the head reads every 40 ms frame, or each merged segment once

    def __post_init__(self):
        check_merging(self.ratio, self.kind, self.positions, self.head)

    def tokens(self, frames: int) -> int:
        return merged_length(frames, self.ratio)


def merge_audio(audio: torch.Tensor, frame_counts: torch.Tensor, merging: Merging):
    """Merge each example's audio embeddings (B, F, H) as the runtime does: the plan from
    ``plan_merge`` on the embeddings, the means in torch. Returns (merged (B, F', H), token counts
    (B,), token positions (B, F') float32, frame_tokens for ``frame_scores``, plans)."""
    plans, rows = [], []
    for row, frames in enumerate(frame_counts.tolist()):
        valid = audio[row, :frames]
        plan = plan_merge(valid.detach().float().cpu().numpy(), merging.ratio, merging.kind)
        group = torch.from_numpy(plan.group).to(audio.device)
        sizes = torch.from_numpy(plan.sizes).to(audio.device, audio.dtype)
        rows.append(valid.new_zeros(plan.tokens, audio.shape[-1]).index_add_(0, group, valid) / sizes[:, None])
        plans.append(plan)
    width = max(plan.tokens for plan in plans)
    merged = audio.new_zeros(len(plans), width, audio.shape[-1])
    positions = torch.zeros(len(plans), width, dtype=torch.float32, device=audio.device)
    for row, (plan, tokens) in enumerate(zip(plans, rows)):
        merged[row, : plan.tokens] = tokens
        where = torch.from_numpy(plan.positions(merging.positions)).float()
        positions[row, : plan.tokens] = where
        positions[row, plan.tokens:] = where[-1]
    counts = torch.tensor([plan.tokens for plan in plans], dtype=torch.long, device=audio.device)
    frame_tokens = torch.from_numpy(head_places(plans, merging.head)).to(audio.device)
    return merged, counts, positions, frame_tokens, plans


def merged_audio_positions(positions, audio_start, audio_positions, frame_counts):
    """Decoder positions (B, T) with the audio tokens at ``audio_positions`` (B, F) frames from the
    audio's first position and the tokens after the audio shifted to follow the last one (float)."""
    offset = torch.arange(positions.shape[1], device=positions.device)[None] - audio_start[:, None]
    is_audio = (offset >= 0) & (offset < frame_counts[:, None])
    after = offset >= frame_counts[:, None]
    first = torch.gather(positions, 1, audio_start[:, None]).to(audio_positions.dtype)
    at_audio = torch.gather(audio_positions, 1, offset.clamp(0, audio_positions.shape[1] - 1))
    last = torch.gather(audio_positions, 1, (frame_counts - 1).clamp(min=0)[:, None])
    shift = last - (frame_counts[:, None] - 1).to(audio_positions.dtype)
    positions = positions.to(audio_positions.dtype)
    return torch.where(is_audio, first + at_audio, torch.where(after, positions + shift, positions))


def span_mask(attention_mask, audio_start, frame_counts, positions, span: int, dtype) -> torch.Tensor:
    """The decoder's additive attention mask (B, 1, T, T) for a bounded span: causal over the valid tokens
    (``attention_mask`` (B, T)), except that an audio token attends to another audio token only when that one
    sits less than ``span`` frames earlier on the position axis (merged tokens included: positions, not indices).
    0 where attended, the dtype's lowest value elsewhere (a finite value: eager and sdpa attention both take it)."""
    index = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    offset = index[None] - audio_start[:, None]
    is_audio = (offset >= 0) & (offset < frame_counts[:, None])
    allowed = (index[:, None] >= index[None, :])[None] & attention_mask.bool()[:, None, :]
    both_audio = is_audio[:, :, None] & is_audio[:, None, :]
    near = (positions[:, :, None] - positions[:, None, :]) < span
    allowed = allowed & (~both_audio | near)
    return torch.zeros((), dtype=dtype, device=allowed.device).masked_fill(~allowed[:, None], torch.finfo(dtype).min)


class FrameStampModel(nn.Module):
    def __init__(self, backbone: nn.Module, info: BackboneInfo, head: HeadConfig, tokenizer):
        super().__init__()
        self.backbone = backbone
        self.info = info
        self.head_config = head
        self.tokenizer = tokenizer
        self.pad_id = special_token_id(tokenizer, "<|endoftext|>")
        self.answer_offset = len(tokenizer.encode(AFTER_AUDIO, add_special_tokens=False).ids)
        if info.kind == "omni":
            from framestamp.training.encoder import ChunkedAudioEncoder

            # Held outside the module tree: it shares the backbone's tower parameters.
            self._encoder = [ChunkedAudioEncoder.from_thinker(backbone)]
        else:
            self._encoder = []
        self.head = FrameHead(info.hidden_size, len(head.channels), head.lookahead)
        self.aids = Aids()  # training-only losses (aids.py); the trainer sets them, exports ignore them
        self.spellings = None  # aids.Spellings for the spelling aid; the trainer sets it

    @property
    def language_model(self) -> nn.Module:
        return self.backbone.model.language_model

    @functools.cached_property
    def _cache_keyword(self) -> str:
        # transformers renamed past_key_values to cache during 5.x (the old name is deprecated): an
        # unrecognized keyword would be swallowed by **kwargs and the step would run without its cache.
        return "cache" if "cache" in inspect.signature(self.language_model.forward).parameters else "past_key_values"

    def next_step_cache(self, output) -> dict:
        """The decoder's KV cache from ``output``, as the keyword the next decoding step takes."""
        return {self._cache_keyword: getattr(output, self._cache_keyword)}

    # ------------------------------------------------------------------------------ prompts
    def prompt_ids(self, example, num_audio_frames: int, with_answer: bool | None = None):
        """Token ids for one manifest example and where its audio placeholders start."""
        if with_answer is None:
            with_answer = self.head_config.uses_tokens
        answer = answer_text(example.task, example.prompt, example.times) if with_answer else None
        return prompt_ids(self.tokenizer, example.question, num_audio_frames, answer)

    # ------------------------------------------------------------------------------ forward
    def encode_audio(self, mel: torch.Tensor, mel_lengths: torch.Tensor):
        """Audio embeddings in the decoder's width, (B, F, H), and the valid frames per example."""
        if self.info.kind == "omni":
            return self._encoder[0](mel, mel_lengths)
        return self._encode_qwen2_audio(mel, mel_lengths)

    def encode_batch(self, batch):
        """``encode_audio`` of a Batch, one row per example: a clip that several questions share is
        encoded once and its embeddings given to each (``batch.clip_of``)."""
        audio, frame_counts = self.encode_audio(batch.mel, batch.mel_lengths)
        clip_of = getattr(batch, "clip_of", None)
        if clip_of is None:
            return audio, frame_counts
        return audio[clip_of], frame_counts[clip_of]

    def _encode_qwen2_audio(self, mel, mel_lengths):
        from transformers.masking_utils import create_bidirectional_mask

        fixed = self.info.fixed_mel_frames
        if mel.shape[-1] > fixed:
            raise InputError(f"Qwen2-Audio takes at most {fixed // 100} s of audio; got {mel.shape[-1] / 100:.1f} s")
        # Zero mel past each length: the conv front end's kernel reaches one frame into padding.
        mel = mel.masked_fill(torch.arange(mel.shape[-1], device=mel.device)[None, None] >= mel_lengths[:, None, None], 0.0)
        mel = F.pad(mel, (0, fixed - mel.shape[-1]))
        tower = self.backbone.model.audio_tower
        conv_positions = (fixed - 1) // 2 + 1
        valid = torch.arange(conv_positions, device=mel.device)[None] < ((mel_lengths - 1) // 2 + 1)[:, None]
        mask = create_bidirectional_mask(config=tower.config, inputs_embeds=mel.new_zeros(mel.shape[0], conv_positions, 1),
                                         attention_mask=valid.long())
        states = tower(mel.to(tower.conv1.weight.dtype), attention_mask=mask).last_hidden_state
        return self.backbone.model.multi_modal_projector(states), audio_frames_for_mel(mel_lengths)

    def merged_embeddings(self, input_ids, audio_start, audio, frame_counts):
        """Token embeddings with the audio embeddings written over the placeholders."""
        embeddings = self.language_model.embed_tokens(input_ids)
        # Gather + where rather than masked_scatter: exports with dynamic shapes (masked_scatter/nonzero do not).
        offset = torch.arange(input_ids.shape[1], device=input_ids.device)[None] - audio_start[:, None]
        is_audio = (offset >= 0) & (offset < frame_counts[:, None])
        index = offset.clamp(0, audio.shape[1] - 1)[..., None].expand(-1, -1, audio.shape[-1])
        return torch.where(is_audio[..., None], torch.gather(audio.to(embeddings.dtype), 1, index), embeddings)

    def decoder_states(self, input_ids, attention_mask, audio_start, audio, frame_counts, audio_positions=None):
        """Final-layer decoder states with the audio embeddings merged in at the placeholders.

        ``audio_positions`` (B, F) float, for merged audio tokens (runtime/merging.py): each token's
        place in frames from the audio's first position; the tokens after the audio continue from
        the last one. None: one position per token, as in training.
        """
        embeddings = self.merged_embeddings(input_ids, audio_start, audio, frame_counts)
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if audio_positions is not None:
            positions = merged_audio_positions(positions, audio_start, audio_positions, frame_counts)
        if self.head_config.span:
            attention_mask = span_mask(attention_mask, audio_start, frame_counts, positions, self.head_config.span,
                                       embeddings.dtype)
        output = self.language_model(inputs_embeds=embeddings, attention_mask=attention_mask, position_ids=positions)
        return output.last_hidden_state

    def forward(self, input_ids, attention_mask, audio_start, mel, mel_lengths) -> FrameOutput:
        audio, frame_counts = self.encode_audio(mel, mel_lengths)
        return self.frame_scores(input_ids, attention_mask, audio_start, audio, frame_counts)

    def frame_scores(self, input_ids, attention_mask, audio_start, audio, frame_counts,
                     audio_positions=None, frame_tokens=None) -> FrameOutput:
        """The decoder and head on encoded audio: what the exported decoder graph computes.

        Merged audio (runtime/merging.py) gives ``audio_positions`` (see ``decoder_states``) and
        ``frame_tokens`` (B, F) int64: the audio token whose final state the head reads at each of
        its F places, -1 past an example's end (the 40 ms frames each token holds, or one place per
        token). None: one place per audio token.
        """
        hidden = self.decoder_states(input_ids, attention_mask, audio_start, audio, frame_counts, audio_positions)
        if frame_tokens is None:
            frame_tokens = torch.arange(audio.shape[1], device=hidden.device)[None].expand(audio.shape[0], -1)
            frame_mask = frame_tokens < frame_counts[:, None]
        else:
            frame_mask = frame_tokens >= 0
        frame_index = audio_start[:, None] + frame_tokens.clamp(min=0)
        frame_index = frame_index.clamp(max=hidden.shape[1] - 1)[..., None].expand(-1, -1, hidden.shape[-1])
        frame_states = torch.gather(hidden, 1, frame_index)
        scores = self.head(frame_states, frame_mask)
        return FrameOutput(scores=scores.float(), frame_mask=frame_mask, hidden=hidden)

    def run_batch(self, batch, merging: "Merging | None" = None) -> FrameOutput:
        """Frame scores for a batch. With ``merging`` the batch's prompts hold ``merging.tokens(frames)``
        placeholders; scores are per 40 ms frame, or per merged token (head "segments": then the
        merge plans are in ``output.plans``)."""
        audio, frame_counts = self.encode_batch(batch)
        if merging is None:
            return self.frame_scores(batch.input_ids, batch.attention_mask, batch.audio_start, audio, frame_counts)
        merged, token_counts, positions, frame_tokens, plans = merge_audio(audio, frame_counts, merging)
        output = self.frame_scores(batch.input_ids, batch.attention_mask, batch.audio_start, merged, token_counts,
                                   positions, frame_tokens)
        return replace(output, plans=plans if merging.head == "segments" else None)  # scores per token: plans

    # ------------------------------------------------------------------------------ losses
    def training_loss(self, batch):
        """The objective's loss for one batch and a few numbers to log."""
        audio, frame_counts = self.encode_batch(batch)
        merging = getattr(batch, "merging", None)
        frame_tokens = None  # the audio token whose final state stands for each frame (merged batches)
        if merging is None:
            positions = self.shifted_positions(None, audio.shape[0], audio.shape[1], audio.device)
            output = self.frame_scores(batch.input_ids, batch.attention_mask, batch.audio_start, audio, frame_counts,
                                       positions)
        else:  # merge-aware training: the decoder hears merged tokens, the head still scores every 40 ms frame
            if merging.head != "frames":
                raise InputError("merge-aware training scores every 40 ms frame: use head places 'frames'")
            merged, token_counts, positions, frame_tokens, _ = merge_audio(audio, frame_counts, merging)
            positions = self.shifted_positions(positions, merged.shape[0], merged.shape[1], merged.device)
            output = self.frame_scores(batch.input_ids, batch.attention_mask, batch.audio_start, merged, token_counts,
                                       positions, frame_tokens)
        config = self.head_config
        frames = output.scores.shape[1]
        frame_mask = output.frame_mask
        times, used = batch.event_times, batch.event_mask
        metrics = {}
        loss = output.scores.new_zeros(())
        if config.objective in ("poisson", "interpolated"):
            per_example = poisson_nll(output.scores[..., 0], times, used, frame_mask, count_term=config.count_term,
                                      reduction="none")
            # Per event: a transcript's 30 words must not outweigh 30 single-word questions.
            poisson = (per_example / used.sum(-1).clamp(min=1)).mean()
            metrics["poisson"] = poisson.item()
            loss = loss + (config.poisson_weight if config.objective == "interpolated" else 1.0) * poisson
        if config.objective == "binary":
            targets = frame_targets(times, used, frame_mask[:, :frames])
            binary = weighted_bce(output.scores[..., 0], targets, frame_mask, pos_weight=config.positive_weight)
            metrics["binary"] = binary.item()
            loss = loss + binary
        if config.uses_tokens:
            tokens = self.token_loss(batch, output.hidden)
            metrics["tokens"] = tokens.item()
            loss = loss + tokens
        if self.aids.word_identity > 0 and batch.frame_labels is not None:
            identity = self.word_identity_loss(batch, audio, output.hidden, frame_tokens)
            metrics["word_identity"] = identity.item()
            loss = loss + self.aids.word_identity * identity
        if self.aids.spelling > 0 and self.spellings is not None:
            spelling = self.spelling_loss(batch, audio, frame_counts)
            metrics["spelling"] = spelling.item()
            loss = loss + self.aids.spelling * spelling
        if self.aids.inside > 0 and batch.frame_labels is not None:
            inside = self.inside_loss(batch, output)
            metrics["inside"] = inside.item()
            loss = loss + self.aids.inside * inside
        if self.aids.end > 0 and batch.event_ends is not None:
            end = self.end_loss(batch, output)
            metrics["end"] = end.item()
            loss = loss + self.aids.end * end
        if self.aids.every > 0 and batch.every_times is not None and batch.every_mask.any():
            every = self.every_loss(batch, output)
            metrics["every"] = every.item()
            loss = loss + self.aids.every * every
        return loss, metrics

    def shifted_positions(self, positions, rows: int, tokens: int, device) -> torch.Tensor | None:
        """Audio positions (B, F), half the rows (at random) moved a random whole number of frames in
        [0, aids.position_shift] further from the question (the position-shift aid): audio far into a long
        recording then sits as far from the question as in training, and a clip's own audio where it always
        sat. ``positions`` None: one per token. Unchanged when the aid is off."""
        shift = self.aids.position_shift
        if not shift:
            return positions
        if positions is None:
            positions = torch.arange(tokens, device=device, dtype=torch.float32)[None].expand(rows, -1)
        moved = torch.randint(0, shift + 1, (rows, 1)) * torch.randint(0, 2, (rows, 1))
        return positions + moved.to(device=device, dtype=positions.dtype)

    def every_loss(self, batch, output: FrameOutput) -> torch.Tensor:
        """Eq. 5 with the count term on the head's "every" channel, with every occurrence of what a k-th
        occurrence question asks about as its events (a head of every occurrence as an aid beside the
        asked one); other questions have none and add nothing."""
        if "every" not in self.head_config.channels:
            raise InputError("the every aid needs a head with an 'every' channel (--channels onset,every)")
        used = batch.every_mask
        per_example = poisson_nll(output.scores[..., self.head_config.channels.index("every")], batch.every_times, used,
                                  output.frame_mask, count_term=True, reduction="none")
        has_events = used.any(-1)
        return (per_example / used.sum(-1).clamp(min=1))[has_events].mean()

    def end_loss(self, batch, output: FrameOutput) -> torch.Tensor:
        """Eq. 5 on the head's "end" channel with the asked thing's ends as the events: an IHP whose
        mode is where the word (each transcript word, the event) ends. Examples without ends (speaker
        questions) have no events and add nothing."""
        if "end" not in self.head_config.channels:
            raise InputError("the end loss needs a head with an 'end' channel (--channels onset,end)")
        used = batch.ends_mask
        per_example = poisson_nll(output.scores[..., self.head_config.channels.index("end")], batch.event_ends, used,
                                  output.frame_mask, reduction="none")
        has_ends = used.any(-1)
        per_event = per_example / used.sum(-1).clamp(min=1)
        return per_event[has_ends].mean()

    def inside_loss(self, batch, output: FrameOutput) -> torch.Tensor:
        """BCE of the head's "inside" channel: is this frame inside the asked word (any occurrence)?"""
        if "inside" not in self.head_config.channels:
            raise InputError("the inside aid needs a head with an 'inside' channel (--channels onset,inside)")
        targets = batch.frame_labels[:, 1]
        logits = output.scores[:, : targets.shape[1], self.head_config.channels.index("inside")]
        labelled = targets != IGNORE
        if not labelled.any():
            return logits.new_zeros(())
        return F.binary_cross_entropy_with_logits(logits[labelled], targets[labelled].float())

    def word_identity_loss(self, batch, audio: torch.Tensor, hidden: torch.Tensor,
                           frame_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of each labelled audio frame against the tied token embeddings (aids.py).

        At the decoder a frame reads the final state of its audio token: itself, or with merge-aware
        batches the merged token that covers it (``frame_tokens``, as the head reads it)."""
        labels = batch.frame_labels[:, 0]  # (B, longest clip's frames); the encoder may pad further
        frames = labels.shape[1]
        if self.aids.word_identity_at == "audio":
            states = audio[:, :frames]
        else:
            if frame_tokens is None:
                tokens = torch.arange(frames, device=hidden.device)[None].expand(labels.shape[0], -1)
            else:
                tokens = frame_tokens[:, :frames].clamp(min=0)  # -1 past a row's end: unlabelled, any token will do
            index = batch.audio_start[:, None] + tokens
            index = index.clamp(max=hidden.shape[1] - 1)[..., None].expand(-1, -1, hidden.shape[-1])
            states = torch.gather(hidden, 1, index)
        labelled = labels != IGNORE
        if not labelled.any():
            return states.new_zeros(())
        # Only labelled frames: silences and padding would cost a (frames x vocabulary) product for nothing.
        logits = states[labelled].float() @ self.language_model.embed_tokens.weight.float().T
        return F.cross_entropy(logits, labels[labelled])

    def spelling_loss(self, batch, audio: torch.Tensor, frame_counts: torch.Tensor) -> torch.Tensor:
        """CTC of the letters each clip's words spell, on its audio embeddings scored against the tied
        embeddings of blank, a, ..., z (aids.py); each clip once, however many of its questions the
        batch holds, averaged over clips (each clip's loss divided by its letters, as ``ctc_loss`` does)."""
        rows, targets, seen = [], [], set()
        for row, example in enumerate(batch.examples):
            letters = self.spellings(example.audio)
            if letters is not None and example.audio not in seen:
                seen.add(example.audio)
                rows.append(row)
                targets.append(torch.from_numpy(letters))
        if not rows:
            return audio.new_zeros(())
        rows = torch.tensor(rows, device=audio.device)
        classes = self.language_model.embed_tokens.weight[torch.from_numpy(self.spellings.token_ids).to(audio.device)]
        log_probs = (audio[rows].float() @ classes.float().T).log_softmax(-1)  # (clips, frames, 27)
        return F.ctc_loss(log_probs.transpose(0, 1), torch.cat(targets).to(audio.device), frame_counts[rows],
                          torch.tensor([len(t) for t in targets], device=audio.device), blank=0, zero_infinity=True)

    def answer_starts(self, batch) -> torch.Tensor:
        """Index of each example's first answer token: after the audio block and the turn change."""
        return batch.audio_start + batch.num_audio_frames + 1 + self.answer_offset

    def token_loss(self, batch, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy on the answer tokens only (the token baseline's LM loss)."""
        logits = self.backbone.lm_head(hidden[:, :-1]).float()
        targets = batch.input_ids[:, 1:]
        position = torch.arange(1, batch.input_ids.shape[1], device=targets.device)[None]
        is_answer = (position >= self.answer_starts(batch)[:, None]) & batch.attention_mask[:, 1:].bool()
        targets = torch.where(is_answer, targets, torch.full_like(targets, -100))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
