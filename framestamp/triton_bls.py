"""The front and back of a `framestamp triton-repo` repository, run by Triton's Python backend (BLS).

The repository's ``framestamp`` model imports TritonPythonModel from here. Per dynamic batch it does
what the Locator does (features, prompt tokens, then decoding, confidence and warnings), with the
two forward passes sent to the repository's ``encoder`` and ``decoder`` models (onnxruntime or
tensorrt backend) as Business Logic Scripting requests. Needs framestamp[runtime] in the Python
backend's environment.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace


class TritonSession:
    """An ONNX Runtime session's ``get_inputs()`` and ``run()``, answered by another model of the same
    Triton server: the runtime's GraphSessions builds the feeds exactly as it does for ONNX Runtime."""

    def __init__(self, model_name: str, session):
        """``session``: the ONNX Runtime session of the same graph, for its tensors' names and ranks."""
        self.model_name = model_name
        self.inputs = [SimpleNamespace(name=value.name) for value in session.get_inputs()]
        # One value per batch item ([batch]) travels as [batch, 1]: the repository's configs reshape it.
        self.per_item = {value.name for value in [*session.get_inputs(), *session.get_outputs()] if len(value.shape) == 1}

    def get_inputs(self):
        return self.inputs

    def run(self, output_names, feed: dict):
        import triton_python_backend_utils as pb_utils

        request = pb_utils.InferenceRequest(
            model_name=self.model_name, requested_output_names=list(output_names),
            inputs=[pb_utils.Tensor(name, value.reshape(-1, 1) if name in self.per_item else value)
                    for name, value in feed.items()])
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"the {self.model_name} model failed: {response.error().message()}")
        outputs = [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in output_names]
        return [value.reshape(-1) if name in self.per_item else value for name, value in zip(output_names, outputs)]


class TritonPythonModel:
    """The ``framestamp`` model: the protocol's requests in, the protocol's responses out."""

    def initialize(self, args: dict) -> None:
        from framestamp.protocol import INPUTS
        from framestamp.runtime.artifact import GraphSessions
        from framestamp.runtime.locator import Locator

        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"] / "artifact"
        # The artifact's facts (features, prompts, head, limits) and its tokenizer; its graphs are only
        # opened here to check them: every forward pass goes to the encoder and decoder models.
        self.locator = Locator(folder, threads=1, batch_size=max(1, int(config.get("max_batch_size", 1))),
                               decoding=parameters.get("decoding", "ordered"))
        graphs = self.locator.graphs
        self.locator.graphs = GraphSessions(graphs.folder, graphs.manifest,
                                            TritonSession(parameters["encoder_model"], graphs.encoder),
                                            TritonSession(parameters["decoder_model"], graphs.decoder))
        self.input_names = [tensor.name for tensor in INPUTS]

    def execute(self, requests) -> list:
        import triton_python_backend_utils as pb_utils

        from framestamp.answers import answer_each
        from framestamp.protocol import answer_tensors, read_request
        from framestamp.runtime.errors import InputError
        from framestamp.serve import _scratch_root, _without_paths

        scratch = Path(tempfile.mkdtemp(prefix="framestamp-triton-", dir=_scratch_root()))
        try:
            queries = []
            for request in requests:
                present = {name: pb_utils.get_input_tensor_by_name(request, name) for name in self.input_names}
                try:
                    queries.append(read_request({name: tensor.as_numpy() for name, tensor in present.items()
                                                 if tensor is not None}, scratch))
                except InputError as error:
                    queries.append(error)
            answers = answer_each(self.locator, queries)
            return [pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, array) for name, array in answer_tensors(_without_paths(answer, scratch)).items()])
                for answer in answers]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
