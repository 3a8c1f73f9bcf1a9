"""The one exception type for bad user data (annotation files, images, tokenizer files)."""

from __future__ import annotations


class DataError(ValueError):
    """Bad user input: a missing file, a JSON file of the wrong shape, an unreadable image.

    The message is a single line that names the file, and the entry index and key where relevant, e.g.
    ``caption_test.json: entry 3: "caption" must be a list of strings, got str``. The CLI prints it without a
    traceback, so it has to say on its own what is wrong and where.
    """
