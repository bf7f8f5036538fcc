"""The user-facing error types. ``assert`` is kept for internal invariants only."""


class TaggantError(Exception):
    """Base of every error taggant raises on purpose."""


class ConfigError(TaggantError):
    """The experiment spec or a command-line value is wrong.

    ``problems`` holds ``(field_path, message)`` pairs; each message says what is wrong and the fix.
    """

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{path}: {message}" for path, message in problems))


class DataError(TaggantError):
    """Input data or a stage output cannot be used as it is; the message names the file and fix."""


def one_line(error: BaseException, with_type: bool = True) -> str:
    """An error as one line: its type name (unless ``with_type`` is false) and its message; of a
    multi-line message (torch puts each rank's traceback in it) the first and last lines."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}" if lines else ""
    return f"{type(error).__name__}: {message}" if with_type else message
