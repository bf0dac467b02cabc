"""The torch-free runtime on the shipped model's ONNX artifact: the same timestamps as PyTorch, the same
prompt ids as training, a readable error for each bad input, thread safety, formats, and no torch."""

import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

import framestamp
from framestamp.cli import main
from framestamp.data.manifest import Example, read_manifest
from framestamp.runtime import InputError, Locator, Query, ordered_map, paced_map, posterior_mode, subframe_times
from framestamp.runtime.formats import render

SHIPPED = Path(framestamp.__file__).parent / "models"
CHECKPOINT, ARTIFACT = SHIPPED / "omni-tiny-synth", SHIPPED / "omni-tiny-synth-onnx"
RATE = 16_000


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Fresh clips of all three tasks in voices the shipped model never heard."""
    folder = tmp_path_factory.mktemp("clips")
    assert main(["synth", str(folder), "--count", "2", "--seed", "21", "--voices", "en-029,en-us-nyc"]) == 0
    return folder, read_manifest(folder / "manifest.jsonl")


@pytest.fixture(scope="module")
def locator():
    return Locator(ARTIFACT, threads=1)


def query_for(example: Example, folder: Path) -> Query:
    return Query(str(folder / example.audio), example.task, dict(example.prompt), count=len(example.times))


def test_timestamps_equal_pytorchs_on_the_shipped_model(clips, locator):
    import torch

    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import AudioCache
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import answer_examples, trained_words

    folder, examples = clips
    chosen = [e for task in ("word", "speaker", "event", "transcript") for e in examples if e.task == task][::3]
    assert {e.task for e in chosen} == {"word", "speaker", "event", "transcript"}
    model, description = load_checkpoint(CHECKPOINT)
    features = AudioCache(folder, FeatureSettings.from_json(description["features"]))
    with torch.no_grad():  # transcripts timed by their words, a k-th occurrence with 1..k-1: as the runtime answers
        expected = [times for times, _ in answer_examples(model, chosen, features, 4, "poisson", progress=False,
                                                          vocabulary=trained_words(description))]
    found = locator.run([query_for(e, folder) for e in chosen])
    for example, theirs, ours in zip(chosen, expected, found):
        assert ours.question == example.question
        assert len(ours.times) == len(example.times)
        assert np.abs(np.asarray(ours.times) - theirs).max() < 1e-3, example.id


def test_chained_occurrences_equal_pytorchs_and_the_links_asked_by_hand(clips, locator):
    """Past chain_seconds a k-th occurrence is a chain of first occurrences (runtime/chain.py): the Locator's
    answers equal evaluate's (PyTorch) and those of first-occurrence questions asked of the cut audio by hand."""
    import torch

    from framestamp.runtime.audio import load_audio
    from framestamp.runtime.chain import link_start
    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import AudioCache
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import answer_examples, trained_words

    folder, examples = clips
    chosen = [e for e in examples if e.task in ("word", "event") and e.prompt["occurrence"] >= 2]
    assert {e.task for e in chosen} == {"word", "event"}
    chained = Locator(ARTIFACT, threads=1, chain_seconds=0.5)  # every k-th past half a second is chained
    model, description = load_checkpoint(CHECKPOINT)
    features = AudioCache(folder, FeatureSettings.from_json(description["features"]))
    with torch.no_grad():
        expected = answer_examples(model, chosen, features, 4, "poisson", progress=False,
                                   vocabulary=trained_words(description), chain_seconds=0.5)
    found = chained.run([query_for(e, folder) for e in chosen])
    for example, (times, ends), ours in zip(chosen, expected, found):
        assert np.abs(np.asarray(ours.times) - times).max() < 1e-3, example.id
        assert np.abs(np.asarray(ours.ends) - ends).max() < 1e-3, example.id
    moved = 0
    for example, ours in zip(chosen, found):  # by hand: the 1st as asked, then the first after each one's end
        samples = load_audio(folder / example.audio)
        name = example.prompt.get("word") or example.prompt.get("event")
        ask = locator.word if example.task == "word" else locator.event
        answer, offset = ask(samples, name, 1, rate=16000), 0.0
        for _ in range(example.prompt["occurrence"] - 1):
            offset = link_start(answer.times[0] + offset, answer.ends[0] + offset)
            answer = ask(samples[int(round(offset * 16000)):], name, 1, rate=16000)
        assert ours.times[0] == pytest.approx(answer.times[0] + offset, abs=1e-6), example.id
        assert ours.ends[0] == pytest.approx(answer.ends[0] + offset, abs=1e-6)
        plain = locator.run([query_for(example, folder)])[0]
        moved += abs(plain.times[0] - ours.times[0]) > 0.04
    assert moved  # chaining changed some answers: the comparison above is not of the joint answers again


