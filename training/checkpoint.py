"""A checkpoint is a folder that describes itself, written atomically:

    framestamp.json     what it is: head, objective, feature settings, prompt layout, frame seconds,
                        library versions, training metadata
    backbone/           the audio LM as transformers saves it (config.json + model.safetensors):
                        loads on its own with from_pretrained
    head.safetensors    the frame head
    tokenizer.json      the tokenizer (read by training and the torch-free runtime alike)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from framestamp.runtime.errors import InputError
from framestamp.runtime.files import atomic_path
from framestamp.runtime.frames import FRAME_SECONDS
from framestamp.runtime.prompts import prompt_layout
from framestamp.training.backbones import load_backbone
from framestamp.training.model import FrameStampModel, HeadConfig

FORMAT = "framestamp-checkpoint"
FORMAT_VERSION = 1


def build_model(backbone: str = "omni-tiny", head: HeadConfig | None = None, seed: int = 0,
                dtype: torch.dtype | None = None) -> FrameStampModel:
    """A fresh model: a preset (random init, framestamp's BPE tokenizer) or a local checkpoint folder
    (real weights, its own tokenizer.json). The head is initialised from ``seed`` too."""
    from framestamp.training.tokenizer import load_tokenizer, preset_tokenizer

    model, info = load_backbone(backbone, seed=seed, dtype=dtype)
    tokenizer = load_tokenizer(backbone) if Path(backbone).is_dir() else preset_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        built = FrameStampModel(model, info, head or HeadConfig(), tokenizer)
    if dtype is not None:
        built.head.to(dtype)  # the head reads the backbone's states: same dtype (bf16 inference)
    return built


def save_checkpoint(model: FrameStampModel, folder: str | Path, features: dict, training: dict | None = None) -> Path:
    """Write ``model`` to ``folder`` (replacing it) atomically; returns the folder."""
    folder = Path(folder)
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        write_checkpoint(model, temporary, features, training)
    return folder


def write_checkpoint(model: FrameStampModel, folder: str | Path, features: dict, training: dict | None = None) -> None:
    """Write the checkpoint files into ``folder`` (the caller makes it atomic: the trainer does)."""
    from safetensors.torch import save_file

    import transformers

    import framestamp

    folder = Path(folder)
    model.backbone.save_pretrained(folder / "backbone", safe_serialization=True)
    head = {name: tensor.detach().contiguous().cpu() for name, tensor in model.head.state_dict().items()}
    save_file(head, str(folder / "head.safetensors"))
    model.tokenizer.save(str(folder / "tokenizer.json"))
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "framestamp_version": framestamp.__version__,
        "libraries": {"torch": torch.__version__, "transformers": transformers.__version__},
        "backbone": {"kind": model.info.kind, "source": model.info.source, "hidden_size": model.info.hidden_size,
                     "num_parameters": model.info.num_parameters},
        "head": model.head_config.to_json(),
        "frame_seconds": FRAME_SECONDS,
        "features": features,
        "prompts": prompt_layout(),
        "training": training or {},
    }
    (folder / "framestamp.json").write_text(json.dumps(description, indent=2) + "\n")


def load_weights(model: FrameStampModel, folder: str | Path) -> None:
    """Read a checkpoint's weights into an existing model of the same shape (resuming training).

    transformers renames some weights on disk, so the backbone is read back with from_pretrained.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    saved, _ = load_backbone(str(folder / "backbone"), dtype=next(model.backbone.parameters()).dtype)
    try:
        model.backbone.load_state_dict(saved.state_dict())
        model.head.load_state_dict(load_file(str(folder / "head.safetensors")))
    except RuntimeError as error:
        raise InputError(f"{folder}: weights do not fit this model ({str(error).splitlines()[0]}); "
                         "resume with the same --backbone and head options") from None


def init_from(model: FrameStampModel, folder: str | Path) -> dict:
    """Start ``model`` from a trained checkpoint's weights (fine-tuning): the whole backbone, and the
    head's channels that both have (a new channel, e.g. inside, starts fresh). A longer --lookahead
    than the checkpoint's starts with the added frames' weights at zero, so it first computes what the
    checkpoint did. Returns what was taken.

    The backbone shape and the tokenizer must match: token ids index the embedding table.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    description = read_description(folder)
    saved_tokenizer = (folder / "tokenizer.json").read_text(encoding="utf-8")
    if json.loads(saved_tokenizer)["model"] != json.loads(model.tokenizer.to_str())["model"]:
        raise InputError(f"{folder}: its tokenizer differs from this model's; --init needs the same --backbone preset")
    saved, _ = load_backbone(str(folder / "backbone"), dtype=next(model.backbone.parameters()).dtype)
    grown = grow_into(model.backbone, saved.state_dict(), folder)
    head = load_file(str(folder / "head.safetensors"))
    saved_channels = list(description["head"]["channels"])
    ours = model.head.projection
    saved_taps = head["projection.weight"].shape[2]  # lookahead + 1
    if saved_taps > ours.weight.shape[2]:  # the width was checked with the backbone
        raise InputError(f"{folder}: its head reads {saved_taps - 1} following frames; give --init a checkpoint "
                         "with the same or a shorter --lookahead")
    shared = [name for name in model.head_config.channels if name in saved_channels]
    with torch.no_grad():
        for name in shared:
            row = model.head_config.channels.index(name)
            # A longer look-ahead reads the checkpoint's frames as it did and the new, later ones at weight 0.
            ours.weight[row] = 0.0
            ours.weight[row, :, :saved_taps] = head["projection.weight"][saved_channels.index(name)]
            ours.bias[row] = head["projection.bias"][saved_channels.index(name)]
    taken = {"checkpoint": str(folder), "head_channels": shared, "steps": description.get("training", {}).get("steps"),
             "lookahead_from": saved_taps - 1,
             "count_term": bool(description["head"].get("count_term", False))}
    if grown:
        taken["grown_layers"] = grown
    return taken


# A layer's projections back into the residual stream (decoder attention and MLP, encoder attention and
# MLP): zeroed, they make a pre-norm transformer layer the identity.
RESIDUAL_OUTPUTS = ("o_proj", "down_proj", "out_proj", "fc2")
LAYER_KEY = re.compile(r"^(?P<stack>.*\.layers)\.(?P<index>\d+)\.(?P<rest>.+)$")


def grow_into(backbone: torch.nn.Module, saved: dict, folder: str | Path) -> list[str]:
    """Load ``saved`` (a checkpoint's backbone weights) into ``backbone``, which may be deeper: same
    widths, more layers on top of a stack (a deeper preset). Layers the checkpoint lacks keep their
    random weights but start as the identity (their residual output projections are zeroed), so the
    grown model computes exactly what the checkpoint did, and training then uses the new depth.

    Returns the grown layers' names ("model.language_model.layers.3", ...); empty for the same shape.
    """
    ours = backbone.state_dict()
    problems = [name for name in saved if name not in ours or ours[name].shape != saved[name].shape]
    extra = sorted(set(ours) - set(saved))
    new_layers = sorted({f"{m['stack']}.{m['index']}" for m in map(LAYER_KEY.match, extra) if m},
                        key=lambda name: (name.rsplit(".", 1)[0], int(name.rsplit(".", 1)[1])))
    not_layers = [name for name in extra if not any(name.startswith(layer + ".") for layer in new_layers)]
    saved_depth = {}
    for match in filter(None, map(LAYER_KEY.match, saved)):
        saved_depth[match["stack"]] = max(saved_depth.get(match["stack"], -1), int(match["index"]))
    below = [layer for layer in new_layers
             if int(layer.rsplit(".", 1)[1]) <= saved_depth.get(layer.rsplit(".", 1)[0], -1)]
    if problems or not_layers or below:
        first = (problems or not_layers or below)[0]
        raise InputError(f"{folder}: its backbone does not fit this model ({first} differs); --init needs the "
                         "same --backbone shape, or a preset that only adds layers on top of it")
    with torch.no_grad():
        backbone.load_state_dict(saved, strict=False)
        modules = dict(backbone.named_modules())
        for layer in new_layers:
            for name, module in modules.items():
                if name.startswith(layer + ".") and name.rsplit(".", 1)[-1] in RESIDUAL_OUTPUTS:
                    module.weight.zero_()
                    if module.bias is not None:
                        module.bias.zero_()
    return new_layers


def read_description(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "framestamp.json"
    if not path.is_file():
        raise InputError(f"{folder}: not a framestamp checkpoint (no framestamp.json); "
                         "train one with `framestamp train` or give the folder it wrote")
    description = json.loads(path.read_text())
    if description.get("format") != FORMAT or description.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: format {description.get('format')!r} version {description.get('format_version')!r}; "
                         f"this framestamp reads {FORMAT!r} version {FORMAT_VERSION}")
    return description


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """The model saved in ``folder`` and its description (framestamp.json)."""
    from safetensors.torch import load_file

    from framestamp.training.tokenizer import load_tokenizer

    folder = Path(folder)
    description = read_description(folder)
    if description["prompts"] != prompt_layout():
        raise InputError(f"{folder}: trained with other prompt templates than this framestamp defines; "
                         "use the framestamp version it names in framestamp.json")
    backbone, info = load_backbone(str(folder / "backbone"), dtype=dtype)
    head_config = HeadConfig(**description["head"])
    model = FrameStampModel(backbone, info, head_config, load_tokenizer(folder / "tokenizer.json"))
    model.head.load_state_dict(load_file(str(folder / "head.safetensors")))
    if dtype is not None:
        model.head.to(dtype)
    return model.to(device), description
