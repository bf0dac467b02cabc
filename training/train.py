"""Train a frame-head (or token-baseline) model on a manifest or on freshly generated synthetic data.

    framestamp train OUT --train train.jsonl --eval dev.jsonl --backbone omni-tiny --objective poisson
    framestamp train OUT --synth words,speakers,events --synth-count 2000 --steps 3000

OUT receives checkpoints (OUT/checkpoint-<step>/, each a loadable checkpoint), log.jsonl, and the
final model in OUT/model. Rerunning the same command after a kill resumes from the newest complete
checkpoint. Multi-GPU: launch the same command with `torchrun --nproc_per_node=N -m framestamp train ...`.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import numpy as np

from framestamp.runtime.decoding import OCCURRENCES
from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import FRAME_SECONDS
from framestamp.training.model import OBJECTIVES

# Held out of synthetic training data so evaluation hears voices the model never heard.
HELD_OUT_VOICES = ("en-029", "en-us-nyc")
ALL_VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")


class ManifestBatches:
    """Length-bucketed batches from manifest examples, resumable at the next batch (a BatchSource).

    With several processes (torchrun), process ``rank`` takes every ``world_size``-th batch.
    """

    def __init__(self, examples, batch_size: int, collate, seed: int = 0, rank: int = 0, world_size: int = 1,
                 per_clip: int = 1):
        from framestamp.training.batches import BucketBatchSampler, clip_key

        if len(examples) < batch_size * world_size:
            raise InputError(f"{len(examples)} training examples cannot fill a batch of {batch_size} per process")
        self.examples = examples
        self.sampler = BucketBatchSampler(examples, batch_size, seed=seed, drop_last=True, per_group=per_clip,
                                          groups=[clip_key(example) for example in examples] if per_clip > 1 else None)
        self.collate = collate
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position = 0, 0

    def __iter__(self):
        batches = self.sampler.batches_for_epoch(self.epoch)
        usable = len(batches) - len(batches) % self.world_size  # every process gets as many
        if self.position >= usable:  # saved right after an epoch's last batch: start the next
            self.epoch, self.position = self.epoch + 1, 0
            batches = self.sampler.batches_for_epoch(self.epoch)
        while self.position < usable:
            indices = batches[self.position + self.rank]
            self.position += self.world_size  # counted before the trainer sees it: resumes after it
            yield self.collate([self.examples[i] for i in indices])
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])  # refuses a state saved for other data
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def configure(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    parser.add_argument("out", type=Path, help="output folder: checkpoints, log.jsonl, final model in OUT/model")
    data.add_argument("--train", type=Path, help="training manifest (JSONL)")
    data.add_argument("--eval", type=Path, help="evaluation manifest (JSONL)")
    data.add_argument("--synth", help="instead of --train/--eval: generate synthetic data for these tasks "
                      "(e.g. words,speakers,events) into OUT/data, evaluating on held-out voices")
    data.add_argument("--synth-count", type=int, default=1000, help="training clips per synthetic task (default 1000)")
    data.add_argument("--synth-seed", type=int, default=0)
    data.add_argument("--min-seconds", type=float, help="train only on clips longer than this")
    data.add_argument("--max-seconds", type=float, help="train only on clips up to this long (e.g. 4 for an OOD study)")
    data.add_argument("--task-balance", type=float, default=1.0, metavar="POWER",
                      help="give each task a share of training examples proportional to its count ** POWER: 1 "
                      "(default) keeps the manifest's mix, 0 gives every task an equal share, 0.5 tempers it")
    data.add_argument("--eval-min-seconds", type=float, help="evaluate only clips longer than this")
    data.add_argument("--eval-max-seconds", type=float, help="evaluate only clips up to this long")
    data.add_argument("--eval-limit", type=int, default=400, help="examples scored at each evaluation (default 400)")

    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="omni-tiny", help="a preset (omni-tiny, omni-small, qwen2-audio-tiny, ...) "
                       "or a local checkpoint folder (e.g. a Qwen2.5-Omni-3B download)")
    model.add_argument("--init", type=Path, metavar="CHECKPOINT",
                       help="start from a trained framestamp checkpoint's weights (fine-tuning; same --backbone "
                       "and the same or a longer --lookahead, whose added frames start at weight 0; a new head "
                       "channel starts fresh; a deeper preset of the same width, "
                       "e.g. omni-tiny-deep from omni-tiny, starts with its extra layers as the identity), "
                       "e.g. framestamp/models/omni-tiny-synth")
    model.add_argument("--objective", choices=OBJECTIVES, default="poisson")
    model.add_argument("--lookahead", type=int, default=0, help="following frames the head reads (default 0: per-frame)")
    model.add_argument("--poisson-weight", type=float, default=1.0, help="lambda in tokens + lambda * poisson")
    model.add_argument("--span", type=float, default=0.0, metavar="SECONDS",
                       help="bound how far back an audio position attends over the audio in the decoder (the question "
                       "stays in view); long recordings then answer in windows exactly as in one pass (default 0: "
                       "unbounded, the paper's)")
    model.add_argument("--count-term", action="store_true", help="also train Lambda(T) to the number of events")
    model.add_argument("--absent", type=float, default=0.0, metavar="SHARE",
                       help="for this share of the clips' k-th occurrence groups, also ask occurrence n + 1 and train "
                            "it on no event, so the head learns to say there is none (needs --count-term)")
    model.add_argument("--occurrences", choices=OCCURRENCES, default="asked",
                       help="what a k-th occurrence question's track marks: 'asked' (default), the k-th alone; "
                            "'every', every occurrence in the clip, the k-th picked by decoding (needs --count-term)")
    aids = parser.add_argument_group("training aids (training-only losses; the exported model is unchanged)")
    aids.add_argument("--word-identity", type=float, default=0.0, metavar="WEIGHT",
                      help="weight of a frame-level loss naming the word spoken at each audio frame through the "
                      "LM's tied token embeddings; labels from the manifest's transcript lines (default 0: off)")
    model.add_argument("--channels", default="onset", help="head channels, comma-separated: onset (the timestamp "
                       "channel, always first), optionally inside (frames inside the asked word; see --inside) and "
                       "end (where the asked word, transcript word or event ends; see --end)")
    aids.add_argument("--inside", type=float, default=0.0, metavar="WEIGHT",
                      help="weight of a per-frame BCE on the head's inside channel: every frame of every occurrence "
                      "of the asked word is positive, other words' frames negative (needs --channels onset,inside)")
    aids.add_argument("--end", type=float, default=0.0, metavar="WEIGHT",
                      help="weight of the Poisson NLL of where the asked thing ends (the manifest's ends) on the "
                      "head's end channel, which then gives interval ends (needs --channels onset,...,end)")
    aids.add_argument("--every", type=float, default=0.0, metavar="WEIGHT",
                      help="weight of the Poisson NLL (with the count term) of every occurrence of what a k-th "
                      "occurrence question asks about, on the head's every channel (needs --channels onset,...,every); "
                      "the onset channel still answers the asked occurrence")
    aids.add_argument("--spelling", type=float, default=0.0, metavar="WEIGHT",
                      help="weight of a CTC loss spelling each clip's words letter by letter from the encoder's "
                      "audio embeddings through the LM's tied token embeddings of the letters; labels from the "
                      "manifest's transcript lines (default 0: off)")
    aids.add_argument("--position-shift", type=float, default=0.0, metavar="SECONDS",
                      help="move each example's audio a random 0..SECONDS further from the question on the decoder's "
                      "position axis, so that audio far into a long recording sounds as it did in training; pair "
                      "it with --span (default 0: off)")
    aids.add_argument("--inside-speakers", action="store_true",
                      help="also train the inside channel on speaker questions: a k-th speaker question's frames "
                      "from that speaker's onset on are inside, those before it outside (needs --inside)")
    aids.add_argument("--merge-train", metavar="RATIOS",
                      help="merge-aware training: each batch's audio tokens are merged as `--merge` does at one of "
                      "these ratios, picked per batch (e.g. 0,0.2,0.4,0.6; 0 keeps a batch unmerged), so the model "
                      "learns to time from merged tokens; the exported model is unchanged and runs merged or not")
    aids.add_argument("--augment", action="store_true",
                      help="perturb each training clip's log-mel: a vocal-tract-length warp of up to 10%% and two "
                      "frequency masks of up to 12 mel bins, drawn per clip and batch (reproducible, resumable); "
                      "times do not move and the exported model is unchanged")
    aids.add_argument("--word-identity-at", choices=("audio", "decoder"), default="audio",
                      help="where that loss reads: the encoder's audio embeddings (default) or the decoder's "
                      "final states at the audio frames")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    optim.add_argument("--batch-size", type=int, default=8)
    optim.add_argument("--questions-per-clip", type=int, default=1, metavar="N",
                       help="keep up to N questions about one clip together in a batch (default 1: batches mix "
                       "clips freely); the encoder hears each clip once for all its questions, so a step costs "
                       "less and contrasts the words of one clip")
    optim.add_argument("--grad-accumulation", type=int, default=1)
    optim.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3 for presets "
                       "trained from scratch; the paper fine-tunes Qwen2.5-Omni at 1e-6)")
    optim.add_argument("--warmup", type=int, default=100)
    optim.add_argument("--weight-decay", type=float, default=0.01)
    optim.add_argument("--eval-every", type=int, default=500)
    optim.add_argument("--save-every", type=int, default=100)
    optim.add_argument("--device", default="auto", help="auto | cpu | cuda")
    optim.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 autocast on CUDA")
    optim.add_argument("--seed", type=int, default=0)
    optim.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")


def synthesize(out: Path, tasks: str, count: int, seed: int) -> tuple[Path, Path]:
    """Training data with most voices, evaluation data with the held-out voices; reused if present."""
    from framestamp.cli import main as framestamp_main

    train_voices = ",".join(v for v in ALL_VOICES if v not in HELD_OUT_VOICES)
    plans = [(out / "data" / "train", count, seed, train_voices),
             (out / "data" / "eval", max(20, count // 10), seed + 1, ",".join(HELD_OUT_VOICES))]
    for folder, clips, clip_seed, voices in plans:
        if (folder / "manifest.jsonl").is_file():
            continue  # generated by an earlier (killed) run of this command: same seed, same data
        status = framestamp_main(["synth", str(folder), "--tasks", tasks, "--count", str(clips),
                                  "--seed", str(clip_seed), "--voices", voices])
        if status:
            raise InputError(f"generating synthetic data into {folder} failed")
    return plans[0][0] / "manifest.jsonl", plans[1][0] / "manifest.jsonl"


def run(args: argparse.Namespace) -> int:
    import os

    import torch

    from framestamp.data.manifest import balanced_subset, check_audio_files, read_manifest
    from framestamp.runtime.features import DEFAULT_SETTINGS
    from framestamp.training.aids import Aids, Spellings, WordFrameLabels, clip_word_spans
    from framestamp.training.batches import (AbsentOccurrences, AudioCache, AugmentedBatches, EveryOccurrence,
                                             MergedBatches, balance_tasks, collate, length_filter)
    from framestamp.training.checkpoint import (build_model, init_from, load_weights, read_description,
                                               save_checkpoint, write_checkpoint)
    from framestamp.training.evaluate import evaluate
    from framestamp.training.model import HeadConfig
    from framestamp.training.trainer import TrainConfig, Trainer, checkpoint_folders

    if args.threads:
        torch.set_num_threads(args.threads)
    command = "framestamp train " + " ".join(_argv_of(args))
    if args.synth:
        if args.train or args.eval:
            raise InputError("give either --synth or --train/--eval, not both")
        args.train, args.eval = synthesize(args.out, args.synth, args.synth_count, args.synth_seed)
    if args.train is None:
        raise InputError("give a training manifest with --train, or --synth TASKS to generate one")

    for manifest in (args.train, args.eval):
        if manifest is not None:
            check_audio_files(manifest)  # every line's audio, before step 1 rather than when its batch comes up
    every_train_example = read_manifest(args.train)  # the aids label clips from all of it, filtered or not
    train_examples = length_filter(every_train_example, args.min_seconds, args.max_seconds)
    if not train_examples:
        raise InputError(f"{args.train}: no training examples left after the length filter")
    if args.task_balance != 1.0:
        train_examples = balance_tasks(train_examples, args.task_balance, seed=args.seed)
    eval_examples = []
    if args.eval:
        eval_examples = length_filter(read_manifest(args.eval), args.eval_min_seconds, args.eval_max_seconds)
        eval_examples = balanced_subset(eval_examples, args.eval_limit)

    channels = tuple(name.strip() for name in args.channels.split(","))
    if (channels[0] != "onset" or not set(channels) <= {"onset", "inside", "end", "every"}
            or len(set(channels)) != len(channels)):
        raise InputError(f"--channels must be onset followed by any of inside, end, every; got {args.channels!r}")
    if args.inside and "inside" not in channels:
        raise InputError("--inside needs the inside channel: add --channels onset,inside")
    if ("end" in channels) != (args.end > 0):
        raise InputError("the end channel and --end go together: --channels onset,end (or onset,inside,end) with "
                         "--end WEIGHT > 0, or neither")
    if ("every" in channels) != (args.every > 0):
        raise InputError("the every channel and --every go together: --channels onset,...,every with --every WEIGHT > 0, "
                         "or neither")
    head = HeadConfig(objective=args.objective, lookahead=args.lookahead, poisson_weight=args.poisson_weight,
                      count_term=args.count_term, channels=channels, occurrences=args.occurrences,
                      span=seconds_to_frames(args.span, "--span"))
    model = build_model(args.backbone, head, seed=args.seed)
    started_from = init_from(model, args.init) if args.init else None
    model.aids = Aids(word_identity=args.word_identity, word_identity_at=args.word_identity_at, inside=args.inside,
                      inside_speakers=args.inside_speakers, end=args.end, every=args.every, spelling=args.spelling,
                      position_shift=seconds_to_frames(args.position_shift, "--position-shift"))
    frame_labels = None
    if model.aids.needs_frame_labels or model.aids.spelling:
        spans = clip_word_spans(every_train_example)
        if not spans:
            raise InputError(f"--word-identity, --inside and --spelling need transcript lines with word ends in "
                             f"{args.train} (framestamp synth and the LibriSpeech loader write them)")
        if model.aids.needs_frame_labels:
            frame_labels = WordFrameLabels(spans, model.tokenizer, speakers=model.aids.inside_speakers)
        if model.aids.spelling:
            model.spellings = Spellings(spans, model.tokenizer)
    config = TrainConfig(learning_rate=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup,
                         max_steps=args.steps, batch_size=args.batch_size, grad_accumulation=args.grad_accumulation,
                         eval_every=args.eval_every, save_every=args.save_every, seed=args.seed,
                         precision=args.precision, device=args.device)
    settings = DEFAULT_SETTINGS
    features = AudioCache(args.train.parent, settings)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    # Every occurrence of what each k-th occurrence question asks about: the onset channel's events with
    # --occurrences every (the evaluation keeps the k-th questions, decoding picks the k-th), the every aid's
    all_occurrences = EveryOccurrence(every_train_example) if args.occurrences == "every" or args.every else None
    targets = all_occurrences if args.occurrences == "every" else None
    if args.absent:
        if not args.count_term:
            raise InputError("--absent trains questions on no event, which only the count term scores: add --count-term")
        past_count = AbsentOccurrences(train_examples, args.absent, targets)
        train_examples, targets = list(train_examples) + past_count.absent, past_count
        print(f"--absent {args.absent:g}: {len(past_count.absent)} questions past their count added")
    every = all_occurrences if args.every else None
    collate_batch = partial(collate, features=features, prompt_ids=model.prompt_ids, pad_id=model.pad_id,
                            frame_labels=frame_labels, share_clips=True, targets=targets, every=every)
    if args.augment:
        collate_batch = AugmentedBatches(collate_batch, features, seed=args.seed, settings=settings)
    if args.merge_train:
        collate_batch = MergedBatches(collate_batch, merge_ratios(args.merge_train), seed=args.seed)
    if args.questions_per_clip < 1 or args.questions_per_clip > args.batch_size:
        raise InputError(f"--questions-per-clip must be between 1 and --batch-size ({args.batch_size}), "
                         f"got {args.questions_per_clip}")
    # A run that resumes takes its weights from its checkpoint: the scales below are set on a fresh start only.
    fresh_start = started_from is not None and not checkpoint_folders(args.out)
    plain = partial(collate, features=features, prompt_ids=model.prompt_ids, pad_id=model.pad_id, share_clips=True,
                    targets=targets, every=every)  # no augmentation, no merging: the scale the checkpoint has
    if args.count_term and fresh_start and not started_from.get("count_term"):
        shift = scale_to_counts(model, train_examples, plain, seed=args.seed)
        print(f"the count term starts from a checkpoint trained without it: onset log-intensity shifted by {-shift:+.2f}")
    if every is not None and fresh_start and "every" not in started_from["head_channels"]:
        # A new every channel starts as the onset channel (peaked at the asked occurrence), at the counts' scale.
        with torch.no_grad():
            projection, index = model.head.projection, channels.index("every")
            projection.weight[index], projection.bias[index] = projection.weight[0], projection.bias[0]
        scale_to_counts(model, train_examples, plain, seed=args.seed, channel=index, counted="every_mask")
    batches = ManifestBatches(train_examples, args.batch_size, collate_batch, seed=args.seed, rank=rank,
                              world_size=world_size, per_clip=args.questions_per_clip)
    metadata = {"command": command, "train_manifest": str(args.train),
                "eval_manifest": str(args.eval) if args.eval else None, "train_examples": len(train_examples),
                "length_filter": [args.min_seconds, args.max_seconds], "task_balance": args.task_balance,
                "questions_per_clip": args.questions_per_clip,
                "merge_train": merge_ratios(args.merge_train) if args.merge_train else None,
                "augment": args.augment, "absent": args.absent,
                "config": config.to_dict(),
                "aids": model.aids.to_json(), "init": started_from,
                # What the model was asked about: the runtime refuses an event label it never saw, and
                # warns about words it never heard asked about and audio longer than any it trained on.
                "tasks": sorted({example.task for example in train_examples}),
                "event_labels": sorted({example.prompt["event"] for example in train_examples if example.task == "event"}),
                "vocabulary": trained_vocabulary(train_examples),
                "max_seconds": max(example.duration for example in train_examples)}
    if args.init:
        metadata.update(kept_from(read_description(args.init).get("training") or {}, metadata))

    eval_fn = None
    if eval_examples:
        eval_features = AudioCache(args.eval.parent, settings)

        def eval_fn(trained):
            result = evaluate(trained, eval_examples, eval_features, batch_size=args.batch_size,
                              device=next(trained.parameters()).device, progress=False,
                              vocabulary=metadata["vocabulary"])
            trained.train()
            # acc@40ms per task in the progress bar; log.jsonl keeps every number.
            return {f"{task}/{key}": value for task, scores in result.as_dict()["tasks"].items()
                    for key, value in scores.items() if key.startswith("acc@") or key == "mad_ms"}

    trainer = Trainer(model, config, batches, eval_fn, output_dir=args.out,
                      save_model=partial(write_checkpoint, features=settings.to_json(), training=metadata),
                      load_model=load_weights)
    final_metrics = trainer.train()
    if rank == 0:
        metadata.update(steps=trainer.step, final_eval=final_metrics)
        save_checkpoint(model.cpu(), args.out / "model", features=settings.to_json(), training=metadata)
        print(f"model written to {args.out / 'model'}")
        if final_metrics:
            print(json.dumps(final_metrics, indent=2))
    return 0


SCALE_EXAMPLES = 64  # training questions that measure a checkpoint's intensity scale (scale_to_counts)


def scale_to_counts(model, examples, collate, seed: int = 0, batch_size: int = 8, channel: int = 0,
                    counted: str = "event_mask") -> float:
    """Shift head ``channel`` (default onset) so that Lambda(T) matches the number of events (the batch's
    ``counted`` mask; median over the examples that have some, of a seeded draw of ``SCALE_EXAMPLES`` of
    ``examples``, in log); returns the log shift taken away.

    Eq. 5 leaves the intensity's overall scale free, so a checkpoint trained without the count term can
    sit at any Lambda(T) (thousands of events a clip); starting the count term there would spend every
    weight's first steps on the scale instead of on where events are. The shift changes no decoded time.
    """
    import torch

    rng = np.random.default_rng([seed, 11])
    chosen = [examples[i] for i in sorted(rng.choice(len(examples), min(SCALE_EXAMPLES, len(examples)), replace=False))]
    gaps = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(chosen), batch_size):
            batch = collate(chosen[start:start + batch_size])
            output = model.run_batch(batch)
            track = output.scores[..., channel].masked_fill(~output.frame_mask, -torch.inf)
            counts = getattr(batch, counted).sum(-1)
            gaps.append((torch.logsumexp(track, -1) - counts.clamp(min=1).log())[counts > 0])
        shift = float(torch.quantile(torch.cat(gaps).double(), 0.5))
        model.head.projection.bias[channel] -= shift
    model.train(was_training)
    return shift


def seconds_to_frames(seconds: float, flag: str) -> int:
    """A whole number of 40 ms frames from ``flag``'s seconds (0 stays 0: off)."""
    if not seconds >= 0:
        raise InputError(f"{flag} takes seconds >= 0, got {seconds}")
    frames = round(seconds / FRAME_SECONDS)
    if seconds and frames < 1:
        raise InputError(f"{flag} {seconds} is less than one 40 ms frame")
    return frames


