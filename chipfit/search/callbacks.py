"""Hooks a run calls as it goes; the CLI implements them with Rich progress bars. All are no-ops here.

The search calls ``on_start`` .. ``on_record``; finishing the run (:meth:`chipfit.run.Run.report`) calls
``on_phase`` as each step of the final measurement and export begins, so nothing runs unannounced.

>>> class Log(SearchCallbacks):
...     def __init__(self) -> None:
...         self.phases: list[str] = []
...     def on_phase(self, name: str, detail: str = "") -> None:
...         self.phases.append(name)
>>> cb = Log()
>>> cb.on_phase(PHASES["test"]); cb.phases
['evaluating the int8 model on the test split']
"""

from __future__ import annotations

from typing import Any

#: The phases of finishing a run, in order (exports add one phase per format: ``export <format>``).
PHASES = {
    "test": "evaluating the int8 model on the test split",
    "robustness": "robustness under the field conditions",
    "finalists": "measuring the finalists on real runtimes",
    "export": "exporting",
    "tflm": "checking the exported .tflite under TFLM",
    "html": "writing report.html",
}


class SearchCallbacks:
    def on_start(self, total: int, done: int) -> None:
        """The search starts; ``done`` candidates were already recorded (resume)."""

    def on_candidate(self, number: int, config: dict[str, Any], predicted: dict[str, Any]) -> None:
        """A sampled candidate has been costed."""

    def on_training(self, epochs: int) -> None:
        """Training of the current candidate starts, for up to ``epochs`` epochs."""

    def on_epoch(self, epoch: int, accuracy: float) -> None:
        """One training epoch ended with this validation accuracy."""

    def on_record(self, record: Any, done: int) -> None:
        """A candidate was recorded (any state); ``done`` candidates are recorded in the run (all workers)."""

    def on_phase(self, name: str, detail: str = "") -> None:
        """A step of finishing the run begins (one of :data:`PHASES`' values, or ``"exporting <format>"``);
        ``detail`` says on what (e.g. the runtime, the file)."""
