"""``bitfit``: BitFit (Ben Zaken et al. 2022) -- only the LM's bias terms train; every other LM weight stays frozen
(bit for bit).  PEFT has no BitFit: it is a parameter-group rule (:mod:`promptlearn.adapters.bitfit`), recorded in
the spec as ``adapter: {type: bitfit}``; a saved model holds the tuned biases (kilobytes), not the LM.  Combinable
with a hard template or soft tokens (``strategy.soft_prefix=N``), as ``lora``.
"""

from __future__ import annotations

from .lora import AdapterTuning


class BitFitTuning(AdapterTuning):
    pass
