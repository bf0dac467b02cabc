"""Export: ONNX graphs against PyTorch for both backbones at fp32/fp16/int8, the artifact manifest, and
the TensorRT builder's inputs (the builder itself needs tensorrt and a GPU)."""

import json
import shutil

import numpy as np
import onnx
import pytest

from framestamp.cli import main
from framestamp.export.artifact import Calibration, convert_artifact, export_fp32
from framestamp.export.parity import check_parity
from framestamp.runtime.artifact import ArtifactError, GraphSessions, read_manifest
from framestamp.runtime.features import DEFAULT_SETTINGS
from framestamp.runtime.frames import audio_frames_for_mel

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
BACKBONES = ["omni-tiny", "qwen2-audio-tiny"]
LONGEST = {"omni-tiny": 45.0, "qwen2-audio-tiny": 30.0}  # Qwen2-Audio's encoder takes at most 30 s


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A few espeak-ng word clips with their manifest: real speech to calibrate and compare on."""
    folder = tmp_path_factory.mktemp("speech")
    assert main(["synth", str(folder), "--tasks", "words", "--count", "4", "--seed", "5",
                 "--min-seconds", "2", "--max-seconds", "5"]) == 0
    return folder / "manifest.jsonl"


@pytest.fixture(scope="module", params=BACKBONES)
def exported(request, tiny_export):
    """(backbone, checkpoint, fp32 artifact) for a random-init tiny preset with a look-ahead Poisson head."""
    return (request.param, *tiny_export(request.param))


def test_fp32_graphs_equal_pytorch_over_shapes(exported, speech):
    backbone, checkpoint, artifact = exported
    report = check_parity(checkpoint, artifact, speech, batch_sizes=(1, 3), seconds=(0.5, 7.0, LONGEST[backbone]),
                          progress=False)
    assert len(report.cases) == 6
    assert report.encoder.max_abs <= 1e-4
    assert report.end_to_end.max_abs <= 1e-4
    assert report.timestamps_agreeing == report.timestamps and report.max_timestamp_ms <= 1.0
    assert not report.failures()


def test_fp16_keeps_fp32_inputs_and_stays_close(exported, speech, tmp_path):
    backbone, checkpoint, artifact = exported
    manifest = convert_artifact(artifact, tmp_path / "fp16", "fp16")
    for entry in manifest["graphs"].values():
        assert all(value["dtype"] in ("float32", "int64") for value in entry["inputs"] + entry["outputs"])
        graph = onnx.load(str(tmp_path / "fp16" / entry["file"]))
        assert any(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in graph.graph.initializer)
    report = check_parity(checkpoint, tmp_path / "fp16", speech, batch_sizes=(1, 3), seconds=(7.0,), progress=False)
    assert report.precision == "fp16"
    assert 0 < report.end_to_end.median_abs <= 2e-2
    assert report.agreement >= 0.9


def _dequantized_inputs(graph, names):
    """Of the nodes named, those reading an input produced by a DequantizeLinear (i.e. run in int8)."""
    producer = {output: node.op_type for node in graph.node for output in node.output}
    return [node.name for node in graph.node if node.name in names
            and any(producer.get(name) == "DequantizeLinear" for name in node.input)]


def test_int8_places_qdq_keeps_head_float_and_reuses_its_cache(exported, speech, tmp_path):
    from framestamp.calibration.int8 import gated_mlp_outputs, head_nodes

    backbone, checkpoint, artifact = exported
    calibration = Calibration(manifest=speech, count=6, cache=tmp_path / "cache")
    manifest = convert_artifact(artifact, tmp_path / "int8", "int8", calibration)
    decoder = onnx.load(str(tmp_path / "int8" / "decoder.onnx")).graph
    ops = {node.op_type for node in decoder.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    kept_float = head_nodes(artifact / "decoder.onnx") + gated_mlp_outputs(artifact / "decoder.onnx")
    assert len(gated_mlp_outputs(artifact / "decoder.onnx")) == 3  # one per decoder layer of the tiny presets
    assert _dequantized_inputs(decoder, set(kept_float)) == []
    assert manifest["quantization"]["graphs"]["decoder"]["excluded_nodes"] == kept_float

    report = check_parity(checkpoint, tmp_path / "int8", speech, batch_sizes=(3,), seconds=(7.0,), progress=False)
    assert report.end_to_end.median_rel < 0.1

    # The activation ranges were cached: a second conversion needs no audio and gives the same graphs.
    again = convert_artifact(artifact, tmp_path / "int8-again", "int8", Calibration(cache=tmp_path / "cache"))
    assert again["files"] == manifest["files"]


def test_artifact_manifest_and_graph_metadata(exported):
    backbone, checkpoint, artifact = exported
    manifest = read_manifest(artifact)
    assert manifest["opset"] >= 18 and manifest["frame_seconds"] == 0.04 and manifest["channels"] == ["onset"]
    assert set(manifest["files"]) == {"encoder.onnx", "decoder.onnx", "tokenizer.json"}
    assert manifest["graphs"]["decoder"]["dynamic_axes"]["input_ids"] == {"0": "batch", "1": "tokens"}
    for name in ("encoder", "decoder"):
        graph = onnx.load(str(artifact / f"{name}.onnx"))
        props = {entry.key: entry.value for entry in graph.metadata_props}
        assert props["graph"] == name and props["precision"] == "fp32" and props["frame_seconds"] == "0.04"
        assert props["backbone"] == backbone
        assert [value.name for value in graph.graph.input] == [v["name"] for v in manifest["graphs"][name]["inputs"]]


def test_altered_missing_or_extra_files_are_named(exported, tmp_path):
    _, _, artifact = exported
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    (copy / "engines").mkdir()
    (copy / "engines" / "decoder.fp16.engine").write_bytes(b"built later; not part of the artifact's hashes")
    read_manifest(copy)

    data = bytearray((copy / "decoder.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "decoder.onnx").write_bytes(bytes(data))
    (copy / "tokenizer.json").unlink()
    (copy / "notes.txt").write_text("?")
    with pytest.raises(ArtifactError) as error:
        read_manifest(copy)
    message = str(error.value)
    assert "decoder.onnx was altered" in message and "tokenizer.json is missing" in message
    assert "notes.txt is not in the manifest" in message

    manifest = json.loads((artifact / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ArtifactError, match="schema version 99"):
        read_manifest(copy, verify=False)


def test_interrupted_export_leaves_no_artifact(exported, tmp_path, monkeypatch):
    import framestamp.export.graphs as graphs

    _, checkpoint, _ = exported

    def fail_halfway(model, folder, *args, **kwargs):
        (folder / "encoder.onnx").write_bytes(b"half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(graphs, "export_model", fail_halfway)
    with pytest.raises(KeyboardInterrupt):
        export_fp32(checkpoint, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_parity_command_exits_non_zero_past_its_tolerance(exported, speech, capsys):
    backbone, checkpoint, artifact = exported
    if backbone != "omni-tiny":
        pytest.skip("the command is the same for both backbones")
    common = ["parity", str(checkpoint), str(artifact), "--manifest", str(speech), "--batch-sizes", "2",
              "--seconds", "3", "--json"]
    assert main(common) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True
    assert main(common + ["--max-abs", "1e-15"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is False and result["end_to_end"]["max_abs"] > 1e-15


def test_parity_json_is_the_only_thing_on_stdout(exported, capsys):
    backbone, checkpoint, artifact = exported
    if backbone != "omni-tiny":
        pytest.skip("the command is the same for both backbones")
    # Without --manifest it generates clips first, and that nested command reports what it wrote.
    assert main(["parity", str(checkpoint), str(artifact), "--batch-sizes", "1", "--seconds", "0.5", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["passed"] is True
    assert "wrote" in captured.err and "wrote" not in captured.out


def test_evaluate_scores_an_artifact_as_its_checkpoint_on_any_thread_count(exported, speech, capsys):
    import torch

    backbone, checkpoint, artifact = exported
    if backbone != "omni-tiny":
        pytest.skip("evaluation does not depend on the backbone")
    before = torch.get_num_threads()
    scores = []
    try:
        # the checkpoint on torch's default threads, the artifact on one thread (torch's and ONNX Runtime's)
        for model, threads in ((checkpoint, []), (artifact, ["--threads", "1"])):
            assert main(["evaluate", str(model), str(speech), "--json", *threads]) == 0
            scores.append(json.loads(capsys.readouterr().out))
        assert torch.get_num_threads() == 1
        assert main(["evaluate", str(checkpoint), str(speech), "--threads", "0"]) == 2
        assert "--threads 0: give 1 or more" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
    # the same answers: times placed inside their frames by each one's own scores agree to well under a millisecond
    assert flattened(scores[0]) == pytest.approx(flattened(scores[1]), abs=1e-5)


def flattened(tree, prefix=""):
    """A nested dict of evaluation results as one flat {path: value} dict."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {key: value for name, child in tree.items() for key, value in flattened(child, f"{prefix}/{name}").items()}


