"""`framestamp triton-repo`: every config parses as Triton's ModelConfig, the encoder's and decoder's tensors
are the artifact's graphs' (read by ONNX Runtime), the front takes and answers the server's protocol, and
the Python front/back, its forward passes sent as BLS requests, answers as the Locator does."""

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")

from google.protobuf import json_format, text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

from framestamp.cli import main  # noqa: E402
from framestamp.protocol import INPUTS, OUTPUTS  # noqa: E402
from framestamp.runtime import Locator  # noqa: E402
from framestamp.runtime.artifact import SHIPPED_ARTIFACT, read_manifest  # noqa: E402

ONNX_TYPES = {"tensor(float)": model_config_pb2.TYPE_FP32, "tensor(int64)": model_config_pb2.TYPE_INT64}


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    out = tmp_path_factory.mktemp("triton") / "repo"
    assert main(["triton-repo", "shipped", str(out), "--max-batch", "8", "--queue-delay-us", "3000"]) == 0
    return out


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_every_config_parses_and_names_its_files(repository):
    configs = {path.parent.name: parse(path) for path in repository.glob("*/config.pbtxt")}
    assert set(configs) == {"framestamp", "framestamp_encoder", "framestamp_decoder"}
    for name, config in configs.items():
        assert config.name == name and config.max_batch_size == 8
    assert configs["framestamp"].backend == "python" and (repository / "framestamp/1/model.py").is_file()
    assert configs["framestamp"].dynamic_batching.max_queue_delay_microseconds == 3000
    for name in ("framestamp_encoder", "framestamp_decoder"):
        assert configs[name].backend == "onnxruntime" and (repository / name / "1/model.onnx").is_file()
        assert configs[name].instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    read_manifest(repository / "framestamp/1/artifact", verify=True)  # the front's copy is intact
    compile((repository / "framestamp/1/model.py").read_text(), "model.py", "exec")


@pytest.mark.parametrize("graph", ["encoder", "decoder"])
def test_graph_configs_match_the_artifacts_graphs(repository, graph):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(SHIPPED_ARTIFACT / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
    config = parse(repository / f"framestamp_{graph}" / "config.pbtxt")
    for declared, values in ((config.input, session.get_inputs()), (config.output, session.get_outputs())):
        assert [tensor.name for tensor in declared] == [value.name for value in values]
        for tensor, value in zip(declared, values):
            assert tensor.data_type == ONNX_TYPES[value.type]
            dims = [d if isinstance(d, int) else -1 for d in value.shape[1:]]  # the batch axis is implicit
            if dims:
                assert list(tensor.dims) == dims and not tensor.HasField("reshape")
            else:  # one value per batch item
                assert list(tensor.dims) == [1] and list(tensor.reshape.shape) == []


def test_front_takes_and_answers_the_servers_protocol(repository):
    config = parse(repository / "framestamp" / "config.pbtxt")
    kinds = {"BYTES": model_config_pb2.TYPE_STRING, "FP32": model_config_pb2.TYPE_FP32,
             "INT32": model_config_pb2.TYPE_INT32}
    assert [(t.name, t.data_type, list(t.dims), t.optional) for t in config.input] == [
        (t.name, kinds[t.datatype], list(t.dims), t.optional) for t in INPUTS]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        (t.name, kinds[t.datatype], list(t.dims)) for t in OUTPUTS]


