"""An export-friendly forward pass for the Qwen2.5-Omni thinker's audio tower.

transformers' ``Qwen2_5OmniAudioEncoder`` takes the batch as one concatenated mel sequence and
splits it with ``split(chunk_lengths.tolist())``: a data-dependent shape that neither ONNX exporter
can follow (dynamo: a data-dependent guard; the legacy exporter: aten::pad_sequence). ``ChunkedAudioEncoder`` computes the same function on a padded
batch with fixed-size tensors only:

    mel (B, mel_bins, L), mel_lengths (B,)
      -> zero mel beyond each example's length, pad L to a multiple of the chunk (2 * n_window
         = 200 mel frames = 2 s), reshape to (B * chunks, mel_bins, 200)
      -> conv1 + GELU (masked), conv2 (stride 2) + GELU: 100 positions per chunk
      -> + sinusoidal positions restarted at 0 in every chunk
      -> transformer layers, each position attending only to the valid positions of its chunk
      -> back to (B, chunks * 100, d), 2x average pool, ln_post, proj
      -> audio_states (B, chunks * 50, output_dim), frame_counts (B,)

Frames past ``frame_counts[b]`` are padding: their values are meaningless (and differ between
exporters), so compare and use valid frames only. The module holds the HF tower as a submodule and
uses its parameters directly: training either one trains both.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import audio_frames_for_mel

ATTENTION_KINDS = ("eager", "sdpa")


class ChunkedAudioEncoder(nn.Module):
    """Batched, shape-static forward of a ``Qwen2_5OmniAudioEncoder``, sharing its parameters."""

    def __init__(self, tower: nn.Module, attention: str | None = None):
        super().__init__()
        config = tower.config
        if getattr(config, "model_type", None) != "qwen2_5_omni_audio_encoder":
            raise InputError(
                f"ChunkedAudioEncoder wraps a Qwen2.5-Omni audio tower, got {type(tower).__name__}; "
                "Qwen2-Audio's encoder takes a fixed 3000 mel frames and exports as it is"
            )
        attention = attention or ("eager" if config._attn_implementation == "eager" else "sdpa")
        if attention not in ATTENTION_KINDS:
            raise InputError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
        self.tower = tower
        self.attention = attention
        self.num_mel_bins = config.num_mel_bins
        self.chunk_mel_frames = 2 * config.n_window
        # conv2 has stride 2: each 2-second chunk becomes this many encoder positions.
        self.chunk_positions = (self.chunk_mel_frames - 1) // 2 + 1
        if self.chunk_positions > config.max_source_positions:
            raise InputError(
                f"n_window={config.n_window} gives {self.chunk_positions} positions per chunk, more than "
                f"max_source_positions={config.max_source_positions} in the audio config"
            )

    @classmethod
    def from_thinker(cls, thinker: nn.Module, attention: str | None = None) -> "ChunkedAudioEncoder":
        """Wrap the audio tower of a ``Qwen2_5OmniThinkerForConditionalGeneration``."""
        return cls(thinker.model.audio_tower, attention=attention)

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, mel_bins, L) log-mel, mel_lengths (B,) valid mel frames per example.

        Returns ``(audio_states, frame_counts)``: (B, frames, output_dim) and (B,) valid frames
        per example, ``frame_counts = audio_frames_for_mel(mel_lengths)`` (one frame per 40 ms).
        """
        self._check_inputs(mel, mel_lengths)
        tower = self.tower
        batch = mel.shape[0]
        chunks = (mel.shape[2] + self.chunk_mel_frames - 1) // self.chunk_mel_frames
        padded_frames = chunks * self.chunk_mel_frames

        mel_positions = torch.arange(padded_frames, device=mel.device)
        mel_valid = mel_positions[None, :] < mel_lengths[:, None]  # (B, padded_frames)
        mel = F.pad(mel.to(tower.conv1.weight.dtype), (0, padded_frames - mel.shape[2]))
        # HF's chunks hold zeros past an example's end, whatever the caller padded with.
        mel = torch.where(mel_valid[:, None, :], mel, torch.zeros((), dtype=mel.dtype, device=mel.device))

        chunk_mel = mel.reshape(batch, self.num_mel_bins, chunks, self.chunk_mel_frames)
        chunk_mel = chunk_mel.transpose(1, 2).reshape(batch * chunks, self.num_mel_bins, self.chunk_mel_frames)
        chunk_mel_valid = mel_valid.reshape(batch * chunks, 1, self.chunk_mel_frames)

        hidden = F.gelu(tower.conv1(chunk_mel)) * chunk_mel_valid
        hidden = F.gelu(tower.conv2(hidden)).transpose(1, 2)  # (B * chunks, positions, d)
        positions = tower.positional_embedding.positional_embedding[: self.chunk_positions]
        hidden = hidden + positions.unsqueeze(0).to(hidden.dtype)

        # Stride-2 position t is centred on mel frame 2t of its chunk: valid iff that frame is.
        key_valid = chunk_mel_valid[:, 0, ::2]
        # A chunk wholly past the end keeps one key, so its (discarded) rows stay finite.
        key_valid = key_valid | (torch.arange(self.chunk_positions, device=mel.device) == 0)
        for layer in tower.layers:
            hidden = self._encoder_layer(layer, hidden, key_valid)

        hidden = hidden.reshape(batch, chunks * self.chunk_positions, hidden.shape[-1])
        # Valid positions form a prefix of each row, so pairing them here pairs what HF's concatenation pairs.
        pairs = hidden.shape[1] // 2
        hidden = hidden[:, : 2 * pairs].reshape(batch, pairs, 2, hidden.shape[-1])
        hidden = (hidden[:, :, 0] + hidden[:, :, 1]) / 2
        audio_states = tower.proj(tower.ln_post(hidden))
        return audio_states, audio_frames_for_mel(mel_lengths)

    def _encoder_layer(self, layer: nn.Module, hidden: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
        """``Qwen2_5OmniAudioEncoderLayer`` on (chunks, positions, d) with a key-padding mask."""
        residual = hidden
        hidden = residual + self._self_attention(layer.self_attn, layer.self_attn_layer_norm(hidden), key_valid)
        residual = hidden
        hidden = layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))
        hidden = residual + hidden
        if hidden.dtype == torch.float16:
            # As HF: keep fp16 activations finite.
            limit = torch.finfo(hidden.dtype).max - 1000
            hidden = hidden.clamp(min=-limit, max=limit)
        return hidden

    def _self_attention(self, attention: nn.Module, hidden: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
        chunk_count, positions, width = hidden.shape
        heads = attention.num_heads

        def split_heads(states: torch.Tensor) -> torch.Tensor:
            return states.reshape(chunk_count, positions, heads, width // heads).transpose(1, 2)

        query = split_heads(attention.q_proj(hidden))
        key = split_heads(attention.k_proj(hidden))
        value = split_heads(attention.v_proj(hidden))
        key_mask = key_valid[:, None, None, :]  # (chunks, 1, 1, positions): same for every head and query
        if self.attention == "sdpa":
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, scale=attention.scaling)
        else:
            # transformers' eager_attention_forward: additive mask, softmax in float32.
            scores = torch.matmul(query, key.transpose(2, 3)) * attention.scaling
            blocked = torch.full((), torch.finfo(scores.dtype).min, dtype=scores.dtype, device=scores.device)
            scores = torch.where(key_mask, scores, blocked)
            weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
            context = torch.matmul(weights, value)
        context = context.transpose(1, 2).reshape(chunk_count, positions, width)
        return attention.out_proj(context)

    def _check_inputs(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> None:
        if mel.dim() != 3 or mel.shape[1] != self.num_mel_bins:
            raise InputError(
                f"mel must be (batch, {self.num_mel_bins} mel bins, frames), got shape {tuple(mel.shape)}"
            )
        if mel_lengths.dim() != 1 or mel_lengths.shape[0] != mel.shape[0]:
            raise InputError(
                f"mel_lengths must be (batch,) = ({mel.shape[0]},), got shape {tuple(mel_lengths.shape)}"
            )
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return  # value checks need the data; exported graphs trust their caller
        if bool(((mel_lengths < 0) | (mel_lengths > mel.shape[2])).any()):
            raise InputError(
                f"mel_lengths must lie in [0, {mel.shape[2]}] (the padded mel length), got {mel_lengths.tolist()}"
            )
