"""Backbones: the audio LMs whose final-layer hidden states at the audio frames feed the frame head.

A backbone is named either by a preset (a config JSON shipped in ``training/presets/``: random
weights, seeded) or by a local checkpoint folder (real weights, loaded offline):

    model, info = load_backbone("omni-tiny", seed=0)
    model, info = load_backbone("/models/Qwen2.5-Omni-3B")   # the thinker only

Two kinds are supported: ``"omni"`` (``Qwen2_5OmniThinkerForConditionalGeneration``, the paper's
backbone) and ``"qwen2-audio"`` (``Qwen2AudioForConditionalGeneration``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from framestamp.runtime.errors import InputError

PRESETS_DIR = Path(__file__).parent / "presets"

# model_type in config.json -> backbone kind; a full Qwen2.5-Omni checkpoint is read for its thinker.
KIND_OF_MODEL_TYPE = {
    "qwen2_5_omni_thinker": "omni",
    "qwen2_5_omni": "omni",
    "qwen2_audio": "qwen2-audio",
}


@dataclass(frozen=True)
class BackboneInfo:
    """What the rest of framestamp needs to know about a backbone, read from its config."""

    kind: str  # "omni" | "qwen2-audio"
    source: str  # preset name or checkpoint folder
    hidden_size: int  # width of the decoder's final hidden states: the frame head's input
    vocab_size: int
    audio_token_id: int  # the placeholder repeated once per audio frame in the prompt
    audio_start_token_id: int | None  # Omni's <|audio_bos|>; Qwen2-Audio's config does not name one
    audio_end_token_id: int | None
    num_mel_bins: int
    encoder_chunk_mel_frames: int | None  # Omni attends inside chunks of this many mel frames (2 s)
    fixed_mel_frames: int | None  # Qwen2-Audio's encoder takes exactly this many (30 s)
    num_parameters: int


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.json"))


def read_preset(name: str) -> dict[str, Any]:
    """The preset file: name, description, architecture, sources and the HF ``config`` dict."""
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        raise InputError(f"no backbone preset named {name!r}; presets: {', '.join(preset_names())}")
    return json.loads(path.read_text())


def preset_config(name: str):
    """The transformers config object a preset describes (no weights)."""
    config_dict = dict(read_preset(name)["config"])
    config_class, _ = _classes_for(config_dict["model_type"], source=f"preset {name!r}")
    return config_class.from_dict(config_dict)


def count_parameters(config) -> dict[str, int]:
    """Parameter counts per top-level component, built on the meta device: no memory, ~0.1 s for 7B."""
    _, model_class = _classes_for(config.model_type, source="config")
    with torch.device("meta"):
        model = model_class(config)
    counts = {name: _parameter_count(child) for name, child in _components(model)}
    counts["total"] = _parameter_count(model)
    return counts


def load_backbone(
    name_or_path: str | Path,
    *,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = None,
):
    """Build a preset with seeded random weights, or load a checkpoint folder offline.

    Returns ``(model, BackboneInfo)``. A preset name (see ``preset_names()``) builds the model from
    its JSON config with weights drawn under ``torch.manual_seed(seed)`` (the global RNG is left as
    it was). A folder is read with ``from_pretrained(folder, local_files_only=True)``; for a full
    Qwen2.5-Omni checkpoint only the thinker is loaded (no talker, no token2wav).
    ``attn_implementation`` ("eager", "sdpa", ...) and ``dtype`` are passed to transformers.
    """
    name = str(name_or_path)
    path = Path(name_or_path).expanduser()
    if name in preset_names():
        model = _build_preset(name, seed=seed, dtype=dtype, attn_implementation=attn_implementation)
    elif path.is_dir():
        model = _load_folder(path, dtype=dtype, attn_implementation=attn_implementation)
        name = str(path)
    else:
        raise InputError(_not_found_message(name))
    return model, describe(model, source=name)


def describe(model, source: str) -> BackboneInfo:
    """The BackboneInfo of a built or loaded model."""
    config = model.config
    kind = KIND_OF_MODEL_TYPE[config.model_type]
    audio_config = config.audio_config
    text_config = config.text_config
    is_omni = kind == "omni"
    return BackboneInfo(
        kind=kind,
        source=source,
        hidden_size=text_config.hidden_size,
        vocab_size=text_config.vocab_size,
        audio_token_id=config.audio_token_id,
        audio_start_token_id=config.audio_start_token_id if is_omni else None,
        audio_end_token_id=config.audio_end_token_id if is_omni else None,
        num_mel_bins=audio_config.num_mel_bins,
        encoder_chunk_mel_frames=2 * audio_config.n_window if is_omni else None,
        # Qwen2-Audio's conv front end halves the mel frames into max_source_positions positions.
        fixed_mel_frames=None if is_omni else 2 * audio_config.max_source_positions,
        num_parameters=_parameter_count(model),
    )


def _build_preset(name: str, *, seed: int, dtype, attn_implementation):
    config = preset_config(name)
    _, model_class = _classes_for(config.model_type, source=f"preset {name!r}")
    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if dtype is not None:
        options["dtype"] = dtype
    # Seeded draw that leaves the caller's random stream untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class._from_config(config, **options)
    return model.eval()


def _load_folder(path: Path, *, dtype, attn_implementation):
    config_path = path / "config.json"
    if not config_path.is_file():
        raise InputError(
            f"{path} has no config.json: pass the folder of a transformers checkpoint "
            f"(Qwen2.5-Omni or Qwen2-Audio), or a preset: {', '.join(preset_names())}"
        )
    model_type = json.loads(config_path.read_text()).get("model_type")
    _, model_class = _classes_for(model_type, source=str(config_path))
    options: dict[str, Any] = {"local_files_only": True}
    if attn_implementation:
        options["attn_implementation"] = attn_implementation
    if dtype is not None:
        options["dtype"] = dtype
    if model_type == "qwen2_5_omni":
        # A full Omni checkpoint stores the thinker under "thinker."; talker/token2wav keys are skipped.
        from transformers import AutoConfig

        full_config = AutoConfig.from_pretrained(path, local_files_only=True)
        options.update(config=full_config.thinker_config, key_mapping={r"^thinker\.": ""})
    return model_class.from_pretrained(path, **options).eval()


def _classes_for(model_type: str | None, source: str):
    """(config class, model class) for a config.json model_type; transformers is imported lazily."""
    from transformers import (
        Qwen2_5OmniConfig,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
    )

    classes = {
        "qwen2_5_omni_thinker": (Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration),
        "qwen2_5_omni": (Qwen2_5OmniConfig, Qwen2_5OmniThinkerForConditionalGeneration),
        "qwen2_audio": (Qwen2AudioConfig, Qwen2AudioForConditionalGeneration),
    }
    if model_type not in classes:
        raise InputError(
            f"{source}: model_type {model_type!r} is not a supported backbone; "
            f"framestamp reads {', '.join(sorted(classes))} (Qwen2.5-Omni or Qwen2-Audio checkpoints)"
        )
    return classes[model_type]


def _components(model):
    """Top-level parts worth counting separately: audio tower, vision tower, language model, head."""
    inner = model.model if hasattr(model, "model") else model
    for name, child in inner.named_children():
        yield name, child
    if hasattr(model, "lm_head"):
        yield "lm_head", model.lm_head


def _parameter_count(module: torch.nn.Module) -> int:
    # parameters() yields a tied tensor once, so tied embeddings are not counted twice.
    return sum(parameter.numel() for parameter in module.parameters())


def _not_found_message(name: str) -> str:
    message = f"{name!r} is neither a backbone preset nor a local folder; presets: {', '.join(preset_names())}"
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        # Looks like a Hugging Face repository id: framestamp never downloads on its own.
        message += f". To use the Hub model, download it first (hf download {name} --local-dir DIR) and pass DIR"
    return message
