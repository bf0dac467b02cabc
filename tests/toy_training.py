"""A toy regression for the Trainer's tests, importable and runnable as a script (alone or under torchrun):

    python tests/toy_training.py OUTPUT_DIR --max-steps 16 --save-every 4 [--slow-save 0.3]
    torchrun --standalone --nproc_per_node=1 tests/toy_training.py OUTPUT_DIR ...
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from torch import nn

from framestamp.training.trainer import InMemoryBatches, TrainConfig, Trainer, save_weights

FEATURES = 4


class ToyRegression(nn.Module):
    """y = f(x) with a norm, biases and dropout: every kind of parameter and a use of the RNG."""

    def __init__(self, hidden: int = 8, dropout: float = 0.1):
        super().__init__()
        self.hidden = nn.Linear(FEATURES, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.dropout(torch.tanh(self.norm(self.hidden(x))))).squeeze(-1)

    def training_loss(self, batch):
        prediction = self(batch["x"])
        loss = nn.functional.mse_loss(prediction, batch["y"])
        return loss, {"mean_abs_error": (prediction - batch["y"]).abs().mean()}


def toy_model(seed: int = 0, dropout: float = 0.1) -> ToyRegression:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ToyRegression(dropout=dropout)


def toy_examples(count: int = 64, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, FEATURES, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.3
    return [{"x": x[i], "y": y[i]} for i in range(count)]


def toy_config(**changes) -> TrainConfig:
    values = dict(learning_rate=3e-2, warmup_steps=2, max_steps=16, batch_size=8, eval_every=0,
                  save_every=4, log_every=1, device="cpu")
    values.update(changes)
    return TrainConfig(**values)


def toy_trainer(output_dir: Path, config: TrainConfig, *, model: ToyRegression | None = None,
                rank: int = 0, world_size: int = 1, **options) -> Trainer:
    batches = InMemoryBatches(toy_examples(), config.batch_size, seed=config.seed, rank=rank, world_size=world_size)
    options.setdefault("progress", False)
    return Trainer(model or toy_model(), config, batches, output_dir=output_dir, **options)


def slow_saver(seconds: float):
    """A save_model that lingers after writing, like a multi-GB checkpoint, so a test can kill mid-save."""

    def save(model, folder):
        save_weights(model, folder)
        time.sleep(seconds)

    return save


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--max-steps", type=int, default=16)
    parser.add_argument("--save-every", type=int, default=4)
    parser.add_argument("--slow-save", type=float, default=0.0)
    args = parser.parse_args()
    config = toy_config(max_steps=args.max_steps, save_every=args.save_every)
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    trainer = toy_trainer(args.output_dir, config, rank=rank, world_size=world_size,
                          save_model=slow_saver(args.slow_save), progress=True)
    trainer.train()


if __name__ == "__main__":
    main()
