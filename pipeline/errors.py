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
