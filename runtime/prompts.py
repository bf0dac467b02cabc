"""Question templates (paper appendix A.2), defined once for training and the runtime.

The question goes *before* the audio in the prompt: the decoder is causal, so the audio frames can
only attend to a question they have already seen.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata

import numpy as np

from framestamp.runtime.errors import InputError

# task -> (template, the prompt fields it needs)
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "word": ("When does the {ordinal} occurrence of the word '{word}' occur?", ("word", "occurrence")),
    "speaker": ("When does the {ordinal} speaker start speaking?", ("occurrence",)),
    "event": ("When does the {ordinal} occurrence of the event '{event}' occur?", ("event", "occurrence")),
    "transcript": (
        "Transcript:\n{transcript}\nBased on the transcript, output the timestamps for every word",
        ("transcript",),
    ),
}
TASKS = tuple(TEMPLATES)
OCCURRENCE_TASKS = tuple(task for task, (_, fields) in TEMPLATES.items() if "occurrence" in fields)  # "the k-th ..."


def ordinal(k: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    if 10 <= k % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


# ----------------------------------------------------------------------------- words as training saw them
# Training asks about words as the corpora spell them after the loaders lower-case them: LibriSpeech
# transcripts (letters and apostrophes, upper case) and the synthetic vocabulary (lower-case letters).
# No punctuation, no capitals: `normalize_word` maps a user's word onto that spelling.
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
CONTROL_TOKEN = re.compile(r"<\|.*?\|>", flags=re.DOTALL)


def _is_punctuation(character: str) -> bool:
    return unicodedata.category(character).startswith("P") and character != "'"


def normalize_word(word: str) -> str:
    """One word spelled as training spelled it: lower case, typographic apostrophes made straight,
    punctuation stripped from both ends ("Dog," -> "dog", "'Tis" -> "'tis", "brothers'" -> "brothers'").

    Apostrophes inside or at one end stay (LibriSpeech keeps them); a word wrapped in a pair of them
    ("'dog'") is a quotation and loses both. Returns "" for a token of punctuation only ("--").
    """
    word = unicodedata.normalize("NFC", word).translate(APOSTROPHES).lower()
    start, end = 0, len(word)
    while start < end and (_is_punctuation(word[start]) or word[start].isspace()):
        start += 1
    while end > start and (_is_punctuation(word[end - 1]) or word[end - 1].isspace()):
        end -= 1
    word = word[start:end]
    if len(word) >= 2 and word[0] == word[-1] == "'":
        word = normalize_word(word[1:-1])
    return word


def normalize_transcript(text: str) -> list[tuple[str, str]]:
    """``(as written, normalized)`` for each whitespace-separated word of ``text`` that holds a word;
    tokens of punctuation only ("-", "...") are not words and are left out."""
    return [(token, normalize_word(token)) for token in text.split() if normalize_word(token)]


def check_free_text(name: str, text: str) -> None:
    """Refuse text that would smuggle chat or audio control tokens (``<|im_end|>``, ``<|AUDIO|>``) into the prompt,
    and strings that are not text (lone surrogates, which no tokenizer can encode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputError(f"prompt field {name!r} holds {text[error.start]!r} at character {error.start}, which is not a "
                         "character but half of a UTF-16 pair: pass valid text") from None
    found = CONTROL_TOKEN.search(text)
    if found:
        raise InputError(f"prompt field {name!r} contains the control token {found.group(0)!r}; "
                         "questions may not contain <|...|> markers: remove it")


def check_prompt_fields(task: str, fields: dict) -> None:
    """Raise InputError unless ``fields`` has what ``task``'s template needs, with sane values."""
    if not isinstance(task, str) or task not in TEMPLATES:
        raise InputError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if not isinstance(fields, dict):
        raise InputError(f"prompt fields must be a dict of the task's template fields, got {type(fields).__name__}")
    missing = [name for name in TEMPLATES[task][1] if name not in fields]
    if missing:
        raise InputError(f"task {task!r} needs prompt field(s) {', '.join(missing)}")
    if "occurrence" in TEMPLATES[task][1]:
        k = fields["occurrence"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"prompt field 'occurrence' must be an integer >= 1, got {k!r}")
    for name in TEMPLATES[task][1]:
        if name != "occurrence" and (not isinstance(fields[name], str) or not fields[name].strip()):
            raise InputError(f"prompt field {name!r} must be a non-empty string, got {fields[name]!r}")
        if name != "occurrence":
            check_free_text(name, fields[name])


def render_prompt(task: str, fields: dict) -> str:
    """The question text for one example, e.g. render_prompt('word', {'word': 'much', 'occurrence': 1})."""
    check_prompt_fields(task, fields)
    template, names = TEMPLATES[task]
    values = dict(fields)
    if "occurrence" in names:  # a field the template does not take is not read, whatever it holds
        values["ordinal"] = ordinal(values["occurrence"])
    return template.format(**values)


def known_words(words, vocabulary=None) -> list[bool]:
    """For each word (spelled as training spelled it): whether it is in ``vocabulary``, the words a model
    was trained on (None: not recorded, so every word counts as known)."""
    return [vocabulary is None or word in vocabulary for word in words]


def transcript_word_questions(words) -> list[dict]:
    """The word question for each word of a transcript, in order: ``{"word": w, "occurrence": k}`` where
    the transcript says ``w`` for the k-th time (words spelled as training spelled them). Every word is
    asked, known to the model or not (``transcript_rows`` weighs a new word's answer)."""
    said: dict[str, int] = {}
    questions = []
    for word in words:
        said[word] = said.get(word, 0) + 1
        questions.append({"word": word, "occurrence": said[word]})
    return questions


# ----------------------------------------------------------------------------- the chat layout
# One user turn: the question, then the audio block (one placeholder per 40 ms frame), then the
# assistant turn, where the token baseline writes its answer. Qwen2.5-Omni and Qwen2-Audio share
# these special tokens; the frame head reads the decoder states at the placeholders.
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
AUDIO_START, AUDIO_TOKEN, AUDIO_END = "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"
PAD_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END, AUDIO_START, AUDIO_END, AUDIO_TOKEN, "<|IMAGE|>", "<|VIDEO|>")
BEFORE_AUDIO = IM_START + "user\n{question}\n"
AFTER_AUDIO = IM_END + "\n" + IM_START + "assistant\n"
ANSWER_END = IM_END


