"""Every kind of bad input gets one readable line, never a traceback from three layers down: tables of
inputs and the message fragment each must produce (issue 12)."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import framestamp
from framestamp.cli import main
from framestamp.runtime import FramestampError, InputError, Locator, Query
from framestamp.runtime.artifact import ArtifactError, read_manifest, sha256

ARTIFACT = Path(framestamp.__file__).parent / "models" / "omni-tiny-synth-onnx"
RATE = 16_000


@pytest.fixture(scope="module")
def speech():
    """A second of a chirp: sound, not silence, not a constant."""
    t = np.arange(RATE) / RATE
    return (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def locator():
    return Locator(ARTIFACT, threads=1)


# ------------------------------------------------------------------------------------------ the artifact
def artifact_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "artifact"
    shutil.copytree(ARTIFACT, copy)
    return copy


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def rehash(folder: Path, *names: str) -> None:
    """Keep the manifest's sha256 in step with files replaced on purpose (so the check under test is the one hit)."""
    edit_manifest(folder, lambda m: m["files"].update({name: sha256(folder / name) for name in names}))


def set_key(path: str, value):
    def change(manifest):
        *parents, last = path.split(".")
        node = manifest
        for key in parents:
            node = node[key]
        node[last] = value
    return change


def drop_key(name: str):
    return lambda manifest: manifest.pop(name)


MANIFEST_EDITS = [
    (drop_key("graphs"), "'graphs' is missing"),
    (drop_key("limits"), "'limits' is missing"),
    (drop_key("features"), "'features' is missing"),
    (drop_key("frame_seconds"), "'frame_seconds' is missing"),
    (set_key("graphs", []), "'graphs' is list, expected dict"),
    (set_key("features", "whisper"), "'features' is str, expected dict"),
    (set_key("frame_seconds", "0.04"), "'frame_seconds' is str"),
    (set_key("frame_seconds", 0), "'frame_seconds' must be a positive number"),
    (set_key("frame_seconds", -0.04), "'frame_seconds' must be a positive number"),
    (set_key("frame_seconds", math.nan), "'frame_seconds' must be a positive number"),
    (set_key("frame_seconds", 0.08), "does not describe"),
    (set_key("features.n_fft", 800), "does not describe"),
    (set_key("head.objective", "binary"), "does not describe"),
    (set_key("trained_on.max_seconds", "long"), "'trained_on.max_seconds' must be a positive number"),
    (set_key("trained_on.vocabulary", "dog cat"), "'trained_on.vocabulary' must be a list of strings"),
    (set_key("prompts.before_audio", "{question}"), "differ from this framestamp's prompt templates"),
    (set_key("precision", "fp64"), "'precision' must be one of"),
    (set_key("graphs.encoder.file", "../encoder.onnx"), "leaves the artifact folder"),
    (set_key("graphs.decoder.file", "/etc/passwd"), "leaves the artifact folder"),
    (set_key("files", {"../../etc/passwd": "0" * 64}), "leaves the artifact folder"),
    (set_key("warning_thresholds", {"absent_below": {"event": "low"}}), "must map tasks to finite numbers"),
]


@pytest.mark.parametrize("change, message", MANIFEST_EDITS)
def test_an_edited_manifest_is_refused_in_one_line(tmp_path, change, message):
    folder = artifact_copy(tmp_path)
    edit_manifest(folder, change)
    with pytest.raises(ArtifactError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Locator(folder)


def test_a_manifest_that_is_not_json_is_refused(tmp_path):
    folder = artifact_copy(tmp_path)
    for content in (b"{not json", b"\xff\xfe garbage"):
        (folder / "manifest.json").write_bytes(content)
        with pytest.raises(ArtifactError, match="not valid JSON"):
            Locator(folder)


def garble(folder: Path) -> str:
    (folder / "decoder.onnx").write_bytes(b"\x08\x07garbage that is not a protobuf" * 50)
    rehash(folder, "decoder.onnx")
    return "damaged"


def swap(folder: Path) -> str:
    edit_manifest(folder, lambda m: (m["graphs"]["encoder"].update(file="decoder.onnx"),
                                     m["graphs"]["decoder"].update(file="encoder.onnx")))
    return "swapped"


def garbage_tokenizer(folder: Path) -> str:
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": 7}')
    rehash(folder, "tokenizer.json")
    return "not a tokenizer tokenizers can read"


def tokenizer_without_audio_tokens(folder: Path) -> str:
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(folder / "tokenizer.json"))
    rehash(folder, "tokenizer.json")
    return "the tokenizer has no '<|endoftext|>' token"


