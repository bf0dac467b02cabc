"""Average the weights of checkpoints fine-tuned from one starting point (a "model soup").

    python -m framestamp.training.average OUT CHECKPOINT CHECKPOINT [CHECKPOINT ...]

Runs continued from the same weights in different orders, learning rates or perturbations can
usually be averaged weight by weight, and the mean often answers at least as well as each of them at
the cost of one model (Wortsman et al., 2022): measure it, as the README's stage 12 does. Every checkpoint must have the same backbone shape, head and features, and
have been trained on the same tasks and vocabulary (what the runtime reads from the description);
OUT is written atomically, its description the first checkpoint's with ``training.averaged_from``
naming each one and its training command (for a checkpoint that is itself an average, what it averaged).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from framestamp.runtime.errors import InputError

# What the runtime and evaluate read from a checkpoint's training record: averaged models must agree.
SHARED_TRAINING = ("tasks", "event_labels", "vocabulary")


def _shape(backbone: dict) -> dict:
    """A checkpoint's backbone description without where its weights came from."""
    return {key: value for key, value in backbone.items() if key != "source"}


def _provenance(description: dict) -> dict:
    """How a checkpoint was made: its training command, or, for an average, what it averaged (its own
    command field is its first member's, which would misname it)."""
    training = description["training"]
    if "averaged_from" in training:
        return {"averaged_from": training["averaged_from"]}
    return {"command": training.get("command")}


def average_checkpoints(out: str | Path, folders: list[str | Path]) -> Path:
    """Write the uniform average of the checkpoints in ``folders`` to ``out``; returns ``out``."""
    import torch

    from framestamp.training.checkpoint import load_checkpoint, save_checkpoint

    if len(folders) < 2:
        raise InputError(f"averaging needs at least two checkpoints, got {len(folders)}")
    first_model, first = load_checkpoint(folders[0])
    provenance = [_provenance(first)]
    total = {name: tensor.detach().clone().double() if tensor.is_floating_point() else tensor.detach().clone()
             for name, tensor in first_model.state_dict().items()}
    for folder in folders[1:]:
        model, description = load_checkpoint(folder)
        provenance.append(_provenance(description))
        # Heads compared as configs: a checkpoint written before a field existed has that field's default. A
        # backbone's source is where its weights were read from (a preset, an earlier run), not its shape.
        differs = ["backbone"] if _shape(description["backbone"]) != _shape(first["backbone"]) else []
        differs += ["features"] if description["features"] != first["features"] else []
        differs += ["head"] if model.head_config != first_model.head_config else []
        if differs:
            raise InputError(f"{folder}: its {differs[0]} differs from {folders[0]}'s; only checkpoints of one model "
                             "shape can be averaged")
        for key in SHARED_TRAINING:
            if description["training"].get(key) != first["training"].get(key):
                raise InputError(f"{folder}: trained on other {key.replace('_', ' ')} than {folders[0]}; average "
                                 "checkpoints trained on the same manifest")
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                total[name] += tensor.double()
            elif not torch.equal(tensor, total[name]):
                raise InputError(f"{folder}: its {name} (not a weight) differs from {folders[0]}'s")
    state = first_model.state_dict()
    first_model.load_state_dict({name: (value / len(folders)).to(state[name].dtype) if value.is_floating_point()
                                 else value for name, value in total.items()})
    # Loading set the source to the first checkpoint's folder; the average records where its weights came from.
    first_model.info = replace(first_model.info, source=first["backbone"]["source"])
    training = dict(first["training"])
    training["averaged_from"] = [{"checkpoint": str(folder), **made} for folder, made in zip(folders, provenance)]
    return save_checkpoint(first_model, out, features=first["features"], training=training)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        out = average_checkpoints(argv[0], argv[1:])
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote the average of {len(argv) - 1} checkpoints to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