def special_token_id(tokenizer, token: str) -> int:
    """The id of a special token in a ``tokenizers.Tokenizer``; a clear error if it lacks one."""
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise InputError(f"the tokenizer has no {token!r} token; framestamp needs the Qwen chat and audio tokens "
                         f"{', '.join(SPECIAL_TOKENS[:6])}")
    return token_id


def prompt_ids(tokenizer, question: str, num_audio_frames: int, answer: str | None = None) -> tuple[list[int], int]:
    """Token ids of the prompt and the index of its first audio placeholder.

    ``answer`` (the token baseline's target text) is appended with its end token when given.
    """
    before = tokenizer.encode(BEFORE_AUDIO.format(question=question), add_special_tokens=False).ids
    after = tokenizer.encode(AFTER_AUDIO, add_special_tokens=False).ids
    audio = ([special_token_id(tokenizer, AUDIO_START)] + [special_token_id(tokenizer, AUDIO_TOKEN)] * num_audio_frames
             + [special_token_id(tokenizer, AUDIO_END)])
    ids = before + audio + after
    if answer is not None:
        ids += tokenizer.encode(answer + ANSWER_END, add_special_tokens=False).ids
    return ids, len(before) + 1


def pad_prompts(prompts, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-pad ``[(ids, audio_start), ...]`` into ``(input_ids, attention_mask, audio_start)`` int64 arrays."""
    if len(prompts) == 0:
        raise InputError("pad_prompts needs at least one prompt")
    width = max(len(ids) for ids, _ in prompts)
    input_ids = np.full((len(prompts), width), int(pad_id), dtype=np.int64)
    attention_mask = np.zeros((len(prompts), width), dtype=np.int64)
    for row, (ids, _) in enumerate(prompts):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask, np.array([start for _, start in prompts], dtype=np.int64)


def prompt_layout() -> dict:
    """The prompt definitions a checkpoint was trained with; the runtime must use the same bytes."""
    return {
        "templates": {task: template for task, (template, _) in TEMPLATES.items()},
        "before_audio": BEFORE_AUDIO,
        "after_audio": AFTER_AUDIO,
        "answer_end": ANSWER_END,
        "audio_tokens": [AUDIO_START, AUDIO_TOKEN, AUDIO_END],
    }


# -------------------------------------------------------------- the token baseline's answer text
# The paper's appendix A.2: a fenced JSON list; words to 10 ms, speakers and events to 1 ms.
ANSWER_KEY = {"word": "word", "speaker": "speaker", "event": "event"}
DECIMALS = {"word": 2, "speaker": 3, "event": 3, "transcript": 2}


def answer_text(task: str, fields: dict, times) -> str:
    """The JSON answer the token baseline is trained to generate for one question."""
    check_prompt_fields(task, fields)
    decimals = DECIMALS[task]
    if task == "transcript":
        body = "[" + ", ".join(f"{t:.{decimals}f}" for t in times) + "]"
    else:
        value = str(fields["occurrence"]) if task == "speaker" else fields[task]
        entries = [json.dumps({ANSWER_KEY[task]: value, "start": round(float(t), decimals)}, ensure_ascii=False)
                   for t in times]
        body = "[\n    " + ",\n    ".join(entries) + "\n]"
    return "```json\n" + body + "\n```"


def parse_answer(text: str, task: str) -> list[float] | None:
    """Times from a generated answer, or None when it is malformed (counted as a miss, and reported)."""
    match = re.search(r"```json\s*(.*?)\s*```", text, flags=re.DOTALL)
    try:
        answer = json.loads(match.group(1) if match else text.strip())
    except (json.JSONDecodeError, AttributeError):
        return None
    if not isinstance(answer, list) or not answer:
        return None
    if task == "transcript":
        numbers = answer
    else:
        numbers = [entry.get("start") if isinstance(entry, dict) else None for entry in answer]
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) for n in numbers):
        return None
    return [float(n) for n in numbers]
