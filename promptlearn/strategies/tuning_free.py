"""``tuning_free``: zero-shot; nothing trains, the eval split is scored with the template and verbalizer.
"""

from __future__ import annotations

from .base import Strategy


class TuningFree(Strategy):
    trains = ()
