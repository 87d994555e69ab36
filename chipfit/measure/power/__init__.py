"""Power meters: energy per inference, measured.

Two ways to get a measured energy figure:

- :class:`RaplMeter` reads the Linux powercap (Intel/AMD RAPL) package counters before and after a run of
  inferences on this machine. It meters the whole CPU package, so other processes count too.
- A **trace** from an external meter (Joulescope, Otii, a bench supply logger) exported as CSV:
  :func:`load_trace` reads it into a :class:`PowerTrace`, :func:`energy_per_inference` integrates power over the
  inference windows the host recorded, and :func:`align_offset` estimates the offset between the host clock and
  the meter's clock. :class:`TraceMeter` records the windows while running the model and computes the energy
  once the trace file exists.

Every figure comes back as an :class:`EnergyReading` whose ``method`` says how it was obtained.

>>> import numpy as np
>>> t = np.linspace(0.0, 1.0, 1001)                        # 1 kHz trace, 1 s
>>> p = np.where((t >= 0.2) & (t < 0.3), 0.25, 0.05)       # 250 mW for 100 ms, 50 mW otherwise
>>> trace = PowerTrace(time_s=t, power_w=p, source="example")
>>> r = energy_per_inference(trace, [(0.2, 0.299)])
>>> round(r.energy_mj_per_inference, 2), r.inferences, r.source
(24.75, 1, 'measured')
"""

from chipfit.measure.power.csvtrace import load_trace
from chipfit.measure.power.rapl import RaplMeter, RaplZone
from chipfit.measure.power.reading import EnergyReading, PowerMeter
from chipfit.measure.power.trace import PowerTrace, align_offset, energy_per_inference
from chipfit.measure.power.tracemeter import TraceMeter

__all__ = [
    "EnergyReading",
    "PowerMeter",
    "PowerTrace",
    "RaplMeter",
    "RaplZone",
    "TraceMeter",
    "align_offset",
    "energy_per_inference",
    "load_trace",
]
