"""What one kit run does and how long each step may take: the GPU plan and its CPU dry run.

The steps run in this order, each with its own budget (seconds of wall clock); a step that runs
out of time is stopped and the next one starts, so a run never outlasts the sum. Data is generated
in the background while the shipped model's parity runs (neither is timed); nothing else shares
the machine with a timed step.

    environment  pip list, nvidia-smi, what torch sees
    synthesis    training clips (training voices), held-out-voice clips, long clips for latency
    parity       the shipped model: PyTorch on the device (fp32, TF32 off) vs ONNX Runtime on the CPU; bf16 vs fp32
    latency      the Omni-3B shape, random weights: frame-level vs three autoregressive loops
    train        the shipped model's recipe (Poisson head, look-ahead 2) at a larger shape, fixed wall clock
    trained      the trained model: held-out accuracy, ONNX export, parity, bf16 vs fp32
"""

from __future__ import annotations

from dataclasses import dataclass, field

STEPS = ("environment", "synthesis", "parity", "latency", "train", "trained")


@dataclass(frozen=True)
class Plan:
    name: str
    device: str
    total_seconds: float  # no step outlasts this many seconds from the start
    seconds: dict[str, float]  # step -> budget; synthesis overlaps environment and parity
    train_until_end: bool  # training also takes what earlier steps left unused, up to the last step's budget
    workers: int  # synthesis processes in all
    train_synthesis: tuple[str, ...]  # training tasks, one `framestamp synth` per entry, all at once
    train_clips: int  # per task, training voices
    eval_clips: int  # per task, held-out voices
    long_clips: int  # transcript clips long enough for the 26+ timestamps bucket
    long_seconds: tuple[float, float]
    latency_backbone: str
    latency_precision: str
    latency_compile: bool
    latency_buckets: str  # in the order they run: the most wanted first
    latency_batch_sizes: str
    latency_repeats: int
    parity_batch_sizes: tuple[int, ...]
    parity_seconds: tuple[float, ...]
    trained_parity_batch_sizes: tuple[int, ...]
    trained_parity_seconds: tuple[float, ...]
    backbone: str
    batch_size: int
    warmup: int  # steps; the first training process runs exactly these, then the step time is known
    learning_rate: float
    precision: str
    resumed_steps: tuple[int, int | None]  # after warmup: at least, at most (None: as many as fit the budget)
    # The shipped model's recipe: Poisson look-ahead 12 (stage 18: the head reads 480 ms past a frame, which tells
    # apart words that begin alike), the inside channel (benchmarks/results/cpu/recipes-short.md) and the end
    # channel (interval ends).
    train_recipe: tuple[str, ...] = ("--objective", "poisson", "--lookahead", "12", "--weight-decay", "0.01",
                                     "--channels", "onset,inside,end", "--inside", "1.0", "--end", "1.0")
    variables: dict = field(default_factory=dict)  # environment of every step's processes


# One H200 lease: 15 minutes with the machine's start, at most 10 per command. 9 minutes of steps.
# Latency at the 3B shape comes first and gets the most: three autoregressive loops of ~250 tokens per
# 26+ row. No --compile: on the first H200 lease (2026-12-01) the compiled 26+ row at batch 16 did not
# finish in 220 s, while uncompiled 1-5 rows at batch 1 and 16 took under a second per loop.
# Training gets at least 175 s, more if steps before it finish early.
GPU = Plan(
    name="gpu", device="cuda", total_seconds=535, train_until_end=True,
    seconds={"environment": 20, "synthesis": 75, "parity": 55, "latency": 220, "train": 175, "trained": 60},
    workers=16, train_synthesis=("words", "speakers", "events"), train_clips=2000, eval_clips=150, long_clips=24, long_seconds=(15.0, 19.0),
    latency_backbone="omni-3b", latency_precision="bf16", latency_compile=False,
    latency_buckets="26+,1-5,11-15,6-10,16-20,21-25", latency_batch_sizes="1,16,4", latency_repeats=2,
    parity_batch_sizes=(1, 3, 8), parity_seconds=(0.5, 10.0, 60.0),
    trained_parity_batch_sizes=(1, 4), trained_parity_seconds=(0.5, 10.0, 30.0),
    backbone="omni-small", batch_size=16, warmup=200, learning_rate=1e-3, precision="bf16", resumed_steps=(1, None),
)

# The same code path on a CPU in well under a minute: tiny shapes, a handful of clips, seconds of training.
DRY_RUN = Plan(
    name="dry-run", device="cpu", total_seconds=185, train_until_end=False,
    seconds={"environment": 15, "synthesis": 40, "parity": 25, "latency": 40, "train": 40, "trained": 60},
    workers=2, train_synthesis=("words,speakers,events",), train_clips=6, eval_clips=2, long_clips=2, long_seconds=(6.0, 8.0),
    latency_backbone="omni-tiny", latency_precision="bf16", latency_compile=False,
    latency_buckets="6-10", latency_batch_sizes="2,1", latency_repeats=1,
    parity_batch_sizes=(2,), parity_seconds=(3.0,), trained_parity_batch_sizes=(2,), trained_parity_seconds=(3.0,),
    backbone="omni-tiny", batch_size=4, warmup=6, learning_rate=1e-3, precision="bf16", resumed_steps=(4, 10),
    # One thread per process: several run at once on few cores, and spinning thread pools then crawl.
    variables={"OMP_NUM_THREADS": "1"},
)


def worker_shares(total: int, groups: int) -> tuple[int, int, int]:
    """Synthesis processes: (per training-data group, for held-out clips, for long clips)."""
    held_out = 2 if total >= 8 else 1
    return max(1, (total - held_out - 1) // groups), held_out, 1
