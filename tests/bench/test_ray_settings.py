"""The Ray peer's sweep: one setting at a time from Ray's advice, never a configuration that cannot run."""
from __future__ import annotations

import dataclasses

from bench.ray_settings import ADVISED, AXES, RaySettings, tune


def test_the_advice_fits_two_cores_and_every_axis_starts_from_it() -> None:
    assert ADVISED.fits(2)
    for field, values in AXES.items():
        assert getattr(ADVISED, field) in values, field


def test_pools_that_would_hold_every_cpu_or_cannot_start_are_left_out() -> None:
    assert not RaySettings(tier1=(2, 2), tier1_cpus=1.0).fits(2)  # no CPU left for tier 2 or a read task
    assert not RaySettings(tier1=(3, 1)).fits(2)  # min above max
    assert RaySettings(tier1=(1, 3), tier1_cpus=1.0, tier2_cpus=0.5).fits(2)  # autoscaling: only the least must fit


def test_each_axis_keeps_its_fastest_and_the_next_axis_starts_there() -> None:
    cost = {("batch", 4096): -3.0, ("model_batch", 64): -2.0, ("model_batch", 1000): 1.0}

    def run(s: RaySettings) -> float:
        return 10.0 + sum(c for (field, value), c in cost.items() if getattr(s, field) == value)

    best, seconds = tune(run, 2, axes={"batch": (1000, 4096), "model_batch": (256, 64, 1000)})
    assert best == dataclasses.replace(ADVISED, batch=4096, model_batch=64)
    assert seconds[best] == 5.0
    # the second axis ran at the first axis's winner, once per value, the shared point not again
    assert sorted(seconds.values()) == [5.0, 7.0, 8.0, 10.0]


def test_values_that_do_not_fit_are_never_run() -> None:
    ran: list[RaySettings] = []
    best, _ = tune(lambda s: ran.append(s) or 1.0, 2, axes={"tier1_cpus": (0.5, 1.0)},
                   start=RaySettings(tier1=(2, 2)))
    assert [s.tier1_cpus for s in ran] == [0.5] and best.tier1_cpus == 0.5