def test_merged_audio_graphs_equal_pytorch_at_random_shapes(exported):
    """Token merging on: PyTorch (the plan from its own encoder's output, means in torch) against ONNX
    Runtime (NumPy merging between the graphs), random batches, lengths, ratios and settings."""
    import torch

    from framestamp.runtime.merging import merge_batch
    from framestamp.runtime.prompts import pad_prompts, prompt_ids, render_prompt
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.model import Merging, merge_audio

    backbone, checkpoint, artifact = exported
    model, _ = load_checkpoint(checkpoint)
    sessions = GraphSessions.open(artifact)
    assert sessions.takes_merged_audio
    rng = np.random.default_rng(3)
    worst = 0.0
    for _ in range(6 if backbone == "omni-tiny" else 2):  # Qwen2-Audio encodes 30 s whatever the length
        batch = int(rng.integers(1, 4))
        lengths = rng.integers(5, int(LONGEST[backbone] * 20), batch)  # up to a fifth of the longest clip
        mel = rng.normal(size=(batch, 128, int(lengths.max()))).astype(np.float32)
        merging = Merging(float(rng.choice([0.2, 0.4, 0.6])), str(rng.choice(["local", "global"])),
                          str(rng.choice(["first", "mean", "compact"])), str(rng.choice(["frames", "segments"])))
        questions = [render_prompt("word", {"word": "time", "occurrence": int(rng.integers(1, 4))}) for _ in range(batch)]
        with torch.no_grad():
            audio, counts = model.encode_audio(torch.from_numpy(mel), torch.from_numpy(lengths))
            merged, tokens, positions, places, plans = merge_audio(audio, counts, merging)
            prompt = pad_prompts([prompt_ids(model.tokenizer, q, int(t)) for q, t in zip(questions, tokens)], model.pad_id)
            expected = model.frame_scores(*map(torch.from_numpy, prompt), merged, tokens, positions, places).scores.numpy()
        onnx_audio, onnx_counts = sessions.encode(mel, lengths)
        onnx_merged, onnx_tokens, onnx_positions, onnx_places, onnx_plans = merge_batch(
            onnx_audio, onnx_counts, merging.ratio, merging.kind, merging.positions, merging.head)
        assert all(np.array_equal(a.group, b.group) for a, b in zip(plans, onnx_plans))
        scores = sessions.scores(*prompt, onnx_merged, onnx_tokens, onnx_positions, onnx_places)
        valid = onnx_places >= 0
        worst = max(worst, float(np.abs(scores[valid] - expected[valid]).max()))
    assert worst <= 1e-4


