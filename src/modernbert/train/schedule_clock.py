"""The LR of each batch read from the clock at that batch's start, not one batch late.

Composer steps the schedulers after a batch but before it advances its clock (tokens, samples,
batches) past that batch, so the LR set for batch k+1 is the schedule evaluated at the start of
batch k: every schedule runs one batch late, and the first two batches of a warmup both get the
schedule's value at 0 (LR 0). `StepSchedulersOnTime` steps the schedulers once more at
BATCH_END, after the clock has advanced; every scheduler we register is a pure function of the
clock (`state.timestamp`), so the extra step only re-reads it. A resumed run needs nothing
else: Composer rebuilds the schedulers from the restored clock.
"""

from __future__ import annotations

from composer.core import Callback, State
from composer.loggers import Logger


class StepSchedulersOnTime(Callback):
    """Re-evaluate every scheduler at BATCH_END, once the clock counts the finished batch."""

    def batch_end(self, state: State, logger: Logger) -> None:
        for scheduler in state.schedulers:
            scheduler.step()