def graph_linked_out(folder: Path) -> str:
    outside = folder.parent / "outside.onnx"
    shutil.copy(folder / "encoder.onnx", outside)
    (folder / "encoder.onnx").unlink()
    (folder / "encoder.onnx").symlink_to(outside)
    return "is a link that leads out of the artifact folder"


def external_data_out(folder: Path) -> str:
    import onnx
    from onnx import TensorProto, helper

    (folder.parent / "secret.bin").write_bytes(b"root:x:0:0" * 10)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight])
    onnx.save(helper.make_model(graph), str(folder / "encoder.onnx"))
    rehash(folder, "encoder.onnx")
    return "'../secret.bin' leaves the artifact folder"


@pytest.mark.parametrize("damage", [garble, swap, garbage_tokenizer, tokenizer_without_audio_tokens, graph_linked_out,
                                    external_data_out])
def test_damaged_artifacts_are_refused_by_framestamp_itself(tmp_path, damage):
    folder = artifact_copy(tmp_path)
    message = damage(folder)
    with pytest.raises(FramestampError, match=message.replace("(", r"\(").replace("|", r"\|")):
        Locator(folder)


# ------------------------------------------------------------------------------------- options and queries
@pytest.mark.parametrize("options, message", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"batch_size": -1}, "batch_size must be an integer >= 1"),
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
    ({"threads": 0}, "threads must be an integer >= 1"),
    ({"max_seconds": -1}, "max_seconds must be a positive number"),
    ({"max_seconds": math.nan}, "max_seconds must be a positive number"),
    ({"max_prompt_tokens": 0}, "max_prompt_tokens must be an integer >= 1"),
    ({"precision": "int8"}, "precision picks TensorRT engines"),
    ({"backend": "cuda"}, "backend must be 'onnxruntime' or 'tensorrt'"),
    ({"providers": "CPUExecutionProvider"}, "providers must be a non-empty list"),
    ({"providers": []}, "providers must be a non-empty list"),
    ({"decoding": "viterbi"}, "decoding must be one of"),
])
def test_locator_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(InputError, match=message):
        Locator(ARTIFACT, **options)