def merge_ratios(text: str) -> list[float]:
    """"0,0.2,0.4" -> [0.0, 0.2, 0.4]: shares of audio tokens merged away, each in [0, 1)."""
    try:
        ratios = [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(f"--merge-train takes comma-separated ratios such as 0,0.2,0.4; got {text!r}") from None
    if not all(0 <= ratio < 1 for ratio in ratios):
        raise InputError(f"--merge-train ratios are shares of audio tokens merged away, in [0, 1); got {text!r}")
    return ratios


def kept_from(earlier: dict, now: dict) -> dict:
    """What a fine-tune was asked about: its start's tasks, event labels, words and longest clip beside
    its own manifest's (the weights keep what the start learned; averaging needs runs to agree)."""
    kept = {key: sorted(set(now[key]) | set(earlier.get(key) or ())) for key in ("tasks", "event_labels", "vocabulary")}
    kept["max_seconds"] = max(now["max_seconds"], earlier.get("max_seconds") or 0.0)
    return kept


def trained_vocabulary(examples) -> list[str]:
    """Every word a word or transcript question asked about, as the runtime spells them (sorted)."""
    from framestamp.runtime.prompts import normalize_transcript, normalize_word

    words = set()
    for example in examples:
        if example.task == "word":
            words.add(normalize_word(example.prompt["word"]))
        elif example.task == "transcript":
            words.update(said for _, said in normalize_transcript(example.prompt["transcript"]))
    return sorted(words)


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces this run, from the parsed arguments."""
    words = [str(args.out)]
    for name, value in sorted(vars(args).items()):
        if name in ("out", "command", "_run") or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return words
