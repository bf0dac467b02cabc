"""The export-friendly audio encoder against transformers' own tower, its ONNX graph against PyTorch,
and the backbone presets and loader."""

import json

import numpy as np
import pytest
import torch

from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import audio_frames_for_mel
from framestamp.training.backbones import (
    BackboneInfo,
    count_parameters,
    load_backbone,
    preset_config,
    preset_names,
    read_preset,
)
from framestamp.training.encoder import ChunkedAudioEncoder

MEL_BINS = 128
TOLERANCE = 1e-5  # fp32; measured 0.0 with eager attention, 3e-6 with sdpa

# Mel lengths (100 per second): 0.5 s, exactly one 2 s chunk, 3.3 s, 10 s, and padded batches of 3.
LENGTH_CASES = [[50], [200], [330], [1000], [330, 200, 1000], [1000, 50, 401]]


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def omni_tiny(request):
    model, info = load_backbone("omni-tiny", seed=0, attn_implementation=request.param)
    return model, info


def random_batch(lengths, seed=0, pad_value=7.0):
    """Log-mel-like noise, padded past each length with a value no real mel has."""
    generator = torch.Generator().manual_seed(seed)
    mel = torch.full((len(lengths), MEL_BINS, max(lengths) + 13), pad_value)
    for row, length in enumerate(lengths):
        mel[row, :, :length] = torch.randn(MEL_BINS, length, generator=generator)
    return mel, torch.tensor(lengths)


def hf_tower_frames(tower, mel, mel_lengths):
    """transformers' forward: valid mel concatenated along time, output split per example."""
    lengths = mel_lengths.tolist()
    concatenated = torch.cat([mel[row, :, :length] for row, length in enumerate(lengths)], dim=1)
    with torch.no_grad():
        states = tower(input_features=concatenated, feature_lens=mel_lengths).last_hidden_state
    return states.split([audio_frames_for_mel(length) for length in lengths])


@pytest.mark.parametrize("lengths", LENGTH_CASES, ids=lambda lengths: "+".join(map(str, lengths)))
def test_matches_hf_tower_on_valid_frames(omni_tiny, lengths):
    model, _ = omni_tiny
    encoder = ChunkedAudioEncoder.from_thinker(model)
    mel, mel_lengths = random_batch(lengths)
    with torch.no_grad():
        audio_states, frame_counts = encoder(mel, mel_lengths)
    expected = hf_tower_frames(model.model.audio_tower, mel, mel_lengths)

    assert frame_counts.tolist() == [audio_frames_for_mel(length) for length in lengths]
    assert audio_states.shape[0] == len(lengths) and audio_states.shape[2] == model.config.text_config.hidden_size
    for row, reference in enumerate(expected):
        produced = audio_states[row, : frame_counts[row]]
        assert produced.shape == reference.shape
        assert (produced - reference).abs().max().item() <= TOLERANCE


def test_valid_frames_do_not_depend_on_batch_padding(omni_tiny):
    model, _ = omni_tiny
    encoder = ChunkedAudioEncoder.from_thinker(model)
    mel, mel_lengths = random_batch([330, 1000], pad_value=-3.0)
    with torch.no_grad():
        alone, count = encoder(mel[:1, :, :330], mel_lengths[:1])
        batched, _ = encoder(mel, mel_lengths)
    assert (alone[0, : count[0]] - batched[0, : count[0]]).abs().max().item() <= TOLERANCE


def test_shares_parameters_with_the_hf_tower():
    model, _ = load_backbone("omni-tiny", seed=0)
    tower = model.model.audio_tower
    encoder = ChunkedAudioEncoder(tower)
    tower_tensors = {parameter.data_ptr() for parameter in tower.parameters()}
    assert {parameter.data_ptr() for parameter in encoder.parameters()} == tower_tensors

    mel, mel_lengths = random_batch([330, 120])
    audio_states, frame_counts = encoder(mel, mel_lengths)
    valid = torch.arange(audio_states.shape[1])[None, :] < frame_counts[:, None]
    audio_states[valid].sum().backward()
    assert tower.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0  # training the rewrite trains the tower


