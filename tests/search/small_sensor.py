"""A generated small multivariate sensor set (4 classes, 100 x 6 windows, 10 training windows per class),
separable as real sensor data is: each class has its own frequency and amplitude per axis, with random phase,
gain, offset and noise; and a contract for it: examples/har-nrf52840.yaml with only the path and classes changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
CLASSES = 4
WINDOW, AXES = 100, 6
SAMPLE_RATE_HZ = 50.0


def sensor_windows(per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` windows of every class, [n, 100, 6] float32, and their labels."""
    t = np.arange(WINDOW) / SAMPLE_RATE_HZ
    # per class and axis: a dominant frequency (Hz) and an amplitude, as different gestures move the axes differently
    freq = np.array([[1.0, 1.5, 0.5, 2.0, 1.0, 0.8],
                     [2.5, 3.0, 2.0, 1.0, 3.5, 2.2],
                     [5.0, 4.5, 6.0, 5.5, 4.0, 6.5],
                     [1.2, 8.0, 1.0, 7.0, 1.4, 9.0]])
    amp = np.array([[1.0, 0.6, 0.3, 0.8, 0.4, 0.2],
                    [0.5, 1.0, 0.8, 0.3, 0.6, 0.9],
                    [0.7, 0.4, 1.0, 0.6, 0.9, 0.5],
                    [0.9, 0.5, 0.6, 1.0, 0.3, 0.7]])
    xs, ys = [], []
    for k in range(CLASSES):
        for _ in range(per_class):
            f = freq[k] * rng.uniform(0.9, 1.1, AXES)
            a = amp[k] * rng.uniform(0.8, 1.2, AXES)
            phase = rng.uniform(0, 2 * np.pi, AXES)
            x = a * np.sin(2 * np.pi * t[:, None] * f + phase) + rng.normal(0, 0.1, AXES)
            xs.append(x + rng.normal(0, 0.25, (WINDOW, AXES)))
            ys.append(k)
    return np.asarray(xs, np.float32), np.asarray(ys, np.int64)


def write_small_sensor(folder: Path, *, seed: int = 0, train_per_class: int = 10, test_per_class: int = 25,
                       search: dict | None = None) -> Path:
    """Write ``small_sensor.npz`` and ``small-sensor.yaml`` (the HAR example, path and classes changed) into
    ``folder``; returns the contract's path."""
    rng = np.random.default_rng(seed)
    x_tr, y_tr = sensor_windows(train_per_class, rng)
    x_te, y_te = sensor_windows(test_per_class, rng)
    np.savez(folder / "small_sensor.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    doc = yaml.safe_load((REPO / "examples" / "har-nrf52840.yaml").read_text())
    doc["name"] = "small-sensor"
    doc["task"]["data"]["path"] = str(folder / "small_sensor.npz")
    doc["task"]["classes"] = CLASSES
    if search:
        doc["search"].update(search)
    path = folder / "small-sensor.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
