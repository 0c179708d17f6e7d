"""Problems found in the configuration: one line each, naming the file, the key
and the reason, so that ``hotline check-config`` can list them all at once
instead of stopping at the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hotline.core.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    file: str  # relative to the config directory, e.g. "queues.toml", "seed/spheres_2017.csv"
    key: str  # e.g. "queues.housing.digit"; "" when it is the file as a whole
    reason: str

    def line(self, where: str = "") -> str:
        """``<where/file>: <key>: <reason>``; ``where`` is the config directory."""
        path = f"{where.rstrip('/')}/{self.file}" if where else self.file
        return f"{path}: {self.key}: {self.reason}" if self.key else f"{path}: {self.reason}"

    def __str__(self) -> str:
        return self.line()


class ConfigProblems(ConfigError):
    """A file under the config directory is unusable. The message is the first
    problem (with how many more there are); ``problems`` has them all."""

    error_id = "config_invalid"

    def __init__(self, problems: Sequence[Problem], where: str = "") -> None:
        if not problems:
            raise ValueError("ConfigProblems needs at least one problem")
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(
            problems[0].line(where) + more,
            details={"problems": [p.line(where) for p in problems]},
        )
        self.problems = tuple(problems)
