"""The Ray Data settings ``peer_ray.py`` tunes, Ray's documented advice as the starting point, and the
sweep that moves one setting at a time from there and keeps whichever is fastest.

Ray's docs advise, for CPU batch inference with ``map_batches``:
- a callable class on an actor pool (``compute=ActorPoolStrategy``), fixed (``size``) or autoscaling
  (``min_size``/``max_size``), so a model loads once per actor (Ray Data "Transforming data",
  ``ActorPoolStrategy``);
- ``num_cpus`` per stage, fractional where a stage does not need a whole core, so that the read tasks,
  both actor pools and the write tasks fit the node together and overlap (Ray Data "Performance
  tips": "Tuning read resources", ``num_cpus`` below 1 on reads; ``map_batches(num_cpus=...)``);
- a ``batch_size`` that suits the model, and the reads' ``override_num_blocks`` tuned by hand when
  the default block count does not suit the job (Ray Data "Performance tips", "Tuning output blocks
  for read");
- ``max_tasks_in_flight_per_actor`` of 2 or more to prefetch inputs while an actor computes, 1 to
  cut queueing (``ActorPoolStrategy``), and ``max_concurrent_calls_per_actor`` above 1 to batch inputs
  and outputs while the model runs (``ActorPoolStrategy``);
- ``preserve_order`` left off ("Execution configurations": on, it may decrease performance);
- as many logical CPUs as the node has cores (``ray.init(num_cpus=...)``), the stages sharing them
  through their fractional requests (Ray Core "Pattern: Using resources to limit the number of
  concurrently running tasks": resources are logical, requests set what runs at once).

Pages (docs.ray.io/en/latest/...): data/performance-tips.html, data/execution-configurations.html,
data/transforming-data.html, data/api/doc/ray.data.ActorPoolStrategy.html,
data/api/doc/ray.data.Dataset.map_batches.html, data/api/doc/ray.data.read_json.html,
ray-core/patterns/limit-running-tasks.html. Not a tuning knob but set in ``peer_ray.py``: Ray runs its
workers at nice 15 (ray-project/ray#24928) unless ``RAY_worker_niceness`` says otherwise.

No Ray import here: the settings and the sweep are plain data, tested without a Ray cluster.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

Pool = tuple[int, int]  # (min, max) actors; equal ends: a fixed pool


@dataclasses.dataclass(frozen=True)
class RaySettings:
    """One configuration of the Ray pipeline: its actor pools, CPU shares, batch and block sizes."""

    tier1: Pool = (2, 2)
    tier2: Pool = (1, 1)
    tier1_cpus: float = 0.5
    tier2_cpus: float = 0.5
    io_cpus: float = 0.25  # each read task and each write task
    batch: int = 1000
    model_batch: int = 256
    blocks: int | None = None  # override_num_blocks on the read; None: Ray picks
    in_flight: int | None = None  # max_tasks_in_flight_per_actor; None: Ray's default (2)
    calls: int | None = None  # max_concurrent_calls_per_actor; None: Ray's default (1)

    def fits(self, cores: int) -> bool:
        """Whether both pools at their least and one read or write task fit ``cores`` logical CPUs:
        a pool that cannot start, or actors holding every CPU, leave the pipeline waiting forever."""
        held = self.tier1[0] * self.tier1_cpus + self.tier2[0] * self.tier2_cpus
        return self.tier1[0] <= self.tier1[1] and self.tier2[0] <= self.tier2[1] and held + self.io_cpus <= cores

    def describe(self) -> str:
        pool = lambda p: str(p[0]) if p[0] == p[1] else f"{p[0]}-{p[1]}"
        return (f"tier 1 {pool(self.tier1)} x {self.tier1_cpus:g} CPU, tier 2 {pool(self.tier2)} x "
                f"{self.tier2_cpus:g} CPU, read/write {self.io_cpus:g} CPU, {self.batch}-row batches, model "
                f"batch {self.model_batch}, blocks {self.blocks or 'auto'}, in flight {self.in_flight or 'default'}, "
                f"calls {self.calls or 'default'}")


ADVISED = RaySettings()

# Each axis: the field and the values tried, the advised one among them. Order matters: the pools and
# their CPU shares first (they decide what runs at once), then the sizes, then the finer knobs.
AXES: dict[str, tuple] = {
    "tier1": ((1, 1), (2, 2), (1, 2), (1, 3)),
    "tier1_cpus": (0.5, 0.75, 1.0),
    "tier2": ((1, 1), (1, 2)),
    "tier2_cpus": (0.25, 0.5),
    "io_cpus": (0.1, 0.25, 0.5),
    "batch": (1000, 4096, 256),
    "model_batch": (256, 64, 1000),
    "blocks": (None, 8, 32),
    "in_flight": (None, 1, 4),
    "calls": (None, 2),
}


def tune(run: Callable[[RaySettings], float], cores: int, start: RaySettings = ADVISED,
         axes: dict[str, Iterable] | None = None) -> tuple[RaySettings, dict[RaySettings, float]]:
    """Coordinate descent from ``start``: for each axis in turn, time every value that fits ``cores``
    with the other settings at the best so far, and keep the fastest. Each configuration runs once
    (a repeat comes from the cache). Returns the fastest and every configuration's seconds.

    One axis at a time, not their product: the full product is thousands of runs, and the axes
    interact little once the pools fit the cores."""
    seconds: dict[RaySettings, float] = {}
    best = start
    for field, values in (AXES if axes is None else axes).items():
        for value in values:
            candidate = dataclasses.replace(best, **{field: value})
            if candidate.fits(cores) and candidate not in seconds:
                seconds[candidate] = run(candidate)
        best = min((s for s in seconds if _differs_at_most(s, best, field)), key=seconds.get, default=best)
    return best, seconds


def _differs_at_most(candidate: RaySettings, best: RaySettings, field: str) -> bool:
    """Whether ``candidate`` equals ``best`` on every field but ``field`` (so was timed on this axis)."""
    return dataclasses.replace(candidate, **{field: getattr(best, field)}) == best
