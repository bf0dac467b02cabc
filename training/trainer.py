"""The training loop, independent of the model: AdamW, warmup + decay, accumulation, clipping,
atomic checkpoints holding every RNG state, exact resume, and torchrun / DistributedDataParallel.

    trainer = Trainer(model, TrainConfig(max_steps=2000), InMemoryBatches(examples, batch_size=8),
                      output_dir="runs/words", eval_fn=evaluate, save_model=save_checkpoint)
    trainer.train()   # run it again after a crash: it resumes from the newest complete checkpoint

The model is any ``nn.Module`` with ``training_loss(batch) -> (loss, metrics)``. Batches come from a
resumable ``BatchSource``. A step is one optimizer step (``grad_accumulation`` micro-batches).

Learning rate: linear warmup over ``warmup_steps``, then cosine (default) or linear decay that
reaches ``min_learning_rate`` at ``max_steps``; see ``learning_rate_at``.

``output_dir`` holds ``checkpoint-<step>/`` folders (the last ``keep_checkpoints``), ``best/`` (the
model with the best ``best_metric``, if one is named) and ``log.jsonl`` (one JSON record per line:
train, eval, save, start and resume events, each with its step). A checkpoint folder holds what
``save_model`` writes, ``trainer_state.json`` (step, config, best metric, world size) and
``trainer_state.pt`` (AdamW state and, per process, the RNG states and the batch source's state).
Folders are built under a temporary name and renamed when complete, so a run killed mid-save leaves
only a ``.checkpoint-<step>.*.tmp`` folder, which the next run ignores and deletes.

Resume is exact: on CPU, with the same config and thread count, a resumed run computes bit for bit
the losses and weights of an uninterrupted one. On CUDA it is as exact as the kernels are
deterministic (``torch.use_deterministic_algorithms``).

Several GPUs: launch the same script with ``torchrun --nproc_per_node=N``. Each process trains on
its own share of batches (the batch source must yield that process's share: see
``InMemoryBatches(rank=, world_size=)``), gradients are averaged by DistributedDataParallel, and
only rank 0 evaluates, logs and writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from framestamp.runtime.errors import FramestampError, InputError
from framestamp.runtime.files import atomic_path

CHECKPOINT_PREFIX = "checkpoint-"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.pt"
LOG_FILE = "log.jsonl"
BEST_FOLDER = "best"
STATE_FORMAT = 1


class TrainingDiverged(FramestampError):
    """The loss or gradient norm stopped being finite; no checkpoint is written from that state."""


@dataclass
class TrainConfig:
    """Everything that shapes a training run; saved in every checkpoint and readable as JSON."""

    learning_rate: float = 1e-4
    weight_decay: float = 0.01  # AdamW's decoupled decay; never applied to biases or norm scales
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    max_steps: int = 2000
    decay: str = "cosine"  # "cosine" | "linear", from learning_rate down to min_learning_rate
    min_learning_rate: float = 0.0
    batch_size: int = 8  # examples per micro-batch per process: for the batch source the caller builds
    grad_accumulation: int = 1  # micro-batches per optimizer step
    max_grad_norm: float | None = 1.0  # None: no clipping
    eval_every: int = 500  # optimizer steps; 0: only at the end
    # A crash loses at most save_every steps; a save writes the weights plus AdamW's two moments (3x the
    # trainable weights: ~18 MB, well under a second, for a 1.5M-parameter tiny preset, so CPU runs can
    # save often). For a multi-GB backbone on GPU raise it so that saving stays a small share of the time.
    save_every: int = 100  # optimizer steps; 0: only at the end
    keep_checkpoints: int = 3  # the newest this many checkpoint folders are kept
    best_metric: str | None = None  # key of eval_fn's dict whose best value is saved to best/
    best_metric_mode: str = "min"  # "min" | "max"
    log_every: int = 10  # optimizer steps between train records in log.jsonl
    seed: int = 0  # python, numpy and torch RNGs (plus the process rank) at the start of a run
    precision: str = "fp32"  # "fp32" | "bf16": bf16 autocast on CUDA; on CPU it falls back to fp32
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    num_workers: int = 0  # data-loading workers: for the batch source the caller builds

    def __post_init__(self):
        problems = list(_type_problems(self))
        if not problems:
            self.betas = tuple(self.betas)
            problems = list(_config_problems(self))
        if problems:
            raise InputError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["betas"] = list(self.betas)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown training config keys {unknown}; known keys: {', '.join(sorted(known))}")
        return cls(**values)

    def to_json(self, path: str | Path) -> None:
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        try:
            values = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(values, dict):
            raise InputError(f"{path}: a training config is a JSON object of TrainConfig fields")
        try:
            return cls.from_dict(values)
        except InputError as error:
            raise InputError(f"{path}: {error}") from None


def _type_problems(config: TrainConfig) -> Iterator[str]:
    """Values of the wrong kind, as a hand-edited JSON file can hold ("max_steps": "100")."""
    kinds = {"int": (int, "an integer"), "float": ((int, float), "a number"), "str": (str, "a string"),
             "tuple[float, float]": ((list, tuple), "a pair of numbers")}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        kind, _, optional = field.type.partition(" | ")
        if value is None and optional == "None":
            continue
        expected, description = kinds[kind]
        if isinstance(value, bool) or not isinstance(value, expected):
            yield f"{field.name} must be {description}{' or null' if optional else ''}, got {value!r}"


def _config_problems(config: TrainConfig) -> Iterator[str]:
    choices = {"decay": ("cosine", "linear"), "precision": ("fp32", "bf16"),
               "device": ("auto", "cpu", "cuda"), "best_metric_mode": ("min", "max")}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            yield f"{name} must be one of {', '.join(allowed)}, got {getattr(config, name)!r}"
    for name in ("max_steps", "batch_size", "grad_accumulation", "keep_checkpoints", "log_every"):
        if getattr(config, name) < 1:
            yield f"{name} must be at least 1, got {getattr(config, name)}"
    for name in ("warmup_steps", "eval_every", "save_every", "num_workers", "weight_decay", "min_learning_rate"):
        if getattr(config, name) < 0:
            yield f"{name} must not be negative, got {getattr(config, name)}"
    if not config.learning_rate > 0:
        yield f"learning_rate must be positive, got {config.learning_rate}"
    if config.min_learning_rate > config.learning_rate:
        yield f"min_learning_rate ({config.min_learning_rate}) must not exceed learning_rate ({config.learning_rate})"
    if config.warmup_steps > config.max_steps:
        yield f"warmup_steps ({config.warmup_steps}) must not exceed max_steps ({config.max_steps})"
    if len(config.betas) != 2 or not all(0 <= beta < 1 for beta in config.betas):
        yield f"betas must be two numbers in [0, 1), got {list(config.betas)}"
    if config.max_grad_norm is not None and not config.max_grad_norm > 0:
        yield f"max_grad_norm must be positive or null (no clipping), got {config.max_grad_norm}"


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based: the number of steps already taken).

    Warmup: ``learning_rate * (step + 1) / warmup_steps``, so the first step already moves.
    Then ``min_learning_rate + (learning_rate - min_learning_rate) * shape(progress)`` with progress
    0 at ``warmup_steps`` and 1 at ``max_steps`` and shape ``(1 + cos(pi p)) / 2`` or ``1 - p``.
    """
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    decay_steps = config.max_steps - config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / decay_steps) if decay_steps > 0 else 1.0
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if config.decay == "cosine" else 1 - progress
    return config.min_learning_rate + (config.learning_rate - config.min_learning_rate) * shape


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: [decayed, not decayed], trainable parameters only."""
    decayed, not_decayed = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            # Biases and norm scales are the 1-D tensors; decaying them pulls norms towards zero.
            (not_decayed if parameter.ndim < 2 else decayed).append(parameter)
    if not decayed and not not_decayed:
        raise InputError("the model has no trainable parameters: unfreeze the parts to train (requires_grad=True)")
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": not_decayed, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------
# Batch sources


@runtime_checkable
class BatchSource(Protocol):
    """Where training batches come from, resumably.

    ``iter(source)`` yields batches, forever or for one pass (the Trainer starts another pass when
    one ends). ``state_dict()`` describes the position after the last batch yielded, so that a
    source given that state by ``load_state_dict`` yields next what the original would have. The
    state travels in ``trainer_state.pt``: plain Python values and tensors only.
    """

    def __iter__(self) -> Iterator[Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class InMemoryBatches:
    """Batches of ``batch_size`` examples from a list, shuffled anew each pass from (seed, pass).

    One ``iter()`` is one pass; the last incomplete batch is dropped so that every micro-batch
    weighs the same in gradient accumulation. With ``world_size`` processes, process ``rank`` takes
    every ``world_size``-th batch of the same shuffled order, and all get the same number.
    ``collate`` turns a list of examples into a batch (default: stack tensors field by field).
    """

    def __init__(self, examples: Sequence[Any], batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 collate: Callable[[list], Any] | None = None, rank: int = 0, world_size: int = 1):
        if len(examples) < batch_size * world_size:
            raise InputError(
                f"{len(examples)} examples cannot fill one batch of {batch_size} on each of {world_size} "
                "processes: lower batch_size or add examples"
            )
        self.examples = examples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.collate = collate or torch.utils.data.default_collate
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0  # batches of this pass already yielded, counted over all processes

    @property
    def batches_per_epoch(self) -> int:
        return len(self.examples) // self.batch_size // self.world_size * self.world_size

    def __iter__(self) -> Iterator[Any]:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        order = self._order(self.epoch)
        while self.position < self.batches_per_epoch:
            start = (self.position + self.rank) * self.batch_size
            # Advance before yielding: state_dict() must already point past the batch handed out.
            self.position += self.world_size
            yield self.collate([self.examples[int(i)] for i in order[start:start + self.batch_size]])

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.examples))
        # A seed sequence of (seed, epoch): no two (seed, epoch) pairs share an order.
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


# ---------------------------------------------------------------------------------------------
# Checkpoint folders


def save_weights(model: nn.Module, folder: Path) -> None:
    """Default ``save_model``: the state dict as ``folder/model.safetensors`` (tied tensors once)."""
    from safetensors.torch import save_model

    save_model(model, str(Path(folder) / "model.safetensors"))


def load_weights(model: nn.Module, folder: Path) -> None:
    """Default ``load_model``: read ``folder/model.safetensors`` into ``model``, every key required."""
    from safetensors.torch import load_model

    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise InputError(f"{folder} has no model.safetensors: pass the load_model that reads your save_model's files")
    load_model(model, str(path), strict=True)


def checkpoint_folders(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders in ``output_dir``, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for folder in output_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        step = folder.name[len(CHECKPOINT_PREFIX):]
        # The state file is written last inside the temporary folder: without it a folder is not ours.
        if step.isdigit() and (folder / STATE_JSON).is_file():
            found.append((int(step), folder))
    return [folder for _, folder in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    folders = checkpoint_folders(output_dir)
    return folders[-1] if folders else None


def _remove_leftovers(output_dir: Path) -> list[Path]:
    """Delete temporary folders of saves that never finished (``atomic_path`` names them ``.*.tmp``)."""
    leftovers = [path for path in output_dir.glob(".*.tmp") if path.is_dir()]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def _remove_checkpoint(folder: Path) -> None:
    # Rename first: a kill during rmtree then leaves a .tmp leftover, never a half-deleted checkpoint.
    doomed = folder.with_name(f".{folder.name}.removing.tmp")
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Processes, devices and random states


@dataclass(frozen=True)
class Processes:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    started_group: bool = False  # this Trainer called init_process_group, so it ends the group too

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but torch sees no GPU: use device 'cpu' or 'auto'")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _start_processes(device_name: str) -> tuple[Processes, torch.device]:
    """Join the process group torchrun describes in the environment, if any; else run alone."""
    if dist.is_available() and dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        processes = Processes(dist.get_rank(), local_rank, dist.get_world_size())
        return processes, _resolve_device(device_name, local_rank)
    if "WORLD_SIZE" not in os.environ:
        return Processes(), _resolve_device(device_name, 0)
    missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise InputError(f"WORLD_SIZE is set but {', '.join(missing)} are not: launch several processes with torchrun")
    local_rank = int(os.environ["LOCAL_RANK"])
    device = _resolve_device(device_name, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return Processes(dist.get_rank(), local_rank, dist.get_world_size(), started_group=True), device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every CUDA device too


def _rng_state(device: torch.device) -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        # The key as a list: trainer_state.pt is read with weights_only, which refuses NumPy arrays.
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
        # This process's GPU only: asking for all of them would start a CUDA context on every GPU.
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(value, device) for value in batch)
    if callable(getattr(batch, "to", None)):
        return batch.to(device)  # transformers' BatchFeature and the like
    return batch


def _plain(value: Any) -> Any:
    """A metric as a JSON number (tensors and NumPy scalars included)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _print_message(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)  # above the progress bar, not through it


