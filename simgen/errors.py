"""Errors a user can cause (bad files, bad values) versus runtime failures.

:class:`InputError` is printed as one line by the CLI and exits with code 2; anything else exits with 1.
"""
from __future__ import annotations


class InputError(Exception):
    """A user mistake: names the file, the key path, the value and what is allowed."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file, self.key = file, key
        where = ""
        if file:
            where += f"{file}: "
        if key:
            where += f"{key}: "
        super().__init__(where + message)


class RunError(Exception):
    """A runtime failure that is not the user's input (backend died, disk full...)."""
