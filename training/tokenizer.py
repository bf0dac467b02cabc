"""Tokenizers: the checkpoint's own (real Qwen models), or framestamp's byte-level BPE for presets.

Everything downstream holds a ``tokenizers.Tokenizer`` (the runtime reads the same tokenizer.json
with no transformers), so training and runtime tokenize with the same code.

The preset tokenizer is trained once by ``build_preset_tokenizer`` and shipped as
``presets/tokenizer/framestamp-bpe.json``: its special tokens take ids 0-7, matching the
presets' configs. Byte-level, so any word a user asks about still encodes.
"""

from __future__ import annotations

from pathlib import Path

from framestamp.runtime.errors import InputError
from framestamp.runtime.prompts import SPECIAL_TOKENS, TEMPLATES, answer_text, ordinal

PRESET_TOKENIZER = Path(__file__).parent / "presets" / "tokenizer" / "framestamp-bpe.json"
PRESET_VOCAB_SIZE = 4096


def load_tokenizer(path: str | Path):
    """A ``tokenizers.Tokenizer`` from a tokenizer.json file or a folder holding one."""
    from tokenizers import Tokenizer

    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"{file}: no tokenizer.json; a checkpoint folder must hold its tokenizer "
                         "(transformers' fast tokenizers save one with save_pretrained)")
    return Tokenizer.from_file(str(file))


def preset_tokenizer():
    return load_tokenizer(PRESET_TOKENIZER)


def _training_text() -> list[str]:
    """What the preset tokenizer learns its merges from: the synthetic vocabulary, event names,
    every question template and answers with numbers, so prompts and answers encode compactly."""
    from framestamp.data.synth_events import display_names
    from framestamp.data.synth_words import vocabulary

    words = list(vocabulary())
    events = sorted(set(display_names().values()))
    lines = [" ".join(words), " ".join(words).upper(), " ".join(events)]
    for k in range(1, 60):
        for word in words[k::59]:
            lines.append(TEMPLATES["word"][0].format(ordinal=ordinal(k), word=word))
            lines.append(answer_text("word", {"word": word, "occurrence": k}, [k * 0.37]))
        lines.append(TEMPLATES["speaker"][0].format(ordinal=ordinal(k)))
        lines.append(answer_text("speaker", {"occurrence": k}, [k * 0.173]))
        for event in events:
            lines.append(TEMPLATES["event"][0].format(ordinal=ordinal(k), event=event))
        lines.append(answer_text("transcript", {"transcript": "x"}, [i * 0.29 for i in range(k)]))
    lines.append(TEMPLATES["transcript"][0].format(transcript=" ".join(words[:40])))
    return lines


def build_preset_tokenizer(vocab_size: int = PRESET_VOCAB_SIZE):
    """Train the byte-level BPE the presets use (deterministic: same text, same merges)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),  # ids 0..7, in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_text(), trainer=trainer)
    for index, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == index, (token, tokenizer.token_to_id(token))
    return tokenizer


if __name__ == "__main__":  # python -m framestamp.training.tokenizer: rebuild the shipped file
    build_preset_tokenizer().save(str(PRESET_TOKENIZER))
    print(f"wrote {PRESET_TOKENIZER}")