def test_each_method_asks_the_training_question_with_the_same_ids(clips, locator):
    from framestamp.training.tokenizer import load_tokenizer

    folder, examples = clips
    training_tokenizer = load_tokenizer(CHECKPOINT / "tokenizer.json")
    audio = str(folder / examples[0].audio)
    asked = {
        "word": locator.word(audio, "doctor", 2),
        "speaker": locator.speaker(audio, 3),
        "event": locator.event(audio, "Dog", 1),
        "transcript": locator.transcript(audio, "the doctor  came late"),
    }
    prompts = {"word": {"word": "doctor", "occurrence": 2}, "speaker": {"occurrence": 3},
               "event": {"event": "Dog", "occurrence": 1}, "transcript": {"transcript": "the doctor came late"}}
    for task, result in asked.items():
        times = (0.1,) * len(prompts[task].get("transcript", "one").split())  # a transcript has a time per word
        question = Example(id="q", task=task, prompt=prompts[task], times=times, duration=1.0, audio="x").question
        assert result.question == question
        assert locator.tokenizer.encode(question).ids == training_tokenizer.encode(question).ids
    assert asked["transcript"].words == ("the", "doctor", "came", "late") and len(asked["transcript"].times) == 4


def write(path: Path, samples: np.ndarray, rate: int = RATE) -> str:
    soundfile.write(path, samples, rate)
    return str(path)


@pytest.fixture(scope="module")
def speech(clips):
    folder, examples = clips
    samples, rate = soundfile.read(folder / examples[0].audio, dtype="float32")
    assert rate == RATE
    return samples


