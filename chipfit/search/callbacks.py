"""Hooks the search calls as it goes; the CLI implements them with Rich progress bars. All are no-ops here."""

from __future__ import annotations

from typing import Any


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
