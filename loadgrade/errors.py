"""Errors that reach the user as one clear message rather than a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario: the key path (``dataset.id_column``), what is wrong, and where."""

    key: str
    message: str
    line: int | None = None


class ScenarioError(ValueError):
    """A scenario file is unusable: names the file, the key and what was expected.

    Raised before any load starts; command-line entry points print it and exit with status 2.
    It may carry several problems (pydantic finds all of them at once); the message has one line per problem.
    """

    def __init__(
        self,
        path: object,
        key: str = "",
        message: str = "",
        *,
        line: int | None = None,
        problems: list[Problem] | None = None,
    ) -> None:
        self.path = str(path)
        self.problems = problems if problems is not None else [Problem(key, message, line)]
        super().__init__("\n".join(self._format(p) for p in self.problems))

    def _format(self, problem: Problem) -> str:
        where = f"{self.path}:{problem.line}" if problem.line is not None else self.path
        return f"{where}: {problem.key or '<top level>'}: {problem.message}"

    @property
    def key(self) -> str:
        """The key path of the first problem."""
        return self.problems[0].key
