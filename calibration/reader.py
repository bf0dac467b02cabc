"""Real audio through the featurizer and the fp32 encoder graph: the inputs that calibrate both graphs.

Each calibration example is one clip and one question from a manifest: its log-mel feeds the encoder
graph; the encoder's output, with the question's token ids, feeds the decoder graph. Questions are
spread over the manifest's tasks so that short (word) and long (transcript) prompts both calibrate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from framestamp.data.manifest import Example, balanced_subset, read_manifest
from framestamp.runtime.artifact import GraphSessions, decoder_places
from framestamp.runtime.audio import load_audio
from framestamp.runtime.errors import InputError
from framestamp.runtime.features import FeatureSettings, log_mel
from framestamp.runtime.frames import audio_frames_for_mel
from framestamp.runtime.prompts import PAD_TOKEN, pad_prompts, prompt_ids, special_token_id


def calibration_examples(manifest: str | Path, count: int, max_seconds: float | None = None) -> list[Example]:
    """``count`` examples with audio files, spread over tasks, shortest-clip limit applied."""
    examples = [example for example in read_manifest(manifest) if example.audio is not None
                and (max_seconds is None or example.duration <= max_seconds)]
    if not examples:
        raise InputError(f"{manifest}: no examples with an audio file"
                         + (f" of at most {max_seconds} s" if max_seconds else "") + " to calibrate with")
    return balanced_subset(examples, count)


def graph_feeds(examples: list[Example], manifest_dir: Path, sessions: GraphSessions, tokenizer,
                settings: FeatureSettings) -> Iterator[tuple[dict, dict]]:
    """(encoder feed, decoder feed) per example, batch 1, streamed: one clip in memory at a time."""
    pad_id = special_token_id(tokenizer, PAD_TOKEN)
    for example in examples:
        path = example.audio_path(manifest_dir)
        mel = log_mel(load_audio(path), settings, source=str(path))[None]
        mel_lengths = np.array([mel.shape[2]], dtype=np.int64)
        audio, frame_counts = sessions.encode(mel, mel_lengths)
        ids = prompt_ids(tokenizer, example.question, audio_frames_for_mel(mel.shape[2]))
        input_ids, attention_mask, audio_start = pad_prompts([ids], pad_id)
        decoder = {"input_ids": input_ids, "attention_mask": attention_mask, "audio_start": audio_start,
                   "audio": audio, "frame_counts": frame_counts}
        if sessions.takes_merged_audio:
            decoder.update(decoder_places(audio.shape[1], frame_counts))  # unmerged: a position and place per frame
        yield {"mel": mel, "mel_lengths": mel_lengths}, decoder


def feed_reader(feeds: list[dict]):
    """An onnxruntime CalibrationDataReader over ready feeds (rewindable, for several passes)."""
    from onnxruntime.quantization import CalibrationDataReader

    class FeedReader(CalibrationDataReader):
        def __init__(self):
            self.position = 0

        def get_next(self):
            if self.position >= len(feeds):
                return None
            self.position += 1
            return feeds[self.position - 1]

        def rewind(self):
            self.position = 0

        def __len__(self):
            return len(feeds)

    return FeedReader()