def test_rejects_inputs_it_cannot_encode():
    model, _ = load_backbone("omni-tiny", seed=0)
    encoder = ChunkedAudioEncoder.from_thinker(model)
    with pytest.raises(InputError, match="128 mel bins"):
        encoder(torch.zeros(1, 80, 300), torch.tensor([300]))
    with pytest.raises(InputError, match="mel_lengths must lie"):
        encoder(torch.zeros(2, MEL_BINS, 300), torch.tensor([300, 301]))
    qwen2_audio, _ = load_backbone("qwen2-audio-tiny", seed=0)
    with pytest.raises(InputError, match="wraps a Qwen2.5-Omni audio tower"):
        ChunkedAudioEncoder.from_thinker(qwen2_audio)


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning", "ignore:.*axis name.*:UserWarning")
def test_onnx_export_matches_pytorch_at_other_shapes(tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs onnx (pip install 'framestamp[export]')")
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript (framestamp[export])")
    onnxruntime = pytest.importorskip("onnxruntime", reason="the parity check needs onnxruntime")
    from torch.export import Dim

    model, _ = load_backbone("omni-tiny", seed=0)
    encoder = ChunkedAudioEncoder.from_thinker(model).eval()
    example_mel, example_lengths = random_batch([530, 301])
    batch = Dim("batch", min=1, max=64)
    mel_frames = Dim("mel_frames", min=1, max=60_000)
    program = torch.onnx.export(
        encoder,
        (example_mel, example_lengths),
        dynamo=True,
        opset_version=18,
        input_names=["mel", "mel_lengths"],
        output_names=["audio_states", "frame_counts"],
        dynamic_shapes={"mel": {0: batch, 2: mel_frames}, "mel_lengths": {0: batch}},
    )
    graph_path = tmp_path / "audio_encoder.onnx"
    program.save(str(graph_path))
    session = onnxruntime.InferenceSession(str(graph_path), providers=["CPUExecutionProvider"])

    for lengths in ([1000], [330, 1000, 45]):  # batch and length both differ from the export example
        mel, mel_lengths = random_batch(lengths, seed=1)
        with torch.no_grad():
            expected_states, expected_counts = encoder(mel, mel_lengths)
        states, counts = session.run(None, {"mel": mel.numpy(), "mel_lengths": mel_lengths.numpy()})
        assert counts.tolist() == expected_counts.tolist()
        assert states.shape == tuple(expected_states.shape)
        for row, count in enumerate(counts):
            error = np.abs(states[row, :count] - expected_states[row, :count].numpy()).max()
            assert error <= TOLERANCE


# --- backbone presets and loader -------------------------------------------------------------------

BUILDABLE_PRESETS = ["omni-tiny", "omni-tiny-deep", "omni-tiny-deep-encoder", "omni-small", "qwen2-audio-tiny"]


def test_presets_are_the_documented_set():
    assert set(preset_names()) == {"omni-tiny", "omni-tiny-deep", "omni-tiny-deep-encoder", "omni-small", "omni-3b", "omni-7b",
                                   "qwen2-audio-tiny"}
    for name in preset_names():
        preset = read_preset(name)
        assert preset["name"] == name and preset["sources"] and preset["description"]


@pytest.mark.parametrize("name", preset_names())
def test_preset_configs_are_consistent(name):
    config = preset_config(name)
    text = config.text_config
    special_ids = [config.audio_token_id]
    if config.model_type == "qwen2_5_omni_thinker":
        head_dim = text.hidden_size // text.num_attention_heads
        assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2  # the thinker requires it
        assert config.audio_config.output_dim == text.hidden_size == config.vision_config.out_hidden_size
        special_ids += [config.audio_start_token_id, config.audio_end_token_id,
                        config.image_token_id, config.video_token_id]
    assert all(0 <= token_id < text.vocab_size for token_id in special_ids)
    assert config.audio_config.num_mel_bins == 128  # both real backbones use 128 mel bins


@pytest.mark.parametrize("name", BUILDABLE_PRESETS)
def test_buildable_presets_build_and_describe_themselves(name):
    model, info = load_backbone(name, seed=3)
    again, _ = load_backbone(name, seed=3)
    other, _ = load_backbone(name, seed=4)
    weights, same_seed, other_seed = (next(m.model.audio_tower.parameters()) for m in (model, again, other))
    assert torch.equal(weights, same_seed) and not torch.equal(weights, other_seed)
    assert isinstance(info, BackboneInfo) and info.source == name
    assert info.hidden_size == model.config.text_config.hidden_size
    assert info.num_parameters == count_parameters(model.config)["total"]
    if info.kind == "omni":
        assert info.encoder_chunk_mel_frames == 200 and info.fixed_mel_frames is None
    else:
        assert info.kind == "qwen2-audio" and info.fixed_mel_frames == 3000
    if name == "omni-small":
        assert 20e6 <= info.num_parameters <= 60e6


def test_real_size_presets_match_the_published_language_models():
    """Counted on the meta device: the LM parts agree with Qwen2.5-7B (7.61B) and Qwen2.5-3B (3.09B)."""
    counts_7b = count_parameters(preset_config("omni-7b"))
    counts_3b = count_parameters(preset_config("omni-3b"))
    assert abs(counts_7b["language_model"] + counts_7b["lm_head"] - 7.61e9) < 0.01e9
    assert abs(counts_3b["language_model"] - 3.09e9) < 0.01e9  # Qwen2.5-3B ties its head to the embeddings
    for counts in (counts_7b, counts_3b):
        assert 0.6e9 < counts["audio_tower"] < 0.7e9  # Whisper-large-v3's encoder width and depth
        assert counts["total"] == sum(value for key, value in counts.items() if key != "total")


def test_saved_checkpoint_folder_round_trips(tmp_path):
    model, info = load_backbone("omni-tiny", seed=5)
    model.save_pretrained(tmp_path / "omni-tiny")
    loaded, loaded_info = load_backbone(tmp_path / "omni-tiny")
    assert type(loaded) is type(model)
    assert {**vars(loaded_info), "source": "omni-tiny"} == vars(info)
    expected = model.state_dict()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in loaded.state_dict().items())