@pytest.mark.parametrize("call, message", [
    (lambda loc, x: loc.run(Query(x, "word", {"word": "dog", "occurrence": 1}, rate=RATE)), "takes a list of Query"),
    (lambda loc, x: loc.run("clip.wav"), "takes a list of Query"),
    (lambda loc, x: loc.run([("clip.wav", "word")]), "takes a list of Query objects, got tuple"),
    (lambda loc, x: loc.run([Query(x, "word", None, rate=RATE)]), "Query.fields must be a dict"),
    (lambda loc, x: loc.run([Query(x, "dance", {}, rate=RATE)]), "unknown task 'dance'"),
    (lambda loc, x: loc.run([Query(x, "word", {"word": "dog"}, rate=RATE)]), "needs prompt field(s) occurrence"),
    (lambda loc, x: loc.run([Query(x, "word", {"word": 7, "occurrence": 1}, rate=RATE)]), "must be a non-empty string"),
    (lambda loc, x: loc.run([Query(x, "word", {"word": "dog", "occurrence": 1}, count=0, rate=RATE)]), "count must be"),
    (lambda loc, x: loc.run([Query(x, "word", {"word": "dog", "occurrence": 1}, count=True, rate=RATE)]), "count must be"),
    (lambda loc, x: loc.run([Query(x, "transcript", {"transcript": "a b c"}, count=2, rate=RATE)]), "does not fit"),
    (lambda loc, x: loc.ask(x, "  ", rate=RATE), "a raw question needs its text"),
    (lambda loc, x: loc.word(x, "dog", occurrence=True, rate=RATE), "occurrence"),
    (lambda loc, x: loc.word(x, "x" * 100_000, rate=RATE), "more than the 2048 allowed"),
    (lambda loc, x: loc.word(x, "dog", transcript=["the", "dog"], rate=RATE), "transcript must be a string"),
    (lambda loc, x: loc.word(x, "do\ud800g", rate=RATE), "half of a UTF-16 pair"),
    (lambda loc, x: loc.transcript(x, "the \udfff dog", rate=RATE), "half of a UTF-16 pair"),
    (lambda loc, x: loc.ask(x, "when\ud83d?", rate=RATE), "half of a UTF-16 pair"),
    (lambda loc, x: loc.word("a" * 5000 + ".wav", "dog"), "cannot be read (File name too long)"),
    (lambda loc, x: loc.word(Path(__file__).parent, "dog"), "is a folder, not an audio file"),
])
def test_malformed_queries_are_refused(locator, speech, call, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(locator, speech)


# ---------------------------------------------------------------------------------------------- audio
def write_wav(path: Path, samples, subtype="PCM_16") -> str:
    soundfile.write(str(path), samples, RATE, subtype=subtype)
    return str(path)


def cut_in_half(path: Path, samples) -> str:
    write_wav(path, samples)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


@pytest.mark.parametrize("make_audio, message", [
    (lambda tmp, x: cut_in_half(tmp / "cut.wav", x), "is cut short"),
    (lambda tmp, x: write_wav(tmp / "loud.wav", x * 1e6, "FLOAT"), "far outside [-1, 1]"),
    (lambda tmp, x: write_wav(tmp / "dc.wav", np.full(RATE, 0.5, np.float32), "FLOAT"), "constant offset (DC)"),
    (lambda tmp, x: np.full(RATE, -0.25, np.float32), "constant offset (DC)"),
    (lambda tmp, x: x > 0, "holds booleans"),
    (lambda tmp, x: x.astype(np.complex64), "holds complex numbers"),
    (lambda tmp, x: np.array(["a"] * RATE), "holds text"),
    (lambda tmp, x: x.astype(object), "holds Python objects"),
    (lambda tmp, x: (x * 32767).astype(np.float32), "integer PCM stored as floats"),
])
def test_bad_audio_is_refused(locator, speech, tmp_path, make_audio, message):
    audio = make_audio(tmp_path, speech)
    rate = None if isinstance(audio, str) else RATE
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        locator.word(audio, "dog", rate=rate)


def test_a_long_file_is_refused_from_its_header_before_it_is_decoded(speech, tmp_path, monkeypatch):
    path = write_wav(tmp_path / "long.wav", np.tile(speech, 3))
    monkeypatch.setattr(soundfile, "read", lambda *a, **k: pytest.fail("decoded a file its header already refuses"))
    with pytest.raises(InputError, match="3.0 s of audio is longer than the 2 s this model takes"):
        Locator(ARTIFACT, max_seconds=2).word(path, "dog")


def test_audio_too_big_for_this_machine_is_refused_before_the_graphs_run(locator, speech, monkeypatch):
    from framestamp.runtime import locator as module

    assert locator.attention_heads == 4 and locator.max_positions == 32768
    monkeypatch.setattr(module, "available_memory", lambda: 1 << 16)  # 64 KiB free
    monkeypatch.setattr(locator.graphs, "encode", lambda *a: pytest.fail("ran the graphs"))
    with pytest.raises(InputError, match=r"needs about .* GiB of memory .* split the audio"):
        locator.word(speech, "dog", rate=RATE)


@pytest.mark.parametrize("frame_seconds", [0, -0.04, math.nan, math.inf, "0.04", True])
def test_decoding_refuses_a_frame_length_that_is_not_a_positive_number(frame_seconds):
    from framestamp.runtime.decoding import binary_top_k, event_confidence, ordered_map, posterior_mode

    scores = np.array([0.0, 2.0, 1.0, 3.0])
    for decode in (lambda: posterior_mode(scores, 2, frame_seconds), lambda: ordered_map(scores, 2, frame_seconds),
                   lambda: binary_top_k(scores, 2, frame_seconds),
                   lambda: event_confidence(scores, [0.04], "poisson", frame_seconds)):
        with pytest.raises(InputError, match="frame_seconds must be a positive number"):
            decode()


# --------------------------------------------------------------------------------------------- engines
@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "framestamp-engine"}', "engine manifest lacks"),
    ('{"format": "framestamp-engine", "engine": "e", "tensorrt_version": "10", "precision": "fp16", "limits": {}, '
     '"gpu": {"name": "H100"}}', "gpu.compute_capability"),
    ("[1, 2]", "not a framestamp engine manifest"),
])
def test_engine_manifests_that_are_broken_are_refused(tmp_path, content, message):
    from framestamp.runtime.engines import read_engine_manifest

    (tmp_path / "decoder.fp16.json").write_text(content)
    with pytest.raises(InputError, match=message):
        read_engine_manifest(tmp_path / "decoder.fp16.engine")


