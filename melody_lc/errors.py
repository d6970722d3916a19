"""The errors meant for a user, whichever room raises them.

Every error a user can cause (a bad rules or chain file, a broken MIDI file, a missing checkpoint, a
port that is gone, image data that is not what it should be) is a :class:`UserError`. The CLI
catches that one class and prints its message on one line with exit code 2; anything else is a
bug and keeps its traceback.
"""


class UserError(Exception):
    """An error a user can fix; its message says what was wrong and, where it helps, what to do."""


class LocatedError(UserError):
    """An error at a place in a text file the user wrote: ``path:line:column: message`` (line 0: the
    file as a whole, ``path: message``)."""

    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        self.path, self.line, self.column, self.message = path, line, column, message
        super().__init__(f"{path}:{line}:{column}: {message}" if line else f"{path}: {message}")