def test_full_omni_checkpoint_loads_only_the_thinker(tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    config = Qwen2_5OmniConfig(thinker_config=preset_config("omni-tiny").to_dict(), enable_audio_output=False)
    full_model = Qwen2_5OmniForConditionalGeneration(config).eval()
    full_model.save_pretrained(tmp_path)
    # A released checkpoint also holds talker and token2wav weights: they must be skipped.
    weights = load_file(tmp_path / "model.safetensors")
    weights["talker.model.embed_tokens.weight"] = torch.zeros(4, 4)
    weights["token2wav.code2wav_bigvgan_model.conv_pre.weight"] = torch.zeros(3)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})

    thinker, info = load_backbone(tmp_path)
    assert type(thinker).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration" and info.kind == "omni"
    expected = full_model.thinker.state_dict()
    loaded = thinker.state_dict()
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)


def test_errors_name_the_problem_and_the_way_out(tmp_path):
    with pytest.raises(InputError, match="presets: omni-3b, omni-7b, omni-small, omni-tiny, omni-tiny-deep, omni-tiny-deep-encoder, qwen2-audio-tiny"):
        load_backbone("omni-huge")
    with pytest.raises(InputError, match="hf download Qwen/Qwen2.5-Omni-3B"):
        load_backbone("Qwen/Qwen2.5-Omni-3B")
    with pytest.raises(InputError, match="no config.json"):
        load_backbone(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(InputError, match="'whisper' is not a supported backbone"):
        load_backbone(tmp_path)