def test_bad_inputs_each_get_a_specific_error(locator, speech, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cases = [
        (lambda: locator.word(str(tmp_path / "missing.wav"), "cook"), "no such audio file"),
        (lambda: locator.word(str(corrupt), "cook"), "cannot be read as audio"),
        (lambda: locator.word(str(empty), "cook"), "cannot be read as audio"),
        (lambda: locator.word(write(tmp_path / "silent.wav", np.zeros(RATE, np.float32)), "cook"), "silent"),
        (lambda: locator.word(np.full(RATE, np.nan, np.float32), "cook", rate=RATE), "NaN or infinite"),
        (lambda: locator.word(np.zeros(0, np.float32), "cook", rate=RATE), "no samples"),
        (lambda: locator.word(speech, "cook"), "needs its sample rate"),
        (lambda: locator.word(speech, "cook", rate=1_000), "sample rate 1000 is not supported"),
        (lambda: locator.word(speech.reshape(1, -1, 1), "cook", rate=RATE), "expected a 1-D"),
        (lambda: locator.word(speech[:200], "cook", rate=RATE), "too short"),
        (lambda: locator.word(speech, "cook", transcript="the doctor came", rate=RATE), "not in the transcript"),
        (lambda: locator.word(speech, "the", 3, transcript="the doctor saw the cook", rate=RATE),
         "occurs 2 time(s) in the transcript; cannot ask for the 3rd"),
        (lambda: locator.event(speech, "Elephant", rate=RATE), "not trained on the event 'Elephant'"),
        (lambda: locator.word(speech, "cook", 0, rate=RATE), "occurrence"),
    ]
    for call, message in cases:
        with pytest.raises(InputError) as error:
            call()
        assert message in str(error.value)


def test_limits_say_what_to_change(speech):
    short = Locator(ARTIFACT, max_seconds=1.0, max_prompt_tokens=8)
    with pytest.raises(InputError, match=r"longer than the 1 s this model takes"):
        short.word(speech, "cook", rate=RATE)
    with pytest.raises(InputError, match=r"more than the 8 allowed"):
        short.transcript(speech[:RATE // 2], "the doctor came late to see the cook", rate=RATE)
    # An engine's profile names the rebuild flag.
    short.engine_limits = True
    with pytest.raises(InputError, match=r"framestamp build-engine --max-seconds 3"):
        short.word(speech[: int(2.5 * RATE)], "cook", rate=RATE)


def test_concurrent_callers_get_the_serial_results(clips, locator):
    folder, examples = clips
    queries = [query_for(e, folder) for e in examples[:16]]
    serial = [tuple(locator.run([q])[0].times) for q in queries]
    found: dict[tuple[int, int], tuple] = {}
    errors = []

    def caller(thread: int):
        try:
            for round_ in range(3):
                for index in range(thread, thread + len(queries), 3):
                    found[(thread, round_, index % len(queries))] = tuple(locator.run([queries[index % len(queries)]])[0].times)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert len(found) == 8 * 3 * len(range(0, len(queries), 3))
    for (_, _, index), times in found.items():
        assert times == serial[index]


def test_batched_answers_equal_one_by_one(clips, locator):
    folder, examples = clips
    queries = [query_for(e, folder) for e in examples[::5]]
    batched = locator.run(queries)
    for query, result in zip(queries, batched):
        assert np.allclose(result.times, locator.run([query])[0].times, atol=1e-3)


def test_questions_about_one_clip_encode_it_once(clips):
    """Every question about a file, and a k-th occurrence's count check, share one encoder row; the answers
    are the ones each question gets asked alone."""
    folder, examples = clips
    words = [e for e in examples if e.task == "word"]
    first = words[0]
    same_clip = [e for e in examples if e.audio == first.audio]
    other = next(e for e in examples if e.audio != first.audio)
    queries = [query_for(e, folder) for e in same_clip[:5]] + [query_for(other, folder)]
    queries.append(Query(str(folder / first.audio), "word", {"word": first.prompt["word"], "occurrence": 3}))
    locator = Locator(ARTIFACT, threads=1, batch_size=16)  # every question in one pass
    encoded, encode = [], locator.graphs.encode
    locator.graphs.encode = lambda mel, lengths: (encoded.append(len(mel)), encode(mel, lengths))[1]
    batched = locator.run(queries)
    assert len(queries) == 7 and encoded == [2]  # two distinct files: one row each, for len(queries) + 2 decoder rows
    for query, result in zip(queries, batched):
        encoded.clear()
        alone = locator.run([query])[0]
        assert sum(encoded) == 1
        assert result.times == pytest.approx(alone.times, abs=1e-6)
        assert result.confidence == pytest.approx(alone.confidence, abs=1e-6)


def test_word_and_transcript_ends_equal_pytorchs_and_close_each_interval(clips, locator):
    import torch

    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import AudioCache, collate
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import earlier_occurrence_rows, predict_intervals

    folder, examples = clips
    assert {"word", "transcript"} <= set(locator.ended_tasks), "the shipped model answers intervals"
    chosen = [e for e in examples if e.task in ("word", "transcript")][:8] + [next(e for e in examples if e.task == "speaker")]
    chosen += [e for e in examples if e.task == "event"][:2]
    assert any(e.prompt.get("occurrence", 1) > 1 for e in chosen)  # a k-th occurrence: decoded after the earlier ones
    model, description = load_checkpoint(CHECKPOINT)
    features = AudioCache(folder, FeatureSettings.from_json(description["features"]))
    batch = collate(chosen, features, model.prompt_ids, model.pad_id)
    with torch.no_grad():
        # As the runtime answers a k-th occurrence: jointly with occurrences 1..k-1 asked of the same clip.
        earlier = earlier_occurrence_rows(model.eval(), chosen, features, 8, "cpu")
        _, expected = predict_intervals(model, batch, "poisson",
                                        earlier=[[rows[:, 0] for rows in earlier.get(id(e), [])] for e in chosen])
    for example, theirs, ours in zip(chosen, expected, locator.run([query_for(e, folder) for e in chosen])):
        if example.task not in locator.ended_tasks:
            assert ours.ends == () and theirs is None  # no ends where no channel was trained for them
            continue
        assert np.abs(np.asarray(ours.ends) - theirs).max() < 1e-3, example.id
        assert all(start < end for start, end in zip(ours.times, ours.ends))
        if example.task == "transcript":
            assert all(end <= later + 1e-9 for end, later in zip(ours.ends, ours.times[1:]))
            assert [entry["end"] for entry in ours.as_dict()["words"]] == [round(e, 3) for e in ours.ends]


def test_formats_read_back(clips, locator, tmp_path):
    from framestamp.data.librispeech import read_textgrid_words

    folder, examples = clips
    example = next(e for e in examples if e.task == "transcript")
    result = locator.run([query_for(example, folder)])[0]
    grid = tmp_path / "words.TextGrid"
    grid.write_text(render(result, "textgrid"))
    words, _ = read_textgrid_words(grid)
    # One interval per distinct start; words the model put on the same frame share it.
    distinct = sorted(set(result.times))
    assert " ".join(w for w, _, _ in words) == " ".join(result.words)
    assert np.allclose([start for _, start, _ in words], distinct)
    assert all(start < end for _, start, end in words)
    srt = render(result, "srt").strip().split("\n\n")
    assert len(srt) == len(distinct) and srt[0].splitlines()[2].split()[0] == result.words[0]
    assert render(result, "vtt").startswith("WEBVTT")
    assert json.loads(render(result, "json"))["times"] == [round(t, 3) for t in result.times]


def test_transcript_questions_decode_jointly_unless_asked_for_the_posterior_mode(clips, capsys):
    folder, examples = clips
    example = next(e for e in examples if e.task == "transcript" and len(e.times) > 2)
    query = replace(query_for(example, folder), with_intensity=True)
    joint = Locator(ARTIFACT, threads=1, transcript_by="question").run([query])[0]
    log_intensity = joint.log_intensity.astype(np.float64)
    chosen = ordered_map(log_intensity, len(example.times))
    np.testing.assert_allclose(joint.times, subframe_times(log_intensity, chosen), atol=1e-7)  # placed in their frames
    assert (np.diff(np.floor(np.array(joint.times) / joint.frame_seconds)) >= 2).all()  # distinct, two frames apart
    per_event = Locator(ARTIFACT, threads=1, decoding="posterior", transcript_by="question").run([query])[0]
    np.testing.assert_allclose(per_event.times, posterior_mode(log_intensity, len(example.times)), atol=1e-3)
    assert main(["locate", query.audio, "--transcript", example.prompt["transcript"], "--decoding", "posterior",
                 "--transcript-by", "question"]) == 0
    assert json.loads(capsys.readouterr().out)["times"] == [round(t, 3) for t in per_event.times]
    with pytest.raises(InputError, match="decoding must be one of ordered, posterior"):
        Locator(ARTIFACT, decoding="viterbi")
    with pytest.raises(InputError, match="transcript_by must be one of words, question"):
        Locator(ARTIFACT, transcript_by="tokens")


def test_transcripts_timed_by_their_words_align_each_words_own_track(clips, locator, capsys):
    folder, examples = clips
    example = max((e for e in examples if e.task == "transcript"), key=lambda e: len(e.times))
    words = example.prompt["transcript"].split()
    assert len(set(words)) < len(words)  # a word said twice: its second question asks for the 2nd occurrence
    audio = str(folder / example.audio)
    joint = locator.transcript(audio, example.prompt["transcript"])
    seen = {}
    tracks = []
    for word in words:  # each word asked on its own, the k-th time the transcript says it
        seen[word] = seen.get(word, 0) + 1
        alone = locator.run([Query(audio, "word", {"word": word, "occurrence": seen[word]}, with_intensity=True)])[0]
        tracks.append(alone.log_intensity.astype(np.float64))
    tracks = np.stack(tracks)
    np.testing.assert_allclose(joint.times, subframe_times(tracks, paced_map(tracks, words)), atol=1e-6)  # paced
    assert (np.diff(np.floor(np.array(joint.times) / joint.frame_seconds)) >= 2).all()  # in order, two frames apart
    assert len(joint.ends) == len(words) and all(end > start for start, end in zip(joint.times, joint.ends))
    per_word = Locator(ARTIFACT, threads=1, decoding="posterior").transcript(audio, example.prompt["transcript"])
    np.testing.assert_allclose(per_word.times, (tracks.argmax(axis=1) + 0.5) * joint.frame_seconds, atol=1e-6)
    # the k-th time the transcript says a word, asked with that transcript: the aligned transcript's answer
    twice = next(word for word in words if words.count(word) > 1)
    second = [i for i, word in enumerate(words) if word == twice][1]
    answer = locator.word(audio, twice, 2, transcript=example.prompt["transcript"])
    assert answer.times == joint.times[second:second + 1] and answer.task == "word"
    assert main(["locate", audio, "--word", twice, "--occurrence", "2", "--transcript", example.prompt["transcript"]]) == 0
    assert json.loads(capsys.readouterr().out)["times"] == [round(joint.times[second], 3)]


def test_words_on_one_frame_share_an_interval():
    from framestamp.runtime.formats import intervals

    spans = intervals(["a", "b", "c", "d"], [0.2, 0.2, 0.52, 0.52], duration=0.7)
    assert spans == [("a b", 0.2, 0.52), ("c d", 0.52, 0.7)]
    assert intervals(["x"], [1.0], duration=1.0) == [("x", 1.0, 1.001)]  # never zero length, even at the end


def test_locate_command_and_plot(clips, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (framestamp[plot])")
    folder, examples = clips
    example = next(e for e in examples if e.task == "word")
    png = tmp_path / "plot.png"
    assert main(["locate", str(folder / example.audio), "--word", example.prompt["word"],
                 "--occurrence", str(example.prompt["occurrence"]), "--plot", str(png)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "word" and len(printed["times"]) == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BLOCK_TORCH = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked in this test", name=name)
sys.meta_path.insert(0, Blocked())
from framestamp.cli import main
status = main(sys.argv[1:])
assert not any(m.split(".")[0] in ("torch", "transformers") for m in sys.modules), "torch was imported"
sys.exit(status)
"""


def test_locate_runs_where_torch_and_transformers_cannot_be_imported(clips):
    folder, examples = clips
    example = next(e for e in examples if e.task == "speaker")
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "locate", str(folder / example.audio), "--speaker", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["task"] == "speaker"
    refused = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "train", "out"], capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and "needs torch" in refused.stderr


@pytest.mark.espeak
def test_the_readme_embedding_example_runs_as_written(tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("```bash\n", readme.index("## Embedding the runtime"))
    shell = readme[start + len("```bash\n"): readme.index("```", start + 8)].split("#")[0]
    start = readme.index("```python\n", start)
    snippet = readme[start + len("```python\n"): readme.index("```", start + 10)]
    monkeypatch.chdir(tmp_path)  # any folder: the example makes its clip and finds the shipped model by name
    subprocess.run(shell, shell=True, check=True, timeout=60)
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert len(namespace["hit"].times) == 1 and len(namespace["batch"]) == 2 and len(namespace["onset"].times) == 1
    assert len(capsys.readouterr().out.splitlines()) == 8  # one line per word of the transcript (8 words)


def test_the_runtime_extra_pulls_nothing_heavier():
    import tomllib

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    names = {requirement.split(">")[0].split("=")[0].split("[")[0].strip()
             for requirement in project["dependencies"] + project["optional-dependencies"]["runtime"]}
    assert names == {"numpy", "onnxruntime", "tokenizers", "soundfile", "soxr"}


def test_a_transcript_word_the_model_never_heard_mixes_its_own_and_the_transcript_questions_track(clips):
    """A word outside the training vocabulary is asked as its own word question too, and its row is the mean
    of that track and the transcript question's own track; the other words' rows are their own questions'
    tracks; all aligned in order."""
    folder, examples = clips
    example = max((e for e in examples if e.task == "transcript"), key=lambda e: len(e.times))
    words, text = example.prompt["transcript"].split(), example.prompt["transcript"]
    audio = str(folder / example.audio)
    unheard = words[len(words) // 2]
    partly = Locator(ARTIFACT, threads=1)
    partly.vocabulary = frozenset(words) - {unheard}
    answer = partly.transcript(audio, text)
    whole = Locator(ARTIFACT, threads=1, transcript_by="question").run(
        [Query(audio, "transcript", {"transcript": text}, with_intensity=True)])[0].log_intensity.astype(np.float64)
    seen, rows, own = {}, [], []
    for word in words:
        seen[word] = seen.get(word, 0) + 1
        alone = partly.run([Query(audio, "word", {"word": word, "occurrence": seen[word]}, with_intensity=True)])[0]
        own.append(alone.log_intensity.astype(np.float64))
        rows.append((own[-1] + whole) / 2 if word == unheard else own[-1])
    rows = np.stack(rows)
    np.testing.assert_allclose(answer.times, subframe_times(rows, paced_map(rows, words)), atol=1e-6)  # paced
    assert any(repr(unheard) in warning for warning in answer.warnings)  # and it says the word is unknown
    unpaced = Locator(ARTIFACT, threads=1, pace=0)
    unpaced.vocabulary = partly.vocabulary
    unpaced_times = subframe_times(rows, ordered_map(rows, len(words)))
    np.testing.assert_allclose(unpaced.transcript(audio, text).times, unpaced_times, atol=1e-6)
    nothing_known = Locator(ARTIFACT, threads=1)
    nothing_known.vocabulary = frozenset({"zzz"})
    mixed_rows = (np.stack(own) + whole) / 2
    mixed = subframe_times(mixed_rows, paced_map(mixed_rows, words))
    # the mixed rows tell the two ways apart on this clip
    assert not np.allclose(mixed, paced_map(np.stack([whole] * len(words)), words))
    np.testing.assert_allclose(nothing_known.transcript(audio, text).times, mixed, atol=1e-6)


@pytest.mark.parametrize("unheard", [False, True])
def test_evaluate_scores_a_transcript_as_its_words_asked_alone_and_aligned_in_order(clips, unheard):
    """Each word's question asked alone through single-example passes of the checkpoint (an independent
    computation), a word outside the vocabulary on the mean of its own and the transcript question's tracks,
    aligned by paced_map: what evaluate scores by default; --transcript-by question scores the
    transcript's own track, which answers differently here."""
    import torch

    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import AudioCache, collate
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import evaluate

    folder, examples = clips
    transcript = max((e for e in examples if e.task == "transcript"), key=lambda e: len(e.times))
    model, description = load_checkpoint(CHECKPOINT)
    features = AudioCache(folder, FeatureSettings.from_json(description["features"]))

    def track(example):
        with torch.no_grad():
            output = model.eval().run_batch(collate([example], features, model.prompt_ids, model.pad_id))
        return output.scores[0, output.frame_mask[0], 0].double().numpy()

    words = transcript.prompt["transcript"].split()
    vocabulary = sorted(set(words) - {words[1]}) if unheard else None
    own, seen, rows = track(transcript), {}, []
    for word in words:
        seen[word] = seen.get(word, 0) + 1
        known = vocabulary is None or word in vocabulary
        alone = track(replace(transcript, task="word", prompt={"word": word, "occurrence": seen[word]}, times=(0.0,),
                              ends=None))
        rows.append(alone if known else (alone + own) / 2)
    aligned = subframe_times(np.stack(rows), paced_map(np.stack(rows), words))
    scored = evaluate(model, [replace(transcript, times=tuple(aligned), ends=None)], features, progress=False, vocabulary=vocabulary)
    assert scored.tasks["transcript"].mad == pytest.approx(0, abs=1e-9)
    alone = subframe_times(own, ordered_map(own, len(words)))
    question = evaluate(model, [replace(transcript, times=tuple(alone), ends=None)], features, progress=False,
                        transcript_by="question")
    assert question.tasks["transcript"].mad == pytest.approx(0, abs=1e-9)
    assert not np.allclose(aligned, alone)  # the two ways answer differently here: the test tells them apart
    with pytest.raises(InputError, match="transcript_by must be one of"):
        evaluate(model, [transcript], features, progress=False, transcript_by="tokens")
