"""Speech engines (espeak-ng, flite, Festival, Piper) and acoustic conditions for word clips.

Every check on audio computes energy from the samples alone (never from the engines' own timing) and
compares it with the labels.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framestamp.data import conditions, engines, espeak, festival, flite, piper, synth
from framestamp.runtime.audio import load_audio
from framestamp.runtime.errors import InputError

SAMPLE_RATE = 16_000


def needs(spec):
    """pytest.param for a voice, skipped with the install command when its engine is missing here."""
    engine, name = engines.split_spec(spec)
    if engine == "espeak":
        ok, reason = espeak.available(), "needs libespeak-ng (apt-get install espeak-ng)"
    elif engine == "flite":
        ok, reason = flite.available(), "needs flite (apt-get install flite)"
    elif engine == "piper":
        ok, reason = piper.available(name), f"needs piper's {name}: {piper.INSTALL_HINT}"
    else:
        ok, reason = festival.available(name), f"needs festival's {name} (apt-get install festival {festival.VOICES[name].package})"
    return pytest.param(spec, marks=[pytest.mark.skipif(not ok, reason=reason), getattr(pytest.mark, engine)], id=spec)


VOICES = [needs(spec) for spec in ("en-us", "flite:slt", "flite:rms", "flite:awb", "flite:kal16", "flite:kal",
                                   "festival:kal", "festival:ked", "festival:slt", "piper:joe",
                                   "piper:joe-sampled")]
needs_flite = pytest.mark.skipif(not flite.available(), reason="needs flite (apt-get install flite)")
needs_espeak = pytest.mark.skipif(not espeak.available(), reason="needs libespeak-ng (apt-get install espeak-ng)")


def power_db(audio, window_samples):
    """Power (dB re the loudest window) of the ``window_samples`` samples ending at each sample."""
    audio = np.asarray(audio, np.float64)
    energy = np.concatenate([[0.0], np.cumsum(audio**2)])
    ends = np.arange(1, len(audio) + 1)
    power = (energy[ends] - energy[np.maximum(ends - window_samples, 0)]) / window_samples
    return 10 * np.log10(power / power.max() + 1e-20)


def samples(seconds):
    return int(round(seconds * SAMPLE_RATE))


# ---------------------------------------------------------------- naming voices


def test_voice_names_parse_with_plain_names_meaning_espeak():
    assert engines.split_spec("en-029") == ("espeak", "en-029")
    assert engines.split_spec("flite:slt") == ("flite", "slt")
    if espeak.available():
        assert engines.parse_voices(["espeak:en-us", "en-029"]) == ("en-us", "en-029")


def test_unknown_engine_or_voice_is_an_input_error_that_lists_the_choices():
    with pytest.raises(InputError, match="unknown speech engine 'sam'.*espeak, flite, festival"):
        engines.parse_voices(["sam:x"])
    with pytest.raises(InputError, match="flite has no voice 'bob'.*slt, rms, awb, kal16, kal"):
        engines.parse_voices(["flite:bob"])
    with pytest.raises(InputError, match="festival has no voice 'bob'.*kal, ked, slt"):
        engines.parse_voices(["festival:bob"])
    with pytest.raises(InputError, match="unknown voice.*en-mars"):
        engines.parse_voices(["en-mars"])
    with pytest.raises(InputError, match="no voices"):
        engines.parse_voices([" "])


def test_missing_engines_say_which_apt_get_command(monkeypatch):
    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(flite, "_library", None)
    monkeypatch.setattr(flite, "_voices", {})
    monkeypatch.setattr(flite.ctypes, "CDLL", no_library)
    with pytest.raises(InputError, match="apt-get install flite"):
        engines.parse_voices(["flite:slt"])

    monkeypatch.setattr(festival.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="apt-get install festival"):
        engines.parse_voices(["festival:kal"])
    monkeypatch.undo()
    if shutil_has_festival():
        monkeypatch.setattr(festival, "installed_voices", lambda: frozenset())
        with pytest.raises(InputError, match="apt-get install festvox-kdlpc16k"):
            engines.parse_voices(["festival:ked"])


def shutil_has_festival():
    import shutil

    return shutil.which("festival") is not None


def test_speakers_task_says_it_needs_an_espeak_voice():
    from framestamp.data.synth_speakers import speaker_voices

    with pytest.raises(InputError, match="speakers task mixes espeak-ng voices"):
        speaker_voices(["flite:slt", "festival:kal"])


# ---------------------------------------------------------------- word times against the audio


@pytest.mark.parametrize("spec", VOICES)
def test_word_times_are_ordered_with_energy_at_each_start_and_silence_between_phrases(spec):
    from framestamp.data.synth_words import speak_words

    gaps = 0
    for seed in range(3):
        clip = speak_words(seed, min_seconds=4.0, max_seconds=8.0, voices=[spec])
        assert clip.voice.spec == spec and 4.0 <= clip.duration <= 8.0 and len(clip.words) >= 2
        level = power_db(clip.audio, samples(0.005))
        for word, following in zip(clip.words, clip.words[1:] + (None,)):
            assert 0 <= word.start < word.end <= (following.start if following else clip.duration), (seed, word)
            # Speech within 150 ms of the start (a stop's closure comes first in flite and Festival) ...
            assert level[samples(word.start):samples(word.start + 0.15)].max() > -45, (seed, word)
            # ... and from the very start for a word after a pause, with silence before it.
            if following is not None and following.start - word.end >= 0.1:
                gaps += 1
                inside = clip.audio[samples(word.end + 0.005):samples(following.start - 0.005)]
                assert np.max(np.abs(inside)) <= 2 / 32768, (seed, word, following)  # digital silence (+-1 LSB)
                assert level[samples(following.start):samples(following.start + 0.15)].max() > -45
    assert gaps >= 1


@pytest.mark.parametrize("spec", VOICES)
def test_same_seed_same_bytes_and_same_phrase_same_samples(spec):
    from framestamp.data.synth_words import speak_words

    first, second = (speak_words(7, min_seconds=2.0, max_seconds=5.0, voices=[spec]) for _ in range(2))
    assert np.array_equal(first.pcm, second.pcm) and first.words == second.words and first.phones == second.phones
    voice = first.voice
    if voice.engine == "espeak":
        return  # espeak-ng keeps state between calls (a forked child per clip repeats it, as checked above)

    def twice():
        with engines.session():
            return [engines.synthesize("the house by the river", voice) for _ in range(2)]

    once, again = espeak.isolated(twice)
    assert np.array_equal(once.samples, again.samples) and once.words == again.words


@needs_flite
def test_flite_phrase_does_not_depend_on_what_the_process_said_before():
    voice = flite.FliteVoice("slt")
    alone = flite.synthesize("water and stone", voice)
    flite.synthesize("a different phrase first", flite.FliteVoice("awb", 1.1, 5.0))
    assert np.array_equal(flite.synthesize("water and stone", voice).samples, alone.samples)


@pytest.mark.festival
@pytest.mark.skipif(not festival.available(), reason="needs festival (apt-get install festival festvox-kallpc16k)")
def test_festival_phrase_does_not_depend_on_the_phrases_before_it_in_a_session():
    voice = festival.FestivalVoice("kal", 1.05)
    with festival.session():
        alone = festival.synthesize("water and stone", voice)
    with festival.session():
        festival.synthesize("a different phrase first", festival.FestivalVoice("kal", 0.9))
        after = festival.synthesize("water and stone", voice)
    assert np.array_equal(alone.samples, after.samples) and alone.words == after.words
    assert [word.text for word in alone.words] == ["water", "and", "stone"]


def test_piper_durations_time_words_from_their_lead_in_with_marks_on_their_phones():
    # "^ w ˈɔː , <space> s t ˈo n <space> ɪ z $", 100 samples a symbol at 1000 Hz; ː is a length mark. The sound
    # starts 70 samples into the start token and 60 into the space after the comma, and runs through the join.
    symbols = ["^", "w", "ˈ", "ɔ", "ː", ",", " ", "s", "t", "ˈ", "o", "n", " ", "ɪ", "z", "$"]
    audio = np.zeros(1600)
    audio[70:500] = audio[660:1500] = 0.5
    words, phones, pauses = piper._times(symbols, [100] * len(symbols), audio, 1000)
    assert words == [(70, 500), (660, 1200), (1200, 1500)]  # a joined word starts with the space before it
    assert [(p.name, round(p.start, 3), round(p.end, 3)) for p in phones] == [
        ("w", 0.07, 0.2), ("ˈɔː", 0.2, 0.5), ("s", 0.66, 0.8), ("t", 0.8, 0.9), ("ˈo", 0.9, 1.1), ("n", 1.1, 1.2),
        ("ɪ", 1.2, 1.4), ("z", 1.4, 1.5)]
    assert pauses == [(0, 100), (500, 600), (1500, 1600)]


@pytest.mark.piper
@pytest.mark.skipif(not piper.available(), reason=f"needs piper's joe: {piper.INSTALL_HINT}")
def test_piper_words_after_a_pause_start_where_their_energy_does():
    speech = piper.synthesize("water, stone, budget, river, captain", piper.PiperVoice("joe", 1.0), keep_pauses=True)
    assert [word.text for word in speech.words] == ["water,", "stone,", "budget,", "river,", "captain"]
    audio = speech.samples.astype(np.float64) / 32768
    level = power_db(audio, speech.rate // 200)
    for before, word in zip(speech.words, speech.words[1:]):
        pause = level[int((before.end + 0.02) * speech.rate):int((word.start - 0.06) * speech.rate)]
        assert pause.max() < -40, word  # the comma is a pause ...
        loud = np.flatnonzero(level[int((word.start - 0.1) * speech.rate):] > -40)[0] / speech.rate + word.start - 0.1
        assert 0 <= loud - word.start <= 0.02, (word, loud)  # ... and the word's sound starts at its time


@pytest.mark.piper
@pytest.mark.skipif(not piper.available(), reason=f"needs piper's joe: {piper.INSTALL_HINT}")
def test_piper_times_every_word_where_espeak_runs_two_into_one():
    loaded = piper._voice("joe")
    text = "now many of will many"
    assert len("".join(symbol for sentence in loaded.phonemize(text) for symbol in sentence).split()) == 4  # "many of" is one
    speech = piper.synthesize(text, piper.PiperVoice("joe"))
    assert [word.text for word in speech.words] == text.split()
    assert all(a.end <= b.start for a, b in zip(speech.words, speech.words[1:]))


@pytest.mark.piper
@pytest.mark.skipif(not piper.available(), reason=f"needs piper's joe: {piper.INSTALL_HINT}")
def test_piper_noise_comes_from_seeded_inputs_and_off_it_is_piper_own_speech():
    import importlib

    import onnx
    import onnxruntime
    from piper import PiperVoice as Loaded
    from piper import SynthesisConfig
    from piper.patch_voice_with_alignment import add_alignment_output

    loaded = piper._voice("joe")
    assert piper._voice("joe-sampled") is loaded  # one model, two ways of running it
    text = "the kitchen budget was many of them"
    # Independently: piper's own synthesis (its graph draws the noise, here scaled to zero).
    package = importlib.import_module(piper.VOICES["joe"][0])
    model = onnx.load(str(package.model_path()))
    add_alignment_output(model)
    reference = Loaded(config=loaded.config, session=onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]))
    symbols = [piper.BOS] + piper.phonemes(loaded, text) + [piper.EOS]
    ids = [i for n, s in enumerate(symbols) for i in list(loaded.config.phoneme_id_map[s])
           + (list(loaded.config.phoneme_id_map[piper.PAD]) if n < len(symbols) - 1 else [])]
    audio, id_samples = reference.phoneme_ids_to_audio(
        ids, SynthesisConfig(length_scale=loaded.config.length_scale * 0.9, noise_scale=0.0, noise_w_scale=0.0),
        include_alignments=True)
    plain = piper.synthesize(text, piper.PiperVoice("joe", 0.9), keep_pauses=True)
    assert len(plain.samples) == len(audio) == id_samples.sum()
    expected = np.clip(audio / np.abs(audio).max() * 32767, -32767, 32767).astype(np.int16)
    assert np.array_equal(plain.samples, expected)

    first = piper.synthesize(text, piper.PiperVoice("joe-sampled", 0.9, noise_seed=1))
    again = piper.synthesize(text, piper.PiperVoice("joe-sampled", 0.9, noise_seed=1))
    other = piper.synthesize(text, piper.PiperVoice("joe-sampled", 0.9, noise_seed=2))
    assert np.array_equal(first.samples, again.samples) and first.words == again.words  # the seed decides
    assert [w.text for w in other.words] == text.split()
    assert [w.start for w in first.words] != [w.start for w in other.words]  # the noise moves durations
    assert len({len(first.samples), len(other.samples), len(plain.samples)}) == 3


def test_piper_sampled_voices_draw_a_noise_seed_after_the_stretch():
    rng = np.random.default_rng(5)
    joe = piper.random_voice(rng, "joe")
    sampled = piper.random_voice(rng, "joe-sampled")
    replay = np.random.default_rng(5)
    assert joe.stretch == round(float(replay.uniform(*piper.STRETCH)), 3) and joe.noise_seed is None
    assert sampled.stretch == round(float(replay.uniform(*piper.STRETCH)), 3)
    assert sampled.noise_seed == int(replay.integers(2**31))  # joe's draws are what they were before noise existed


def test_tokens_the_engine_said_nothing_for_are_left_out_and_a_miscount_is_an_error():
    words = engines.words_of_tokens("the hmm cat", [(0.1, 0.2), (0.2, 0.2), (0.2, 0.5)], "test")
    assert [(w.text, w.start, w.end) for w in words] == [("the", 0.1, 0.2), ("cat", 0.2, 0.5)]
    with pytest.raises(RuntimeError, match="2 token"):
        engines.words_of_tokens("the hmm cat", [(0.1, 0.2), (0.2, 0.5)], "test")


def test_samples_outside_words_become_silence():
    speech = espeak.Speech(samples=np.full(100, 1000, np.int16), rate=100,
                           words=(espeak.Word("a", 0.1, 0.3, True), espeak.Word("b", 0.5, 0.8, True)), phones=())
    quiet = engines.silence_outside_words(speech).samples
    assert np.flatnonzero(quiet).tolist() == list(range(10, 30)) + list(range(50, 80))


# ---------------------------------------------------------------- noise and reverberation


def test_colored_noise_has_the_spectral_slope_of_its_kind():
    rng = np.random.default_rng(0)
    for kind, exponent in conditions.SPECTRAL_EXPONENTS.items():
        noise = conditions.colored_noise(rng, 1 << 16, kind)
        assert abs(np.sqrt(np.mean(noise**2)) - 1) < 1e-9
        power = np.abs(np.fft.rfft(noise)) ** 2
        bins = np.arange(16, len(power) // 2)
        slope = np.polyfit(np.log(bins), np.log(power[bins]), 1)[0]
        assert abs(slope + exponent) < 0.1, (kind, slope)


@pytest.mark.parametrize("kind", ["white", "pink", "brown", pytest.param("babble", marks=needs_espeak)])
@pytest.mark.parametrize("spec", [needs("en-us"), needs("flite:slt")])
def test_noise_is_at_the_requested_snr_measured_back(spec, kind):
    from framestamp.data.synth_words import speak_words

    for snr in (0.0, 12.0):
        clean = speak_words(3, min_seconds=3.0, max_seconds=5.0, voices=[spec])
        noisy = speak_words(3, min_seconds=3.0, max_seconds=5.0, voices=[spec], noise_snr=(snr, snr), noise_kinds=[kind])
        assert noisy.words == clean.words and noisy.conditions == {"noise": {"kind": kind, "snr_db": snr}}
        # noisy = gain * clean + noise, each scaled to its own peak: find the gain, then the noise.
        dry, wet = clean.audio.astype(np.float64), noisy.audio.astype(np.float64)
        gain = np.dot(wet, dry) / np.dot(dry, dry)
        noise = wet - gain * dry
        inside = np.zeros(len(dry), bool)
        for word in clean.words:
            inside[samples(word.start):samples(word.end)] = True
        measured = 10 * np.log10(np.mean((gain * dry[inside]) ** 2) / np.mean(noise**2))
        assert abs(measured - snr) <= 1.0, (kind, snr, measured)


def test_room_response_has_its_direct_path_rt60_and_drr():
    rng = np.random.default_rng(1)
    for rt60, drr_db in ((0.2, 0.0), (0.8, 10.0)):
        response = conditions.impulse_response(rng, SAMPLE_RATE, rt60, drr_db)
        assert response[0] == 1.0 and np.argmax(np.abs(response)) == 0
        tail = response[1:]
        assert abs(10 * np.log10(1.0 / np.sum(tail**2)) - drr_db) < 1e-6
        # Schroeder backward integration: the tail's energy decay, fitted between -5 and -25 dB, times 3.
        decay = 10 * np.log10(np.cumsum(tail[::-1] ** 2)[::-1] / np.sum(tail**2))
        fit = (decay <= -5) & (decay >= -25)
        slope = np.polyfit(np.flatnonzero(fit) / SAMPLE_RATE, decay[fit], 1)[0]
        assert abs(-60 / slope - rt60) / rt60 < 0.1, (rt60, -60 / slope)


@pytest.mark.parametrize("spec", [needs("en-us"), needs("flite:rms")])
def test_reverberation_keeps_every_word_where_it_starts(spec):
    from framestamp.data.synth_words import speak_words

    dry = speak_words(5, min_seconds=3.0, max_seconds=6.0, voices=[spec])
    wet = speak_words(5, min_seconds=3.0, max_seconds=6.0, voices=[spec], reverb=1.0)
    assert wet.words == dry.words and set(wet.conditions) == {"reverb"}
    assert np.flatnonzero(wet.pcm)[0] == np.flatnonzero(dry.pcm)[0]  # the room adds nothing before the first sound
    dry_audio, wet_audio = dry.audio.astype(np.float64), wet.audio.astype(np.float64)
    checked = 0
    for before, word in zip((None,) + dry.words, dry.words):
        if before is not None and word.start - before.end < 0.15:
            continue  # inside a phrase the previous word's reverberation overlaps the onset
        # The direct path (gain 1, delay 0) brings the word in at its labelled start: energy rises there.
        start = samples(word.start)
        if np.mean(dry_audio[start:start + 160] ** 2) < 1e-7:
            continue  # a stop's closure: nothing to hear yet
        after, earlier = (np.mean(wet_audio[span] ** 2) for span in (slice(start, start + 320), slice(start - 320, start)))
        assert after > 4 * earlier, (word, after, earlier)
        checked += 1
    assert checked >= 1


# ---------------------------------------------------------------- vocabulary files


def test_vocabulary_file_takes_first_fields_of_letter_words_only(tmp_path):
    from framestamp.data.synth_words import read_vocabulary

    path = tmp_path / "words.txt"
    path.write_text(";;; cmudict-style comment\n# comment\nApple  AE1 P AH0 L\napple(2)  AE1 P L\n\nrock-n-roll\n"
                    "co2\ncafé\nriver\nstone\napple\n", encoding="utf-8")
    assert read_vocabulary(path) == ("apple", "river", "stone")
    (tmp_path / "one.txt").write_text("solo\n")
    with pytest.raises(InputError, match="1 usable word"):
        read_vocabulary(tmp_path / "one.txt")
    with pytest.raises(InputError, match="cannot read"):
        read_vocabulary(tmp_path / "missing.txt")


def test_shipped_word_lists_keep_the_held_out_words_out_of_training():
    from framestamp.data.synth_words import read_vocabulary, vocabulary

    folder = Path(synth.__file__).parent
    reading_lines = read_vocabulary(folder / "reading-words.txt")
    frequent_lines = read_vocabulary(folder / "frequent-words.txt")
    more_lines = read_vocabulary(folder / "more-words.txt")
    reading, frequent, more = set(reading_lines), set(frequent_lines), set(more_lines)
    unseen, built_in = set(read_vocabulary(folder / "unseen-words.txt")), set(vocabulary())
    assert len(reading_lines) == len(reading) == 8000  # every line a usable word, none twice
    assert len(frequent_lines) == len(frequent) == 3000
    assert not reading & unseen
    assert not built_in & unseen
    assert not reading & built_in
    assert not frequent & unseen
    assert len(more_lines) == len(more) == 3000
    assert not more & (unseen | reading | frequent | built_in)  # the next words: none of any other list


def test_no_training_word_list_sounds_like_a_held_out_word():
    """Held-out words stay unheard: no word of the training lists has a cmudict pronunciation of one of them."""
    pocketsphinx = pytest.importorskip("pocketsphinx", reason="the cmudict to compare with ships in pocketsphinx")
    from framestamp.data.synth_words import read_vocabulary

    folder = Path(synth.__file__).parent
    sounds: dict[str, set[str]] = {}
    with open(Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict", encoding="utf-8") as lines:
        for line in lines:
            word, *phones = line.split()
            sounds.setdefault(word.split("(")[0], set()).add(" ".join(phones))
    held_out = set().union(*(sounds.get(word, set()) for word in read_vocabulary(folder / "unseen-words.txt")))
    for name in ("vocabulary.txt", "reading-words.txt", "frequent-words.txt", "more-words.txt"):
        alike = [word for word in read_vocabulary(folder / name) if sounds.get(word, set()) & held_out]
        assert not alike, f"{name} has words that sound like held-out ones: {alike[:5]}"


@pytest.mark.espeak
@needs_espeak
def test_clips_draw_from_the_vocabulary_file_and_notice_when_it_changes(tmp_path):
    from framestamp.data.synth_words import speak_words, vocabulary_source

    path = tmp_path / "words.txt"
    path.write_text("lantern\nmeadow\nwhistle\ncopper\nharbor\nthistle\n")
    source = vocabulary_source(path)
    clip = speak_words(2, min_seconds=2.0, max_seconds=4.0, voices=["en-us"], vocabulary=source)
    assert {word.text for word in clip.words} <= {"lantern", "meadow", "whistle", "copper", "harbor", "thistle"}
    path.write_text("lantern\nmeadow\n")
    with pytest.raises(InputError, match="has changed"):
        speak_words(2, min_seconds=2.0, max_seconds=4.0, voices=["en-us"], vocabulary=source)


# ---------------------------------------------------------------- the command


def run_synth(out, *arguments):
    import argparse

    parser = argparse.ArgumentParser()
    synth.configure(parser)
    assert synth.run(parser.parse_args([str(out), *arguments])) == 0
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.espeak
@needs_espeak
def test_new_settings_are_recorded_only_when_given(tmp_path):
    lines = run_synth(tmp_path / "plain", "--tasks", "words", "--count", "1", "--voices", "en-us", "--max-seconds", "4")
    assert set(lines[0]["source"]["generator"]) == {"name", "seed", "min_seconds", "max_seconds", "voices"}
    assert "engine" not in lines[0]["source"] and "conditions" not in lines[0]["source"]


def test_bad_condition_options_are_input_errors(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    synth.configure(parser)
    for arguments, message in ((["--noise-snr", "loud"], "--noise-snr takes"), (["--noise-snr", "30,5"], "low <= high"),
                               (["--noise-kinds", "pink"], "give --noise-snr too"), (["--reverb", "1.5"], "probability"),
                               (["--noise-snr", "5,30", "--noise-kinds", "hum"], "unknown noise kind"),
                               (["--rates", "300"], "--rates takes"), (["--rates", "60,300"], "80 <= LOW"),
                               (["--rates", "200.5,300"], "whole numbers"), (["--pitches", "50,10"], "LOW <= HIGH")):
        with pytest.raises(InputError, match=message):
            synth.condition_settings(parser.parse_args([str(tmp_path), *arguments]))


@pytest.mark.espeak
@needs_espeak
def test_rates_and_pitches_set_how_fast_and_how_high_voices_speak(tmp_path):
    from framestamp.data.synth_words import speak_words

    fast = run_synth(tmp_path / "fast", "--tasks", "words", "--count", "3", "--voices", "en-us,en-029",
                     "--max-seconds", "5", "--rates", "300,320", "--pitches", "0,5")
    for line in fast:
        generator = line["source"]["generator"]
        assert generator["rates"] == [300, 320] and generator["pitches"] == [0, 5]
        assert np.array_equal(synth.regenerate(generator), load_audio(tmp_path / "fast" / line["audio"]))
    # The same clips' words, spoken at 300-320 and at 130-140 words per minute: measured in the labels' own times.
    lengths = {}
    for name, rates in (("fast", (300, 320)), ("slow", (130, 140))):
        clips = [speak_words(seed, min_seconds=3.0, max_seconds=5.0, voices=["en-us"], rates=rates, pitches=(0, 5))
                 for seed in range(3)]
        assert all(rates[0] <= clip.voice.rate <= rates[1] and clip.voice.pitch <= 5 for clip in clips)
        lengths[name] = np.mean([word.end - word.start for clip in clips for word in clip.words])
    assert lengths["fast"] < 0.7 * lengths["slow"]


@pytest.mark.flite
@pytest.mark.festival
@pytest.mark.espeak
@pytest.mark.skipif(not (flite.available() and festival.available() and espeak.available()),
                    reason="needs flite, festival and espeak-ng (apt-get install flite festival festvox-kallpc16k espeak-ng)")
def test_synth_with_engines_noise_reverb_and_vocabulary_repeats_and_regenerates(tmp_path):
    (tmp_path / "words.txt").write_text("\n".join(["lantern", "meadow", "whistle", "copper", "harbor", "thistle",
                                                   "marble", "window", "garden", "silver"]) + "\n")
    arguments = ["--tasks", "words", "--count", "4", "--seed", "9", "--max-seconds", "5",
                 "--voices", "flite:slt,festival:kal,flite:kal16,en-us", "--noise-snr", "5,30", "--reverb", "0.5",
                 "--vocabulary", str(tmp_path / "words.txt")]
    lines = run_synth(tmp_path / "first", *arguments)
    run_synth(tmp_path / "second", *arguments, "--workers", "2")
    files = sorted(path.relative_to(tmp_path / "first") for path in (tmp_path / "first").rglob("*") if path.is_file())
    assert all((tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes() for name in files)

    clips = {line["audio"]: line["source"] for line in lines}
    assert {source.get("engine", "espeak") for source in clips.values()} >= {"flite", "festival"}
    for audio_path, source in clips.items():
        assert source["conditions"]["noise"]["kind"] in conditions.NOISE_KINDS
        generator = source["generator"]
        assert generator["noise_snr"] == [5.0, 30.0] and generator["reverb"] == 0.5
        assert generator["vocabulary"]["path"] == str((tmp_path / "words.txt").resolve())
        assert np.array_equal(synth.regenerate(generator), load_audio(tmp_path / "first" / audio_path))

    # A fresh process (its own engines) makes the same bits.
    audio_path, source = next((path, source) for path, source in clips.items() if source.get("engine") == "festival")
    program = ("import hashlib, json, sys; from framestamp.data.synth import regenerate; "
               "print(hashlib.sha256(regenerate(json.loads(sys.argv[1])).tobytes()).hexdigest())")
    digest = subprocess.run([sys.executable, "-c", program, json.dumps(source["generator"])], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert digest == hashlib.sha256(load_audio(tmp_path / "first" / audio_path).tobytes()).hexdigest()
