"""Typed errors: every failure a user can cause or meet has a class, so callers catch what they mean."""
from __future__ import annotations


class RlcspError(Exception):
    """Base class for every error rlcsp raises on purpose."""


class ConfigError(RlcspError, ValueError):
    """An input script, CLI option or run setting is wrong."""


class CompositionError(ConfigError):
    """A composition is not charge-balanced, names an unknown ion, or cannot fit the limits."""


class DatasetError(ConfigError):
    """A trajectory dataset is empty, unreadable, or does not fit the skeleton, environment or policy it meets."""


class EmptyDataset(DatasetError):
    """Building a trajectory dataset left no episode (every row skipped, or no input)."""


class VocabularyMismatch(DatasetError):
    """A dataset, environment or checkpoint uses another element vocabulary (action space) than its partner."""


class LibraryError(ConfigError):
    """A GULP potential library cannot be read, or lacks what a structure needs."""


class InvalidStructure(RlcspError, ValueError):
    """A structure cannot be evaluated at all (empty, NaN or singular cell, missing charges)."""


class CalculatorFailed(RlcspError, RuntimeError):
    """An energy engine crashed, timed out or returned something unusable."""


class CalculatorNotFound(CalculatorFailed):
    """An external program (gulp, pw.x) is not installed or not configured."""


class InvalidMove(RlcspError):
    """A move failed this time (e.g. the candidate failed the checks); trying again may succeed."""


class NotApplicable(RlcspError):
    """A move cannot apply to this genome at all (e.g. swap modules with nc <= 2)."""


class UnknownName(ConfigError, KeyError):
    """A registry lookup (calculator, relaxer, move, policy) got a name it does not know."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid names: {', '.join(self.valid)}")

    def __str__(self) -> str:
        return self.args[0]


class UnknownElement(CompositionError):
    """A composition names a symbol that is not a chemical element (or one SMACT has no data for)."""


class TrainingStopped(RlcspError):
    """A signal stopped training after a checkpointed step; the same command continues it."""
