"""The errors promptlearn raises on purpose: each names the input, where it applies, and the fix.

Every such error derives from :class:`PromptlearnError`; the command line prints it as one message
with exit code 2 and no traceback (``debug=true`` or ``HYDRA_FULL_ERROR=1`` shows the traceback).
"""

from __future__ import annotations

__all__ = ["PromptlearnError", "ConfigError", "ReportedByMainProcess"]


class PromptlearnError(Exception):
    """An error the user can act on; its message says what, where, and the fix."""


class ConfigError(PromptlearnError, ValueError):
    """An option with a wrong type, range or choice, or one the task / machine cannot satisfy."""


class ReportedByMainProcess(PromptlearnError):
    """Under a launcher: a process other than the main one stopped on an error that every process meets the same
    way (a wrong option, missing data); the main process prints it, the others exit quietly with the same code."""
