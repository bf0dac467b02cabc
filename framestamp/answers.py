"""Answer many questions at once, keeping each refusal with its own question.

The runtime refuses a whole Locator.run when one question in it is bad; a server's batch or a corpus
job's batch must still answer the others. Used by `framestamp serve` and `framestamp locate-corpus`.
"""

from __future__ import annotations

from framestamp.runtime.errors import InputError


def answer_each(locator, queries: list) -> list:
    """Timestamps for each Query, or the InputError that refused it (entries that already are an
    InputError stay as they are); the valid queries go through one Locator.run."""
    valid = [index for index, query in enumerate(queries) if not isinstance(query, Exception)]
    answers = list(queries)
    try:
        for index, result in zip(valid, locator.run([queries[i] for i in valid])):
            answers[index] = result
    except InputError:
        # Ask each alone to find which one was refused; the refusal comes before any forward pass.
        for index in valid:
            try:
                answers[index] = locator.run([queries[index]])[0]
            except InputError as error:
                answers[index] = error
    return answers
