"""Errors with one-line messages that say what is wrong and how to fix it.

The CLI prints `error: <message>` for any SamExportError and exits with its `exit_code`.
"""


class SamExportError(Exception):
    """Any samexport failure with a one-line message; exit status 1 unless a subclass says otherwise."""

    exit_code = 1


class UsageError(SamExportError):
    """A bad name, option or path given by the user."""

    exit_code = 2


class InputError(SamExportError):
    """An image or prompt that does not fit the model's input contract."""

    exit_code = 2


class CheckpointError(SamExportError):
    """A checkpoint file that cannot be loaded into the chosen model."""

    exit_code = 2


class PlatformError(SamExportError):
    """Something this machine cannot do (e.g. Core ML prediction off macOS)."""

    exit_code = 2


def first_line(error: BaseException, limit: int = 160) -> str:
    """An exception's first message line (its type name when it has no message), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
