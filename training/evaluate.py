"""Timestamps from a trained model, scored against a manifest.

    framestamp evaluate CKPT MANIFEST [--method poisson|binary|tokens] [--decoding ordered|posterior] [--json]

The number of events is known from the question (one, or the transcript's words), as in the
paper. Frame heads decode with ``ordered_map`` by default: a transcript's words on distinct,
separated frames, and the k-th occurrence of a word, event or speaker jointly with occurrences
1..k-1 asked of the same clip (as the runtime does). A transcript is timed as the runtime times it:
each of its words asked as its own question and the answers aligned in order (``--transcript-by
words``, ``align_word_tracks``), or the paper's one transcript question (``--transcript-by question``).
``--decoding posterior`` is the paper's per-event ``posterior_mode`` (Poisson)
or top-k frames (binary). The token baseline generates its JSON answer greedily with a KV cache and
malformed answers count as misses.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from framestamp.runtime.decoding import (DECODINGS, TRANSCRIPT_BY, after_earlier, align_word_tracks, check_decoding,
                                        check_transcript_by, decode_events, ended_tasks, interval_ends_for,
                                        kth_of_every, transcript_rows)
from framestamp.runtime.audio import load_audio
from framestamp.runtime.chain import (CHAIN_SECONDS, CHAINED_TASKS, chain_occurrences, check_chain_seconds, joint_occurrences,
                                     link_audio)
from framestamp.runtime.console import stdout_for_the_answer
from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import FRAME_SECONDS
from framestamp.runtime.merging import DEFAULT_HEAD_PLACES, DEFAULT_POSITIONS, HEAD_PLACES, MERGE_KINDS, POSITION_KINDS
from framestamp.runtime.metrics import interval_scores, timestamp_scores
from framestamp.runtime.pacing import WEIGHT as PACE
from framestamp.runtime.prompts import (ANSWER_END, OCCURRENCE_TASKS, known_words, parse_answer, special_token_id,
                                       transcript_word_questions)

METHODS = ("poisson", "binary", "tokens")


def default_method(objective: str) -> str:
    return {"poisson": "poisson", "binary": "binary", "tokens": "tokens", "interpolated": "poisson"}[objective]


def decode_frames(scores: np.ndarray, frame_mask: np.ndarray, counts, method: str,
                  decoding: str = "ordered", plans=None, earlier=None, kth=None) -> list[np.ndarray]:
    """Per example: ``counts[b]`` times from one channel of frame scores (B, F): log-intensities for
    method "poisson", logits for "binary". ``decoding`` as ``decode_events``: "ordered" keeps a
    transcript's words on distinct frames; for one event both decodings agree. With merge ``plans``
    the scores are per merged token: segments of their widths (local merging), or spread back to
    the frames each token holds (global merging). ``earlier[b]``, when given and not empty: the
    tracks of occurrences 1..k-1 of example b's k-th occurrence question (per 40 ms frame), decoded
    jointly with it by ordered decoding. ``kth[b]``, when given and not None: example b's track marks every
    occurrence (a head trained with ``occurrences="every"``) and its answer is the kth[b]-th of them."""
    times = []
    for b in range(len(counts)):
        row = scores[b][frame_mask[b]]
        plan = plans[b] if plans is not None else None
        if kth is not None and kth[b] is not None:
            times.append(kth_of_every(row if plan is None else plan.spread(row), kth[b], FRAME_SECONDS))
            continue
        if earlier is not None and earlier[b] and decoding == "ordered" and plan is None:
            times.append(after_earlier(earlier[b], row, FRAME_SECONDS))
            continue
        if plan is not None and not plan.local:
            row = plan.spread(row)
        times.append(decode_events(row, int(counts[b]), method, decoding, FRAME_SECONDS,
                                   widths=None if plan is None else plan.widths))
    return times


def generate_answers(model, batch, max_new_tokens: int = 256) -> list[str]:
    """Greedy answers of the token baseline for a batch, as text."""
    return [model.tokenizer.decode(ids, skip_special_tokens=False)
            for ids in generate_token_ids(model, batch, max_new_tokens)]


@torch.no_grad()
def generate_token_ids(model, batch, max_new_tokens: int = 256) -> list[list[int]]:
    """Greedy answer tokens (up to the end token) for a batch: left-padded prompts, one KV cache."""
    device = batch.mel.device
    rows = [model.prompt_ids(example, int(frames), with_answer=False)
            for example, frames in zip(batch.examples, batch.num_audio_frames.tolist())]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), model.pad_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    audio_start = torch.zeros(len(rows), dtype=torch.long, device=device)
    for b, (ids, start) in enumerate(rows):
        input_ids[b, width - len(ids):] = torch.tensor(ids, device=device)
        attention_mask[b, width - len(ids):] = 1
        audio_start[b] = width - len(ids) + start
    audio, frame_counts = model.encode_batch(batch)
    embeddings = model.merged_embeddings(input_ids, audio_start, audio, frame_counts)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    output = model.language_model(inputs_embeds=embeddings, attention_mask=attention_mask, position_ids=positions,
                                  use_cache=True)
    end_id = special_token_id(model.tokenizer, ANSWER_END)
    generated = []
    finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
    next_position = positions[:, -1] + 1
    for _ in range(max_new_tokens):
        token = model.backbone.lm_head(output.last_hidden_state[:, -1]).argmax(-1)
        token = torch.where(finished, torch.full_like(token, end_id), token)
        generated.append(token)
        finished |= token == end_id
        if finished.all():
            break
        attention_mask = torch.cat((attention_mask, torch.ones_like(attention_mask[:, :1])), dim=1)
        output = model.language_model(input_ids=token[:, None], attention_mask=attention_mask,
                                      position_ids=next_position[:, None], use_cache=True,
                                      **model.next_step_cache(output))
        next_position = next_position + 1
    tokens = torch.stack(generated, dim=1).tolist()
    return [row[: row.index(end_id)] if end_id in row else row for row in tokens]


@torch.no_grad()
def predict(model, batch, method: str, decoding: str = "ordered", merging=None) -> list[np.ndarray | None]:
    """Predicted times per example (None for a malformed generated answer)."""
    return predict_intervals(model, batch, method, decoding, merging)[0]


@torch.no_grad()
def predict_intervals(model, batch, method: str, decoding: str = "ordered", merging=None, earlier=None,
                      word_rows=None, pace: float = PACE, keep_rows: dict | None = None):
    """(times per example, ends per example): ends from the head's end channel, else its inside
    channel, where the task is one that channel is trained on (``ended_tasks``), else None. With ``merging`` (a
    ``Merging``), the batch's prompts hold ``merging.tokens(frames)`` audio placeholders. ``earlier``
    as ``decode_frames``. ``word_rows[b]``, when given and not None: (known, scores) of transcript example
    b's word questions (``transcript_word_rows``), which then time it (``transcript_rows``, ``align_word_tracks``,
    paced by its words' lengths at weight ``pace``). ``keep_rows``, when given, receives each example's head scores
    (frames, channels) by id(example)."""
    counts = [len(example.times) for example in batch.examples]
    if method == "tokens":
        budget = 24 + 10 * max(counts)  # the JSON of the longest expected answer, with room to spare
        answers = generate_answers(model, batch, max_new_tokens=budget)
        times = [None if (parsed := parse_answer(text, ex.task)) is None else np.asarray(parsed)
                 for text, ex in zip(answers, batch.examples)]
        return times, [None] * len(times)
    if merging is not None and method == "tokens":
        raise InputError("merging applies to frame heads; the token baseline generates its answer as text")
    output = model.run_batch(batch, merging)
    scores = output.scores.cpu().double().numpy()
    frame_mask = output.frame_mask.cpu().numpy()
    kth = [asked_occurrence(example) if every_occurrence_head(model) else None for example in batch.examples]
    times = decode_frames(scores[..., 0], frame_mask, counts, method, decoding, output.plans, earlier, kth)
    channels = list(model.head_config.channels)
    ends = [None] * len(times)
    for b, example in enumerate(batch.examples):
        rows = scores[b][frame_mask[b]]  # (frames or merged tokens, channels)
        if output.plans is not None:  # the 40 ms grid: ends fall on segment edges
            rows = np.stack([output.plans[b].spread(rows[:, c]) for c in range(rows.shape[1])], axis=1)
        if keep_rows is not None:
            keep_rows[id(example)] = rows
        if word_rows and word_rows[b] is not None:
            known, words = word_rows[b]
            times[b], ends[b] = align_word_tracks(transcript_rows(known, words, rows), method, decoding, channels,
                                                  FRAME_SECONDS, example.prompt["transcript"].split(), pace)
        elif times[b] is not None and example.task in ended_tasks(channels):
            ends[b] = interval_ends_for(example.task, rows, channels, times[b], FRAME_SECONDS)
    return times, ends


@dataclass
class Evaluation:
    method: str
    tasks: dict = field(default_factory=dict)  # task -> TimestampScores
    malformed: dict = field(default_factory=dict)  # task -> answers that could not be parsed
    decoding: str | None = None  # frame heads only: one of DECODINGS
    ends: dict = field(default_factory=dict)  # task -> TimestampScores of interval ends (inside channel)
    intervals: dict = field(default_factory=dict)  # task -> IntervalScores (IoU of (start, end))
    occurrences: dict = field(default_factory=dict)  # "speaker #2", "word #5+" -> TimestampScores

    def as_dict(self) -> dict:
        record = {"method": self.method, "decoding": self.decoding,
                  "tasks": {task: {**scores.as_dict(), "malformed": self.malformed.get(task, 0)}
                            for task, scores in self.tasks.items()}}
        for task, scores in self.ends.items():
            record["tasks"][f"{task} end"] = {**scores.as_dict(), **self.intervals[task].as_dict()}
        record["occurrences"] = {key: scores.as_dict() for key, scores in self.occurrences.items()}
        return record

    def occurrence_table(self) -> str:
        """acc@40ms by the asked occurrence (the k-th speaker, the k-th time a word or event is heard)."""
        lines = ["asked          count  acc@20ms  acc@40ms  acc@100ms     MAD"]
        for key, scores in self.occurrences.items():
            acc = scores.accuracy
            lines.append(f"{key:<14} {scores.count:5d}  {acc[0.02]:8.1%}  {acc[0.04]:8.1%}  {acc[0.1]:9.1%}  "
                         f"{scores.mad * 1000:4.0f} ms")
        return "\n".join(lines)

    def table(self) -> str:
        title = f"method: {self.method}" + (f" ({self.decoding} decoding)" if self.decoding else "")
        lines = [title, "task         count  acc@20ms  acc@40ms  acc@100ms     MAD  malformed"]
        for task, scores in self.tasks.items():
            acc = scores.accuracy
            lines.append(f"{task:<12} {scores.count:5d}  {acc[0.02]:8.1%}  {acc[0.04]:8.1%}  {acc[0.1]:9.1%}  "
                         f"{scores.mad * 1000:4.0f} ms  {self.malformed.get(task, 0):9d}")
        if self.ends:
            lines.append("interval ends   count  acc@20ms  acc@40ms  acc@100ms     MAD    mIoU  R@0.5  R@0.7")
            for task, scores in self.ends.items():
                acc, spans = scores.accuracy, self.intervals[task]
                lines.append(f"{task + ' end':<15} {scores.count:5d}  {acc[0.02]:8.1%}  {acc[0.04]:8.1%}  {acc[0.1]:9.1%}  "
                             f"{scores.mad * 1000:4.0f} ms  {spans.miou:6.3f}  {spans.recall[0.5]:5.1%}  "
                             f"{spans.recall[0.7]:5.1%}")
        return "\n".join(lines)


OCCURRENCE_ROWS = 5  # k = 1..4 each, then "5+"


def _occurrence_order(key: str) -> tuple[str, int]:
    task, asked = key.split(" #")
    return task, int(asked.rstrip("+"))


def evaluate(model, examples, features, batch_size: int = 8, method: str | None = None,
             device: str | torch.device = "cpu", progress: bool = True, decoding: str = "ordered",
             merging=None, transcript_by: str = "words", vocabulary=None, pace: float = PACE,
             chain_seconds: float | None = CHAIN_SECONDS) -> Evaluation:
    """Score ``model`` on ``examples`` (features: an AudioCache) task by task, answered as ``answer_examples`` answers them."""
    method = method or default_method(model.head_config.objective)
    answers = answer_examples(model, examples, features, batch_size, method, device, progress, decoding, merging,
                              transcript_by, vocabulary, pace, chain_seconds)
    predicted, reference, malformed = defaultdict(list), defaultdict(list), defaultdict(int)
    predicted_spans, reference_spans = defaultdict(list), defaultdict(list)  # (start, end) where both have ends
    by_occurrence = defaultdict(lambda: ([], []))  # "speaker #2" -> (predicted, reference)
    for example, (times, ends) in zip(examples, answers):
        expected = np.asarray(example.times)
        if times is None or len(times) != len(expected):
            malformed[example.task] += times is None
            times = np.full(len(expected), np.nan)  # a miss for every time asked
            ends = None if ends is None else np.full(len(expected), np.nan)
        order = np.argsort(times, kind="stable")
        predicted[example.task].extend(np.asarray(times)[order])
        reference[example.task].extend(expected)
        if example.task != "transcript":
            asked = int(example.prompt.get("occurrence", 1))
            key = f"{example.task} #{asked}" if asked < OCCURRENCE_ROWS else f"{example.task} #{OCCURRENCE_ROWS}+"
            by_occurrence[key][0].extend(np.asarray(times)[order])
            by_occurrence[key][1].extend(expected)
        if ends is not None and example.ends is not None:
            predicted_spans[example.task].extend(zip(np.asarray(times)[order], np.asarray(ends)[order]))
            reference_spans[example.task].extend(zip(example.times, example.ends))
    tasks = {task: timestamp_scores(predicted[task], reference[task]) for task in sorted(reference)}
    ends = {task: timestamp_scores([end for _, end in predicted_spans[task]], [end for _, end in reference_spans[task]])
            for task in sorted(reference_spans)}
    spans = {task: interval_scores(np.asarray(predicted_spans[task]), np.asarray(reference_spans[task]))
             for task in sorted(reference_spans)}
    occurrences = {key: timestamp_scores(*by_occurrence[key]) for key in sorted(by_occurrence, key=_occurrence_order)}
    return Evaluation(method=method, tasks=tasks, malformed=dict(malformed), occurrences=occurrences,
                      decoding=None if method == "tokens" else decoding, ends=ends, intervals=spans)


def answer_examples(model, examples, features, batch_size: int = 8, method: str | None = None,
                    device: str | torch.device = "cpu", progress: bool = True, decoding: str = "ordered",
                    merging=None, transcript_by: str = "words", vocabulary=None, pace: float = PACE,
                    chain_seconds: float | None = CHAIN_SECONDS) -> list[tuple]:
    """(times, ends) for each of ``examples`` (features: an AudioCache), in their order, as the runtime
    answers: frame heads decode with ``decoding`` (one of DECODINGS), a k-th occurrence jointly with
    occurrences 1..k-1, and transcripts ``transcript_by`` (one of TRANSCRIPT_BY), a word outside
    ``vocabulary`` (the words the model was trained on; None: all) on the mean of its own and the
    transcript question's tracks,
    the words' lengths pacing them at weight ``pace`` (0: not paced). ``merging`` (a ``Merging``) merges audio tokens before the decoder. Times are None for a malformed
    generated answer. Without merging, a k-th occurrence of a word or event whose joint answers pass
    ``chain_seconds`` is found from there on as a chain of first occurrences, as the runtime finds it
    (``chained_answers``; None: never)."""
    from tqdm import tqdm

    from framestamp.training.batches import collate

    method = method or default_method(model.head_config.objective)
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    check_decoding(decoding)
    check_transcript_by(transcript_by)
    chain_seconds = check_chain_seconds(chain_seconds)
    if method != "tokens" and not model.head_config.uses_frames:
        raise InputError("this checkpoint has no frame head (objective 'tokens'): evaluate with --method tokens")
    model.eval()
    ordered = sorted(examples, key=lambda example: example.duration)  # similar lengths batch well
    frames_read = method != "tokens" and (merging is None or merging.head == "frames")  # a track per 40 ms frame
    joint = frames_read and decoding == "ordered" and not every_occurrence_head(model)  # "every": one track holds all
    earlier = earlier_occurrence_rows(model, ordered, features, batch_size, device, merging, progress) if joint else {}
    by_words = frames_read and transcript_by == "words"
    words = (transcript_word_rows(model, ordered, features, batch_size, device, merging, progress, vocabulary)
             if by_words else {})
    answers, kept = {}, {}  # kept: each example's head scores, for the chain
    for example in ordered:  # every word known: the words' rows time it, its own question need not be asked
        found = words.get(id(example))
        if found is not None and all(found[0]):
            answers[id(example)] = align_word_tracks(transcript_rows(*found, None), method, decoding,
                                                     list(model.head_config.channels), FRAME_SECONDS,
                                                     example.prompt["transcript"].split(), pace)
    ordered = [example for example in ordered if id(example) not in answers]
    for start in tqdm(range(0, len(ordered), batch_size), desc=f"evaluate ({method})", unit="batch",
                      disable=not progress):
        chunk = ordered[start:start + batch_size]
        batch = collate(chunk, features, model.prompt_ids, model.pad_id,
                        audio_tokens=None if merging is None else merging.tokens, share_clips=True).to(device)
        earlier_rows = [[rows[:, 0] for rows in earlier.get(id(example), [])] for example in chunk]
        word_rows = [words.get(id(example)) for example in chunk]
        for example, times, ends in zip(chunk, *predict_intervals(model, batch, method, decoding, merging,
                                                                  earlier_rows, word_rows, pace, kept)):
            answers[id(example)] = (times, ends)
    if joint and merging is None and chain_seconds is not None:
        answers.update(chained_answers(model, ordered, earlier, kept, features, method, device, chain_seconds))
    return [answers[id(example)] for example in examples]


def chained_answers(model, examples, earlier, own, features, method: str, device,
                    chain_seconds: float) -> dict[int, tuple]:
    """id(example) -> (times, ends) for each k-th occurrence question of a word or event in ``examples`` whose
    joint answers (from its own head scores ``own[id(example)]`` and ``earlier``'s of occurrences 1..k-1) pass
    ``chain_seconds``: found from there on as a chain of first occurrences (runtime/chain.py), each link asked
    of the clip's audio after the previous one's end, one pass per link, as the runtime's Locator does it.
    The rest keep their answers."""
    from framestamp.runtime.features import log_mel

    candidates = [example for example in examples
                  if example.task in CHAINED_TASKS and (asked_occurrence(example) or 0) >= 2
                  and example.duration > chain_seconds and len(earlier.get(id(example), [])) == asked_occurrence(example) - 1]
    channels = list(model.head_config.channels)
    chained = {}
    for example in candidates:
        joint = joint_occurrences([*earlier[id(example)], own[id(example)]], example.task, method, channels,
                                  FRAME_SECONDS)
        audio = None
        first = replace(example, prompt={**example.prompt, "occurrence": 1}, times=(0.0,), ends=None)

        def ask_first(offset: float):
            nonlocal audio
            audio = load_audio(features.audio_path(example)) if audio is None else audio
            part = link_audio(audio, offset, features.settings.sample_rate)
            if part is None:
                return None
            mel = log_mel(part, features.settings)
            link = question_rows(model, [first], lambda _: mel, 1, device)[0]
            start = decode_events(link[:, 0], 1, method, "ordered", FRAME_SECONDS)
            ends = interval_ends_for(example.task, link, channels, start, FRAME_SECONDS)
            return float(start[0]) + offset, None if ends is None else float(ends[0]) + offset, None

        index, links = chain_occurrences(joint, ask_first, chain_seconds)
        if index is not None:
            start, end, _ = links[-1]
            chained[id(example)] = (np.array([start]), None if end is None else np.array([end]))
    return chained


@torch.no_grad()
def question_rows(model, questions, features, batch_size: int, device, merging=None, progress: bool = False,
                  desc: str = "questions") -> list[np.ndarray]:
    """The head scores (frames, channels) per 40 ms frame of each of ``questions`` (Examples), in
    batches that hold each clip's log-mel once."""
    from tqdm import tqdm

    from framestamp.training.batches import collate

    rows = []
    for start in tqdm(range(0, len(questions), batch_size), desc=f"evaluate ({desc})", unit="batch",
                      disable=not progress or not questions):
        batch = collate(questions[start:start + batch_size], features, model.prompt_ids, model.pad_id,
                        audio_tokens=None if merging is None else merging.tokens, share_clips=True).to(device)
        output = model.run_batch(batch, merging)
        scores, frame_mask = output.scores.cpu().double().numpy(), output.frame_mask.cpu().numpy()
        rows += [scores[row][frame_mask[row]] for row in range(len(scores))]
    return rows


def every_occurrence_head(model) -> bool:
    """Whether ``model``'s k-th occurrence tracks mark every occurrence (``HeadConfig.occurrences``)."""
    return model.head_config.occurrences == "every"


def asked_occurrence(example) -> int | None:
    """The k of a k-th occurrence question; None for a question that asks no occurrence (a transcript)."""
    return int(example.prompt["occurrence"]) if example.task in OCCURRENCE_TASKS else None


def earlier_occurrence_rows(model, examples, features, batch_size: int, device, merging=None,
                            progress: bool = False) -> dict[int, list[np.ndarray]]:
    """id(example) -> the head scores (frames, channels; per 40 ms frame) of occurrences 1..k-1 of each k-th
    occurrence question (k >= 2) in ``examples``, each asked of the same clip: what ordered decoding decodes
    the k-th with (their onset tracks), as the runtime's count check asks them."""
    asked = [(example, number) for example in examples if example.task in OCCURRENCE_TASKS
             for number in range(1, int(example.prompt.get("occurrence", 1)))]
    questions = [replace(example, prompt={**example.prompt, "occurrence": number}) for example, number in asked]
    tracks = defaultdict(dict)
    for (example, number), rows in zip(asked, question_rows(model, questions, features, batch_size, device, merging,
                                                            progress, "earlier occurrences")):
        tracks[id(example)][number] = rows
    return {key: [found[number] for number in sorted(found)] for key, found in tracks.items()}


def transcript_word_rows(model, examples, features, batch_size: int, device, merging=None, progress: bool = False,
                         vocabulary=None) -> dict[int, tuple[list[bool], list[np.ndarray]]]:
    """id(example) -> (which words are in ``vocabulary`` (None: all), the head scores (frames, channels) of
    each word's question (``transcript_word_questions``) asked of its clip), for each transcript example:
    what ``transcript_rows`` and ``align_word_tracks`` time it with."""
    known = {id(example): known_words(example.prompt["transcript"].split(), vocabulary)
             for example in examples if example.task == "transcript"}
    asked = [(example, fields) for example in examples if example.task == "transcript"
             for fields in transcript_word_questions(example.prompt["transcript"].split())]
    questions = [replace(example, id=f"{example.id}#{index}", task="word", prompt=fields, times=(0.0,), ends=None)
                 for index, (example, fields) in enumerate(asked)]
    words = {key: [] for key in known}
    for (example, _), rows in zip(asked, question_rows(model, questions, features, batch_size, device, merging,
                                                       progress, "transcript words")):
        words[id(example)].append(rows)
    return {key: (known[key], rows) for key, rows in words.items()}


def trained_words(description: dict) -> list[str] | None:
    """The words a checkpoint (its ``framestamp.json``) or an exported artifact (its manifest) was trained on; None if not recorded."""
    return (description.get("trained_on") or description.get("training") or {}).get("vocabulary")


# ---------------------------------------------------------------------------------- the CLI
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a checkpoint folder written by `framestamp train`, or an artifact folder from `framestamp export`")
    parser.add_argument("manifest", type=Path, help="JSONL manifest to score against")
    parser.add_argument("--method", choices=METHODS, help="decoding (default: the checkpoint's objective)")
    parser.add_argument("--decoding", choices=DECODINGS, default="ordered",
                        help="frame heads: 'ordered' (default) puts a transcript's words on distinct frames, jointly, and a k-th "
                             "occurrence after occurrences 1..k-1 asked of the same clip; "
                             "'posterior' is the paper's per-event posterior mode (top-k frames for binary)")
    parser.add_argument("--transcript-by", choices=TRANSCRIPT_BY, default="words",
                        help="'words' (default) asks each transcript word as its own question and aligns the answers in "
                             "order; 'question' is the paper's one transcript question")
    parser.add_argument("--pace", type=float, default=PACE,
                        help=f"transcripts timed by words: weight of the prior that words follow each other as fast as "
                             f"their lengths predict at one speaking rate (default {PACE}; 0: no prior)")
    parser.add_argument("--merge", type=float, metavar="RATIO",
                        help="merge this share of the audio tokens away before the decoder (0-1, training-free)")
    parser.add_argument("--merge-kind", choices=MERGE_KINDS, default="local",
                        help="'local' (default) merges neighbours into time segments; 'global' is the ToMe-style control")
    parser.add_argument("--merge-positions", choices=POSITION_KINDS, default=DEFAULT_POSITIONS,
                        help="decoder position of a merged token: its first frame (default), the mean of its frames, "
                             "or its index ('compact')")
    parser.add_argument("--merge-head", choices=HEAD_PLACES, default=DEFAULT_HEAD_PLACES,
                        help="the head reads every 40 ms frame (default) or each merged segment once")
    parser.add_argument("--chain-after", type=float, default=CHAIN_SECONDS, metavar="SECONDS",
                        help="a k-th occurrence of a word or event whose joint answers pass this time is found from there "
                             "on as a chain of first occurrences, as the runtime finds it (default %(default)g; 0: never)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, help="score at most N examples, spread evenly over tasks")
    parser.add_argument("--min-seconds", type=float, help="only clips at least this long")
    parser.add_argument("--max-seconds", type=float, help="only clips at most this long")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for torch or ONNX Runtime (default: their choice, every core). Give each job 1 "
                             "when several run side by side: threads beyond the cores wait on each other")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--by-occurrence", action="store_true",
                        help="also a table by the asked occurrence: the k-th speaker, the k-th time a word or event "
                             "is heard (k = 1-4, then 5 and later); JSON always holds it")


