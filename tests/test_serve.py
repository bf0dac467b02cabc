"""`framestamp serve`: a real Triton server (PyTriton) on localhost answers over HTTP and gRPC exactly
as the Locator does, refuses bad requests one by one while it keeps serving, shows Triton's health and
metrics, and on SIGTERM answers the request in flight before it exits."""

import signal
import threading
import time
import urllib.request

import numpy as np
import pytest
import soundfile

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient")
if int(np.__version__.split(".")[0]) >= 2:
    pytest.skip("PyTriton 0.7 needs numpy < 2 (pip install 'framestamp[serve]' installs 1.26)", allow_module_level=True)

from framestamp.benchmarks.serve_load import running_server  # noqa: E402
from framestamp.cli import main  # noqa: E402
from framestamp.client import Client, RequestError  # noqa: E402
from framestamp.data.manifest import read_manifest  # noqa: E402
from framestamp.runtime import Locator, Query  # noqa: E402

pytestmark = pytest.mark.espeak


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    assert main(["synth", str(folder), "--count", "2", "--seed", "23", "--voices", "en-029,en-us-nyc"]) == 0
    examples = read_manifest(folder / "manifest.jsonl")
    chosen = [next(e for e in examples if e.task == task) for task in ("word", "speaker", "event", "transcript")]
    return folder, chosen


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module: 2 instances, batches of up to 8 gathered for 20 ms."""
    with running_server(tmp_path_factory.mktemp("server"), "--max-batch", "8", "--queue-delay-us", "20000",
                        "--instances", "2", "--threads", "1") as server:
        yield server


@pytest.fixture(scope="module")
def locator():
    return Locator("shipped", threads=1)


def question(example):
    text = example.prompt.get("word") or example.prompt.get("event") or example.prompt.get("transcript")
    occurrence = None if example.task in ("transcript",) else example.prompt["occurrence"]
    return text, occurrence


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answers_equal_the_locators_for_every_task(server, clips, locator, protocol):
    folder, chosen = clips
    with Client(f"127.0.0.1:{server[protocol]}", protocol=protocol) as client:
        check_answers(client, folder, chosen, locator)


def check_answers(client, folder, chosen, locator):
    for example in chosen:
        path = folder / example.audio
        text, occurrence = question(example)
        expected = locator.run([Query(str(path), example.task, dict(example.prompt))])[0]
        samples, rate = soundfile.read(path, dtype="float32")
        for audio, options in ((path, {}), (samples, {"rate": rate})):  # a file's bytes, and float PCM
            answer = client.ask(audio, example.task, text, occurrence, **options)
            assert np.allclose(answer.times, expected.times, atol=1e-5), example.id
            assert np.allclose(answer.confidence, expected.confidence, atol=1e-5), example.id
            assert np.allclose(answer.ends, expected.ends, atol=1e-5), example.id
            assert answer.warnings == expected.warnings, example.id
            assert answer.words == expected.words, example.id


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_bad_request_gets_its_reason_and_the_next_one_is_answered(server, clips, locator, protocol):
    folder, chosen = clips
    word = chosen[0]
    audio = (folder / word.audio).read_bytes()
    bad = {
        "cannot be read as audio": {"task": "word", "text": "the", "audio": b"RIFF but not a wav file"},
        "not trained on the event 'Unicorn'": {"task": "event", "text": "Unicorn", "audio": audio},
        "needs text": {"task": "word", "audio": audio},
        "has no task": {"text": "the", "audio": audio},
        "either audio": {"task": "speaker"},
        "needs its sample rate": {"task": "speaker", "pcm": np.ones(1600, np.float32) * 0.1},
    }
    expected = locator.run([Query(str(folder / word.audio), "word", dict(word.prompt))])[0]
    with Client(f"127.0.0.1:{server[protocol]}", protocol=protocol) as client:
        for reason, values in bad.items():
            with pytest.raises(RequestError, match=reason):
                client.send(values)
            answer = client.word(audio, word.prompt["word"], word.prompt["occurrence"])
            assert answer.times == pytest.approx(expected.times)


def test_bad_requests_do_not_spoil_the_good_ones_batched_with_them(server, clips, locator):
    """Many clients at once, every third request bad: the batches mix them, each gets its own answer."""
    folder, chosen = clips
    word = chosen[0]
    audio = (folder / word.audio).read_bytes()
    expected = locator.run([Query(str(folder / word.audio), "word", dict(word.prompt))])[0].times
    outcomes: list = [None] * 24

    def ask(index: int) -> None:
        with Client(f"127.0.0.1:{server['http']}") as client:
            try:
                if index % 3 == 0:
                    client.send({"task": "word", "text": "the", "audio": b"not audio at all"})
                    outcomes[index] = "answered"
                else:
                    outcomes[index] = client.word(audio, word.prompt["word"], word.prompt["occurrence"]).times
            except RequestError as error:
                outcomes[index] = error

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(len(outcomes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, outcome in enumerate(outcomes):
        if index % 3 == 0:
            assert isinstance(outcome, RequestError) and "cannot be read as audio" in str(outcome)
        else:
            assert outcome == pytest.approx(expected)


def test_health_readiness_and_metrics(server):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/framestamp/ready"):
        with urllib.request.urlopen(f"http://127.0.0.1:{server['http']}{path}", timeout=10) as response:
            assert response.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{server['metrics']}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    successes = [line for line in metrics.splitlines()
                 if line.startswith("nv_inference_request_success") and 'model="framestamp"' in line]
    assert successes and float(successes[0].split()[-1]) > 0


def test_sigterm_answers_the_request_in_flight_then_exits(tmp_path, clips, locator):
    """A server whose batcher holds a lone request for 1.5 s: SIGTERM while it waits there."""
    folder, chosen = clips
    word = chosen[0]
    expected = locator.run([Query(str(folder / word.audio), "word", dict(word.prompt))])[0].times
    with running_server(tmp_path, "--max-batch", "4", "--queue-delay-us", "1500000", "--instances", "1",
                        "--threads", "1") as server:
        answers: list = []

        def ask() -> None:
            with Client(f"127.0.0.1:{server['http']}") as client:
                answers.append(client.word(folder / word.audio, word.prompt["word"], word.prompt["occurrence"]).times)

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(0.5)
        assert not answers  # still in the batcher's queue
        server["process"].send_signal(signal.SIGTERM)
        asking.join(timeout=60)
        assert answers and answers[0] == pytest.approx(expected)
        assert server["process"].wait(timeout=60) == 0
        log = server["log"].read_text()
        assert "framestamp serve: stopped" in log and "Exit timeout expired" not in log