def test_the_merging_locator_answers_as_pytorch_merging(exported, speech):
    """Locator(merge=...) (prompts cut to the merged tokens) against PyTorch merging the same clips."""
    import torch

    from framestamp.data.manifest import read_manifest
    from framestamp.runtime.features import log_mel
    from framestamp.runtime.audio import load_audio
    from framestamp.runtime.decoding import decode_events
    from framestamp.runtime.locator import Locator, Query
    from framestamp.runtime.prompts import pad_prompts, prompt_ids, render_prompt
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.model import Merging, merge_audio

    backbone, checkpoint, artifact = exported
    if backbone != "omni-tiny":
        pytest.skip("the runtime's merging does not depend on the backbone")
    model, _ = load_checkpoint(checkpoint)
    examples = [example for example in read_manifest(speech) if example.task == "word"][:3]
    for kind in ("local", "global"):
        locator = Locator(artifact, merge=0.4, merge_kind=kind, count_check=False)
        answers = locator.run([Query(speech.parent / example.audio, "word", dict(example.prompt)) for example in examples])
        for example, answer in zip(examples, answers):
            mel = log_mel(load_audio(speech.parent / example.audio), DEFAULT_SETTINGS)
            with torch.no_grad():
                audio, counts = model.encode_audio(torch.from_numpy(mel)[None], torch.tensor([mel.shape[1]]))
                merged, tokens, positions, places, _ = merge_audio(audio, counts, Merging(0.4, kind))
                question = render_prompt("word", dict(example.prompt))
                prompt = pad_prompts([prompt_ids(model.tokenizer, question, int(tokens[0]))], model.pad_id)
                scores = model.frame_scores(*map(torch.from_numpy, prompt), merged, tokens, positions, places).scores
            expected = decode_events(scores[0, : int(counts[0]), 0].double().numpy(), 1, "poisson")
            np.testing.assert_allclose(answer.times, expected, atol=1e-9)


# --- TensorRT: profiles and engine manifests are checked here; building needs tensorrt and a GPU ------

