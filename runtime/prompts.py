"""Question templates (paper appendix A.2), defined once for training and the runtime.

The question goes *before* the audio in the prompt: the decoder is causal, so the audio frames can
only attend to a question they have already seen.
"""

from __future__ import annotations

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


def ordinal(k: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    if 10 <= k % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def check_prompt_fields(task: str, fields: dict) -> None:
    """Raise InputError unless ``fields`` has what ``task``'s template needs, with sane values."""
    if task not in TEMPLATES:
        raise InputError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
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


def render_prompt(task: str, fields: dict) -> str:
    """The question text for one example, e.g. render_prompt('word', {'word': 'much', 'occurrence': 1})."""
    check_prompt_fields(task, fields)
    template, _ = TEMPLATES[task]
    values = dict(fields)
    if "occurrence" in values:
        values["ordinal"] = ordinal(values["occurrence"])
    return template.format(**values)
