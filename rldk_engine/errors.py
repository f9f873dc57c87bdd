"""Errors users see: always one line naming the file and the reason."""

from __future__ import annotations

import os


class InputError(Exception):
    """A log that cannot be read; `str()` is the one-line message shown to the user."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def describe_os_error(exc: OSError) -> str:
    """`[Errno 13] Permission denied: 'x'` -> `permission denied`."""
    text = exc.strerror or exc.__class__.__name__
    return text[:1].lower() + text[1:]


EXTRAS = {"hf": "transformers", "wandb": "wandb", "ray": "ray"}


def missing_extra_message(extra: str, what: str) -> str:
    """The one-line message for an absent optional dependency."""
    return f"{what} needs the optional '{extra}' extra (pip install 'rldk[{extra}]')"