@pytest.mark.parametrize("printed", ["", "\n", "NVIDIA H100", "NVIDIA H100, "])
def test_an_nvidia_smi_that_names_no_gpu_is_one_line(monkeypatch, printed):
    from framestamp.runtime import engines

    monkeypatch.setattr(engines.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, printed, ""))
    with pytest.raises(InputError, match="nvidia-smi did not name a GPU"):
        engines.gpu_identity()


# ----------------------------------------------------------------------------------------- the command
@pytest.mark.parametrize("arguments, message", [
    (["--speaker", "2", "--occurrence", "3"], "--speaker K already says which speaker"),
    (["--transcript", "the dog", "--occurrence", "2"], "a --transcript asks about every word"),
    (["--word", "dog", "--precision", "int8"], "--precision picks TensorRT engines"),
    (["--word", "dog", "--transcript", "the cat sat"], "the word 'dog' is not in the transcript"),
    (["--word", "dog", "--occurrence", "3", "--transcript", "the dog saw a Dog,"], "'dog' occurs 2 time(s)"),
    (["--word", "the dog"], "is 2 words; ask about one word"),
    (["--word", "dog", "--min-confidence", "2"], "--min-confidence is a probability in [0, 1]"),
    (["--event", "Dog", "--transcript", "the dog"], "--transcript goes alone"),
    ([], "ask one question"),
    (["--word", "dog", "--providers", "Bogus\x1eProvider\n"], "has no Bogus\\x1eProvider\\n;"),  # escaped: one line
])
def test_locate_refuses_options_that_do_nothing_in_one_line(speech, tmp_path, capsys, arguments, message):
    audio = write_wav(tmp_path / "clip.wav", speech)
    assert main(["locate", audio, *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


BLOCK_TORCH = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Blocked())
from framestamp.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", [["export", "framestamp/models/omni-tiny-synth", "OUT"],
                                     ["bench", "latency", "--quick"], ["demo"]])
def test_toolkit_commands_say_they_need_torch_in_a_runtime_only_install(tmp_path, command):
    command = [str(tmp_path / "out") if word == "OUT" else word for word in command]
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *command], capture_output=True, text=True, timeout=300,
                          cwd=Path(framestamp.__file__).parent.parent)
    assert done.returncode == 2, done.stderr
    assert "needs torch, which is not installed" in done.stderr and "Traceback" not in done.stderr


# ----------------------------------------------------------------------------------- dataset manifests
LINE = {"id": "a", "task": "word", "prompt": {"word": "dog", "occurrence": 1}, "times": [0.5], "duration": 1.0,
        "audio": "a.wav"}


@pytest.mark.parametrize("content, message", [
    (json.dumps(LINE).encode() + b"\n" + b'{"id": "\xff\xfe"}\n', "2: not valid UTF-8"),
    (json.dumps({**LINE, "id": "   "}).encode(), "'id' must be a non-empty string (not blank)"),
    (json.dumps({**LINE, "task": "transcript", "prompt": {"transcript": "the dog came"}, "times": [0.1, 0.2]}).encode(),
     "a transcript of 3 words needs as many times"),
])
def test_the_manifest_reader_refuses_bad_lines(tmp_path, content, message):
    from framestamp.data.manifest import read_manifest as read_dataset
    from framestamp.runtime import ManifestError

    path = tmp_path / "manifest.jsonl"
    path.write_bytes(content)
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_dataset(path)


def test_training_names_the_line_whose_audio_is_missing_before_step_one(tmp_path, speech, capsys):
    write_wav(tmp_path / "a.wav", speech)
    lines = [{**LINE, "id": str(i), "audio": "a.wav" if i != 3 else "gone.wav"} for i in range(1, 6)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["train", str(tmp_path / "run"), "--train", str(tmp_path / "train.jsonl"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "train.jsonl:3: audio file" in err and "gone.wav does not exist" in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").glob("checkpoint-*"))


def test_the_shipped_artifact_passes_every_check():
    manifest = read_manifest(ARTIFACT)
    checkpoint = json.loads((ARTIFACT.parent / "omni-tiny-synth" / "framestamp.json").read_text())
    assert manifest["limits"]["max_positions"] == 32768
    assert manifest["trained_on"]["max_seconds"] == checkpoint["training"]["max_seconds"] > 0