def run(args: argparse.Namespace) -> int:
    with stdout_for_the_answer(args.json) as answer:  # --json: only the JSON on stdout, whatever else prints
        return evaluate_command(args, answer)


def evaluate_command(args: argparse.Namespace, answer) -> int:
    from framestamp.data.manifest import balanced_subset, read_manifest
    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import AudioCache, length_filter
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.model import Merging

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads {args.threads}: give 1 or more")
        torch.set_num_threads(args.threads)
    if (args.checkpoint / "manifest.json").is_file():  # an exported artifact: ONNX Runtime runs it
        from framestamp.export.parity import OnnxModel

        if args.method == "tokens":
            raise InputError("an exported artifact has no token generation; evaluate its checkpoint with --method tokens")
        model = OnnxModel(args.checkpoint, threads=args.threads)
        description = model.manifest
    else:
        model, description = load_checkpoint(args.checkpoint, device=args.device)
    examples = length_filter(read_manifest(args.manifest), args.min_seconds, args.max_seconds)
    if args.limit:
        examples = balanced_subset(examples, args.limit)
    if not examples:
        raise InputError(f"{args.manifest}: no examples left after the length filter")
    features = AudioCache(args.manifest.parent, FeatureSettings.from_json(description["features"]))
    merging = None if args.merge is None else Merging(args.merge, args.merge_kind, args.merge_positions,
                                                       args.merge_head)
    result = evaluate(model, examples, features, args.batch_size, args.method, args.device, progress=not args.json,
                      decoding=args.decoding, merging=merging, transcript_by=args.transcript_by,
                      vocabulary=trained_words(description), pace=args.pace, chain_seconds=args.chain_after)
    text = result.table() + ("\n\n" + result.occurrence_table() if args.by_occurrence else "")
    print(json.dumps(result.as_dict(), indent=2) if args.json else text, file=answer)
    return 0