def test_engine_profiles_cover_the_encoder_graphs_output(exported):
    from framestamp.export.tensorrt import profile_shapes

    backbone, _, artifact = exported
    manifest = read_manifest(artifact)
    seconds = 25.0
    shapes = profile_shapes(manifest, max_batch=4, max_seconds=seconds, max_prompt_tokens=64)
    smallest, _, largest = shapes["encoder"]["mel"]
    assert largest == (4, 128, 2500) and smallest[0] == 1
    sessions = GraphSessions.open(artifact)
    mel = np.zeros((1, 128, largest[2]), dtype=np.float32)
    audio, counts = sessions.encode(mel, np.array([largest[2]]))
    assert audio.shape[1] == shapes["decoder"]["audio"][2][1]  # the encoder pads Omni's audio to whole chunks
    assert counts[0] == audio_frames_for_mel(largest[2])
    assert shapes["decoder"]["input_ids"][2][1] == 64 + counts[0] + 2
    if backbone == "qwen2-audio-tiny":
        with pytest.raises(Exception, match="at most 30 s"):
            profile_shapes(manifest, 1, 31.0, 64)


def test_an_engine_for_another_gpu_or_tensorrt_is_refused():
    from framestamp.runtime.engines import check_engine_manifest
    from framestamp.runtime.errors import InputError

    built = {"engine": "decoder.fp16.engine", "precision": "fp16", "tensorrt_version": "10.13.0",
             "gpu": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}}
    check_engine_manifest(built, "10.13.0", {"name": "NVIDIA H100 PCIe", "compute_capability": "9.0"})
    with pytest.raises(InputError, match="rebuild it here"):
        check_engine_manifest(built, "10.13.0", {"name": "NVIDIA A100", "compute_capability": "8.0"})
    with pytest.raises(InputError, match="TensorRT 10.13.0"):
        check_engine_manifest(built, "10.14.1", {"name": "NVIDIA H100 PCIe", "compute_capability": "9.0"})


def test_build_engine_without_tensorrt_says_what_to_install(exported, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed: test_build_engines covers it")
    except ImportError:
        pass
    _, _, artifact = exported
    assert main(["build-engine", str(artifact), "--precision", "fp16"]) == 2
    assert "tensorrt module is not installed" in capsys.readouterr().err


def test_build_engines(exported, tmp_path):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed (its builder wheels are not on PyPI); "
                                           "run on a GPU machine with pip install 'framestamp[tensorrt]'")
    from framestamp.export.tensorrt import build_engines

    _, _, artifact = exported
    fp16 = convert_artifact(artifact, tmp_path / "fp16", "fp16")
    described = build_engines(tmp_path / "fp16", "fp16", max_batch=2, max_seconds=10, max_prompt_tokens=64)
    for name, entry in described.items():
        assert (tmp_path / "fp16" / "engines" / entry["engine"]).stat().st_size > 0
        assert entry["graph_sha256"] == fp16["files"][f"{name}.onnx"]


def test_polygraphy_runs_the_saved_real_inputs_through_onnx_runtime(exported, tmp_path):
    """Everything `parity --trt` hands polygraphy, checked without TensorRT: inputs, graphs, shape flags."""
    import subprocess

    from framestamp.export.tensorrt import polygraphy_commands, profile_shapes, save_real_inputs

    backbone, _, artifact = exported
    if backbone != "omni-tiny":
        pytest.skip("the commands do not depend on the backbone")
    inputs = save_real_inputs(artifact, tmp_path, clips=2)
    shapes = profile_shapes(read_manifest(artifact), 2, 20.0, 128)
    with_trt = polygraphy_commands(artifact, inputs, shapes)
    assert "--trt" in with_trt[1] and any(arg.startswith("input_ids:[1,2]") for arg in with_trt[1])
    for command in polygraphy_commands(artifact, inputs, shapes, trt=False):
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "PASSED" in done.stdout + done.stderr


def test_parity_clips_cut_short_keep_the_transcript_words_that_still_start_inside():
    from framestamp.data.manifest import Example
    from framestamp.export.parity import fitted_examples

    words = "one two three four five".split()
    transcript = Example(id="t", task="transcript", prompt={"transcript": " ".join(words)},
                         times=(0.2, 0.9, 1.6, 2.3, 3.0), ends=(0.8, 1.5, 2.2, 2.9, 3.6), duration=4.0, audio="a.wav")
    word = Example(id="w", task="word", prompt={"word": "four", "occurrence": 1}, times=(2.3,), duration=4.0, audio="a.wav")
    # Rows shrink from 2 s to 1.2 s: the transcript row keeps the words starting before its end.
    cut, cut_word = fitted_examples([transcript, word], 2.0, 2, offset=0)
    assert cut.duration == 2.0 and list(cut.times) == [0.2, 0.9, 1.6]
    assert cut.prompt["transcript"].split() == words[:3]
    assert cut_word.duration == 1.2 and list(cut_word.times) == [0.6]  # past its end: the middle of the cut clip
    (shortest,) = fitted_examples([transcript], 0.1, 1, offset=0)
    assert shortest.prompt["transcript"] == "one" and list(shortest.times) == [0.05]