def test_tensorrt_without_engines_is_refused_with_the_command_to_build_them(tmp_path, capsys):
    assert main(["triton-repo", "shipped", str(tmp_path / "repo"), "--backend", "tensorrt"]) == 2
    assert "framestamp build-engine" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def fake_python_backend(repository: Path, calls: list) -> types.ModuleType:
    """triton_python_backend_utils as the Python backend provides it, with BLS requests run by ONNX Runtime
    on the repository's own model files, checked against their configs' shapes."""
    import onnxruntime

    module = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, value):
            self.name, self.value = name, np.asarray(value)

        def as_numpy(self):
            return self.value

        def name(self):
            return self.name

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.output_tensors, self.error_value = list(output_tensors), error

        def has_error(self):
            return self.error_value is not None

    class InferenceRequest:
        def __init__(self, model_name, requested_output_names, inputs):
            self.model_name, self.outputs, self.inputs = model_name, requested_output_names, inputs

        def exec(self):
            config = parse(repository / self.model_name / "config.pbtxt")
            feed = {}
            for tensor, declared in zip(self.inputs, config.input):
                assert tensor.name == declared.name and tensor.value.shape[0] <= config.max_batch_size
                assert tensor.value.ndim == 1 + len(declared.dims)  # as Triton checks a request
                feed[tensor.name] = tensor.value.reshape(tensor.value.shape[0], *declared.reshape.shape) \
                    if declared.HasField("reshape") else tensor.value
            session = onnxruntime.InferenceSession(str(repository / self.model_name / "1/model.onnx"),
                                                   providers=["CPUExecutionProvider"])
            calls.append((self.model_name, len(next(iter(feed.values())))))
            values = session.run(self.outputs, feed)
            reshaped = {t.name for t in config.output if t.HasField("reshape")}
            return InferenceResponse([Tensor(name, v.reshape(-1, 1) if name in reshaped else v)
                                      for name, v in zip(self.outputs, values)])

    module.Tensor, module.InferenceRequest, module.InferenceResponse = Tensor, InferenceRequest, InferenceResponse
    module.get_input_tensor_by_name = lambda request, name: request.get(name)
    module.get_output_tensor_by_name = lambda response, name: next(
        (t for t in response.output_tensors if t.name == name), None)
    return module


@pytest.mark.espeak
def test_the_front_and_back_answer_a_batch_as_the_locator(repository, tmp_path, monkeypatch):
    from framestamp.data.manifest import read_manifest as read_examples

    calls: list = []
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_python_backend(repository, calls))
    from framestamp.triton_bls import TritonPythonModel

    assert main(["synth", str(tmp_path / "clips"), "--count", "1", "--seed", "31", "--tasks", "words",
                 "--voices", "en-029"]) == 0
    examples = read_examples(tmp_path / "clips" / "manifest.jsonl")[:5]
    model = TritonPythonModel()
    model.initialize({"model_config": json.dumps(json_format.MessageToDict(
        parse(repository / "framestamp" / "config.pbtxt"), preserving_proto_field_name=True)),
        "model_repository": str(repository / "framestamp"), "model_version": "1"})

    def request(example):
        audio = (tmp_path / "clips" / example.audio).read_bytes()
        return {"task": types.SimpleNamespace(as_numpy=lambda: np.array([[b"word"]], dtype=object)),
                "text": types.SimpleNamespace(as_numpy=lambda: np.array([[example.prompt["word"].encode()]], dtype=object)),
                "occurrence": types.SimpleNamespace(as_numpy=lambda: np.array([[example.prompt["occurrence"]]], np.int32)),
                "audio": types.SimpleNamespace(as_numpy=lambda: np.array([[audio]], dtype=object))}

    bad = {"task": types.SimpleNamespace(as_numpy=lambda: np.array([[b"event"]], dtype=object)),
           "text": types.SimpleNamespace(as_numpy=lambda: np.array([[b"Unicorn"]], dtype=object)),
           "audio": types.SimpleNamespace(as_numpy=lambda: np.array([[b"x"]], dtype=object))}
    responses = model.execute([request(e) for e in examples])
    # One batched forward pass through BLS (with the earlier occurrences the count check asks alongside): the
    # encoder hears each distinct clip once, the decoder reads every question.
    assert [name for name, _ in calls] == ["framestamp_encoder", "framestamp_decoder"]
    assert calls[0][1] == len({e.audio for e in examples}) < len(examples) <= calls[1][1]
    locator = Locator("shipped", threads=1)
    for example, response in zip(examples, responses):
        expected = locator.word(tmp_path / "clips" / example.audio, example.prompt["word"], example.prompt["occurrence"])
        outputs = {t.name: t.value for t in response.output_tensors}
        assert np.allclose(outputs["times"].reshape(-1), expected.times, atol=1e-5)
        assert np.allclose(outputs["confidence"].reshape(-1), expected.confidence, atol=1e-5)
        assert "error" not in outputs
    mixed = model.execute([bad, request(examples[0])])  # a refusal does not spoil its batch-mate
    answered = {t.name: t.value for t in mixed[1].output_tensors}
    assert np.allclose(answered["times"].reshape(-1), {t.name: t.value for t in responses[0].output_tensors}["times"])
    refused = {t.name: t.value for t in mixed[0].output_tensors}
    assert set(refused) == {"error"} and b"Unicorn" in refused["error"].reshape(-1)[0]