class _TrainingLoss(nn.Module):
    """Makes ``training_loss`` the forward pass, so DistributedDataParallel sees (and syncs) it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.training_loss(batch)


# ---------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """Trains ``model`` for ``config.max_steps`` optimizer steps, resuming from ``output_dir``.

    ``save_model(model, folder)`` writes the model into a checkpoint folder (default
    ``save_weights``: model.safetensors); ``load_model(model, folder)`` reads it back on resume
    (default ``load_weights``). ``eval_fn(model) -> dict`` runs on rank 0 under ``torch.no_grad``
    with the model in eval mode, every ``eval_every`` steps and at the end. ``log(message)`` prints
    notices (resume, fallbacks, config changes). With ``resume=False`` an ``output_dir`` that
    already holds checkpoints is refused rather than overwritten.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_batches: BatchSource,
        eval_fn: Callable[[nn.Module], Mapping[str, Any]] | None = None,
        *,
        output_dir: str | Path,
        save_model: Callable[[nn.Module, Path], None] = save_weights,
        load_model: Callable[[nn.Module, Path], None] = load_weights,
        log: Callable[[str], None] = _print_message,
        progress: bool = True,
        resume: bool = True,
    ):
        if not callable(getattr(model, "training_loss", None)):
            raise InputError(f"{type(model).__name__} has no training_loss(batch) -> (loss, metrics) method to train with")
        if not isinstance(train_batches, BatchSource):
            raise InputError("train_batches must be iterable and have state_dict() and load_state_dict() (see BatchSource)")
        self.model = model
        self.config = config
        self.train_batches = train_batches
        self.eval_fn = eval_fn
        self.output_dir = Path(output_dir)
        self.log_path = self.output_dir / LOG_FILE
        self.save_model = save_model
        self.load_model = load_model
        self.progress = progress
        self.step = 0  # optimizer steps completed
        self.best: dict[str, Any] | None = None  # {"metric", "value", "step"} of the best evaluation
        self.last_eval: dict[str, Any] = {}

        self.processes, self.device = _start_processes(config.device)
        self.log = log if self.processes.is_main else (lambda message: None)
        self.use_bf16 = config.precision == "bf16" and self.device.type == "cuda"
        if config.precision == "bf16" and self.device.type == "cpu":
            self.log("precision bf16: autocast is used on CUDA only; on CPU this run trains in fp32")
        if self.use_bf16 and not torch.cuda.is_bf16_supported():
            raise InputError("precision bf16 needs a GPU with bfloat16 support (Ampere or newer): use precision fp32")

        model.to(self.device)
        self.optimizer = torch.optim.AdamW(decay_groups(model, config.weight_decay),
                                           lr=learning_rate_at(0, config), betas=config.betas)
        self._start_or_resume(resume)
        self._loss = _TrainingLoss(model)
        if self.processes.distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._loss = DistributedDataParallel(self._loss, device_ids=device_ids)

    # -- starting ------------------------------------------------------------------------------

    def _start_or_resume(self, resume: bool) -> None:
        checkpoint = latest_checkpoint(self.output_dir)
        if self.processes.is_main and self.output_dir.is_dir():
            for leftover in _remove_leftovers(self.output_dir):
                self.log(f"removed {leftover.name}: an unfinished save from a run that was stopped")
        if checkpoint is not None and not resume:
            raise InputError(f"{self.output_dir} already holds {checkpoint.name}: resume from it or choose a new output_dir")
        if checkpoint is None:
            _seed_everything(self.config.seed + self.processes.rank)
            self._rewrite_log(keep_through_step=0)
            self._append_log({"event": "start", "step": 0, "config": self.config.to_dict(),
                              "world_size": self.processes.world_size, "device": str(self.device)})
            return
        self._load_checkpoint(checkpoint)
        self._rewrite_log(keep_through_step=self.step)
        self._append_log({"event": "resume", "step": self.step, "checkpoint": checkpoint.name})
        self.log(f"resuming from {checkpoint} (step {self.step} of {self.config.max_steps})")

    def _load_checkpoint(self, checkpoint: Path) -> None:
        summary = json.loads((checkpoint / STATE_JSON).read_text())
        if summary["world_size"] != self.processes.world_size:
            raise InputError(
                f"{checkpoint} was written by {summary['world_size']} processes and this run has "
                f"{self.processes.world_size}: launch torchrun --nproc_per_node={summary['world_size']} "
                "to resume it, or start a new output_dir"
            )
        self._report_config_changes(summary["config"])
        self.load_model(self.model, checkpoint)
        state = torch.load(checkpoint / STATE_TENSORS, map_location="cpu", weights_only=True)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as error:
            raise InputError(f"{checkpoint}: the optimizer state does not fit this model's trainable parameters "
                             f"({error}); resume with the same model and frozen parts, or use a new output_dir") from None
        # The config given now governs hyperparameters (the saved optimizer state carries the old ones).
        for group, decay in zip(self.optimizer.param_groups, (self.config.weight_decay, 0.0)):
            group.update(weight_decay=decay, betas=self.config.betas)
        own = state["ranks"][self.processes.rank]
        self.train_batches.load_state_dict(own["batches"])
        _set_rng_state(own["rng"], self.device)
        self.step = summary["step"]
        self.best = summary["best"]

    def _report_config_changes(self, saved: dict[str, Any]) -> None:
        current = self.config.to_dict()
        changes = [f"{name} {saved.get(name)!r} -> {value!r}" for name, value in current.items() if saved.get(name) != value]
        if changes:
            self.log("config differs from the checkpoint's; the new values apply from here on: " + ", ".join(changes))

    # -- training ------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Train up to ``config.max_steps``; returns the last evaluation's metrics ({} without eval_fn).

        Ends the process group if this Trainer started it.
        """
        try:
            if self.step >= self.config.max_steps:
                self.log(f"{self.output_dir} has already trained {self.step} of {self.config.max_steps} steps")
                return self.last_eval
            self._train_to_end()
            return self.last_eval
        finally:
            if self.processes.started_group and dist.is_initialized():
                dist.destroy_process_group()

    def _train_to_end(self) -> None:
        from tqdm import tqdm

        config = self.config
        batches = self._batch_stream()
        started = time.monotonic()
        bar = tqdm(total=config.max_steps, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=not (self.progress and self.processes.is_main))
        evaluated_at = saved_at = None
        with bar:
            self.model.train()
            while self.step < config.max_steps:
                record = self._optimizer_step(batches)
                self.step += 1
                bar.set_postfix(self._postfix(record), refresh=False)
                bar.update(1)
                if self.step % config.log_every == 0 or self.step == config.max_steps:
                    self._log_train(record, seconds=time.monotonic() - started)
                if config.eval_every and self.step % config.eval_every == 0:
                    self.evaluate()
                    evaluated_at = self.step
                    bar.set_postfix(self._postfix(record))
                if config.save_every and self.step % config.save_every == 0:
                    self.save_checkpoint()
                    saved_at = self.step
            if evaluated_at != self.step:
                self.evaluate()
            if saved_at != self.step:
                self.save_checkpoint()

    def _batch_stream(self) -> Iterator[Any]:
        """Batches without end: a new pass over the source whenever one finishes."""
        while True:
            empty = True
            for batch in self.train_batches:
                empty = False
                yield batch
            if empty:
                raise InputError("the batch source yielded no batches: does it hold at least one full batch?")

    def _optimizer_step(self, batches: Iterator[Any]) -> dict[str, Any]:
        """One optimizer step over grad_accumulation micro-batches; returns the step's train record."""
        config = self.config
        learning_rate = learning_rate_at(self.step, config)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        metric_sums: dict[str, Any] = {}
        for micro_step in range(config.grad_accumulation):
            batch = _to_device(next(batches), self.device)
            last = micro_step == config.grad_accumulation - 1
            # DDP averages gradients across processes once per step: on the last micro-batch.
            sync = self._loss.no_sync() if self.processes.distributed and not last else nullcontext()
            with sync:
                with self._autocast():
                    loss, metrics = self._checked_output(self._loss(batch))
                # Mean of micro-batch means: equal to one batch grad_accumulation times as large.
                (loss / config.grad_accumulation).backward()
            loss_sum += loss.detach().float()
            for name, value in metrics.items():
                value = value.detach().float() if isinstance(value, torch.Tensor) else value
                metric_sums[name] = metric_sums.get(name, 0) + value
        loss = loss_sum / config.grad_accumulation
        grad_norm = None
        if config.max_grad_norm is not None:
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
        self._check_finite(loss, grad_norm)
        self.optimizer.step()
        record = {"loss": loss.item(), "lr": learning_rate}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm.item()
        record.update({name: _plain(total / config.grad_accumulation) for name, total in metric_sums.items()})
        return record

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_bf16 else nullcontext()

    def _checked_output(self, output: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
        if not (isinstance(output, tuple) and len(output) == 2):
            raise InputError(f"training_loss must return (loss, metrics), got {type(output).__name__}")
        loss, metrics = output
        if not (isinstance(loss, torch.Tensor) and loss.ndim == 0):
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise InputError(f"training_loss must return a scalar loss tensor (reduce it with .mean()), got {shape}")
        return loss, metrics or {}

    def _check_finite(self, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
        if torch.isfinite(loss) and (grad_norm is None or torch.isfinite(grad_norm)):
            return
        checkpoint = latest_checkpoint(self.output_dir)
        where = f"the last checkpoint is {checkpoint.name}" if checkpoint else "no checkpoint was written"
        raise TrainingDiverged(
            f"step {self.step + 1}: loss {loss.item()}, gradient norm {None if grad_norm is None else grad_norm.item()}; "
            f"{where}. Lower learning_rate, lengthen warmup_steps or set max_grad_norm, then rerun"
        )

    def _postfix(self, record: dict[str, Any]) -> dict[str, str]:
        postfix = {"loss": f"{record['loss']:.4g}", "lr": f"{record['lr']:.2e}"}
        # Only the headline numbers fit a progress bar (acc@40ms when the eval reports it).
        headline = {name: value for name, value in self.last_eval.items() if "acc@40ms" in name} or self.last_eval
        postfix.update({f"eval_{name}": f"{value:.4g}" for name, value in headline.items()
                        if isinstance(value, (int, float))})
        return postfix

    def _log_train(self, record: dict[str, Any], seconds: float) -> None:
        record = dict(record)
        if self.processes.distributed:
            # The logged loss is the mean over processes (all reach this step's log together).
            loss = torch.tensor(record["loss"], device=self.device)
            dist.all_reduce(loss)
            record["loss"] = loss.item() / self.processes.world_size
        self._append_log({"event": "train", "step": self.step, **record, "seconds": round(seconds, 3)})

    # -- evaluation ----------------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """Run eval_fn on rank 0 now, log its metrics and keep the best model; {} on other ranks."""
        if self.eval_fn is None or not self.processes.is_main:
            return {}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                metrics = self.eval_fn(self.model)
        finally:
            self.model.train(was_training)
        if not isinstance(metrics, Mapping):
            raise InputError(f"eval_fn must return a dict of metrics, got {type(metrics).__name__}")
        self.last_eval = {name: _plain(value) for name, value in metrics.items()}
        self._append_log({"event": "eval", "step": self.step, **self.last_eval})
        self._keep_if_best()
        return self.last_eval

    def _keep_if_best(self) -> None:
        name = self.config.best_metric
        if name is None:
            return
        if name not in self.last_eval:
            raise InputError(f"best_metric {name!r} is not among eval_fn's metrics: {', '.join(self.last_eval)}")
        value = self.last_eval[name]
        if self.best is not None:
            better = value < self.best["value"] if self.config.best_metric_mode == "min" else value > self.best["value"]
            if not better:
                return
        self.best = {"metric": name, "value": value, "step": self.step}
        with atomic_path(self.output_dir / BEST_FOLDER) as temporary:
            temporary.mkdir()
            self.save_model(self.model, temporary)
            (temporary / "eval_metrics.json").write_text(json.dumps({"step": self.step, **self.last_eval}, indent=2))

    # -- saving --------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path | None:
        """Write ``output_dir/checkpoint-<step>/`` atomically (rank 0) and drop the oldest beyond
        keep_checkpoints. Every process must call it: each sends its RNG and batch-source state."""
        own = {"rng": _rng_state(self.device), "batches": self.train_batches.state_dict()}
        ranks = [own]
        if self.processes.distributed:
            ranks = [None] * self.processes.world_size
            dist.all_gather_object(ranks, own)
        if not self.processes.is_main:
            return None
        folder = self.output_dir / f"{CHECKPOINT_PREFIX}{self.step}"
        summary = {"format": STATE_FORMAT, "step": self.step, "world_size": self.processes.world_size,
                   "best": self.best, "config": self.config.to_dict()}
        with atomic_path(folder) as temporary:
            temporary.mkdir()
            self.save_model(self.model, temporary)
            torch.save({"optimizer": self.optimizer.state_dict(), "ranks": ranks}, temporary / STATE_TENSORS)
            (temporary / STATE_JSON).write_text(json.dumps(summary, indent=2) + "\n")
        for old in checkpoint_folders(self.output_dir)[:-self.config.keep_checkpoints]:
            _remove_checkpoint(old)
        self._append_log({"event": "save", "step": self.step, "checkpoint": folder.name})
        return folder

    # -- the JSONL log -------------------------------------------------------------------------

    def _append_log(self, record: dict[str, Any]) -> None:
        if not self.processes.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log_file:
            log_file.write(json.dumps(record) + "\n")

    def _rewrite_log(self, keep_through_step: int) -> None:
        """Drop records of steps after the checkpoint we start from (they are about to be redone) and
        a last line cut short by a kill, so each step appears once."""
        if not self.processes.is_main or not self.log_path.is_file():
            return
        kept = []
        for line in self.log_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= keep_through_step:
                kept.append(line + "\n")
        with atomic_path(self.log_path) as temporary:
            temporary.write_text("".join(kept))


def read_log(output_dir: str | Path, event: str | None = None) -> list[dict[str, Any]]:
    """The records of ``output_dir/log.jsonl``, optionally only one event ("train", "eval", ...)."""
    records = []
    for line in (Path(output_dir) / LOG_FILE).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a last line cut short by a kill
    return [record for record in records if event is None or record.get("event") == event]
