"""Battery life under a duty cycle, and the energy budget per inference it implies.

Average power = energy per inference x rate + sleep power x (1 - share of time spent inferring).
A battery of C mAh at V volts holds C x V x 3.6 J.

>>> from chipfit.contract.schema import DutyCycle
>>> d = DutyCycle(inferences_per_second=1, battery_mah=1000, battery_volts=3.0, min_battery_days=30)
>>> round(energy_budget_mj(d, sleep_power_uw=10.0), 3)
4.157
>>> round(battery_days(4.157, 10.0, d, sleep_power_uw=10.0), 1)
30.0
"""

from __future__ import annotations

from chipfit.contract.schema import DutyCycle


def battery_mj(duty: DutyCycle) -> float:
    return duty.battery_mah * duty.battery_volts * 3600.0  # mAh x V = mWh; x 3600 s = mJ


def battery_days(energy_mj: float, latency_ms: float, duty: DutyCycle, *, sleep_power_uw: float) -> float:
    """Days of operation at ``energy_mj`` per inference under ``duty``."""
    rate = duty.rate_hz
    busy = min(1.0, rate * latency_ms / 1e3)
    avg_mw = energy_mj * rate + sleep_power_uw / 1e3 * (1.0 - busy)
    return float("inf") if avg_mw <= 0 else battery_mj(duty) / avg_mw / 86400.0


def energy_budget_mj(duty: DutyCycle, *, sleep_power_uw: float) -> float:
    """Largest energy per inference (mJ) that still lasts ``min_battery_days``; <= 0 when sleep alone
    drains the battery too soon (the inference time's share of sleep is conservatively ignored)."""
    avg_mw = battery_mj(duty) / (duty.min_battery_days * 86400.0)
    return (avg_mw - sleep_power_uw / 1e3) / duty.rate_hz
