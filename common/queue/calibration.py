"""A job's calibration phase in the cluster: its seeded sample through both tiers, then its threshold fixed once.

A job submitted with a quality target (``common.guarantee.QualityTarget``) records the target, its
sample size N and the sample's cutoff (``common.sampling.calibration_cutoff`` keyed by the job id,
so ``tango label --seed JOB`` draws the same items) and starts in phase ``calibrating`` at threshold
1.0. Whoever feeds it (submit, resume, or the workers' sweep for a job whose submit is gone) first
queues the sample alone, in calibration chunks: tier 1 answers none of their items and forwards each
with its own answer; tier 2's answer is the item's result, and tier 2 stores the triple (tier-1
confidence and label, tier-2 label, gold) before it. Only sample items are fed in this phase, so
once the job's answered count reaches N its feeder reads the triples, certifies the threshold with
``certify_target`` (the function ``tango label`` calls) and fixes it with ``lua.FIX_THRESHOLD``: the
first fix wins, and any later computation agrees, since it is deterministic. The rest of the corpus
is then fed at that threshold, with the audit on.

A sample item that failed has no triple; it counts as a loss at every threshold, which can only
make the certified bound more conservative.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import redis

from common.errors import ConfigError
from common.labels import gold_names
from common.queue.keys import calibration_key, meta_key
from common.sampling import calibration_keys, calibration_sample

if TYPE_CHECKING:  # common.guarantee imports scipy: a worker (which stores triples) never pays for it
    from redis.commands.core import Script

    from common.data.corpus import Item
    from common.guarantee import Guarantee
    from common.target import QualityTarget
    from common.queue.jobs import JobStatus
    from common.queue.decisions import Triple

CALIBRATING = "calibrating"
CERTIFIED = "certified"
_BLOCK = 4096


@dataclass(frozen=True)
class JobCalibration:
    """What a job's record keeps of its calibration (its ``calibration`` field, as JSON)."""

    target: "QualityTarget"
    size: int  # N; 0 when the corpus is too small to gain: every item then runs on tier 2
    cutoff: int  # ``calibration_cutoff`` of the job id: an item is in the sample when its key is at most this
    cost_ratio: float
    sample_cost: float = 0.0
    expected_saving: float = 0.0
    reason: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def of(cls, status: "JobStatus") -> "JobCalibration | None":
        """The job's calibration, or None for a job run at a given threshold."""
        from common.target import QualityTarget

        raw = status.extra.get("calibration")
        if not raw:
            return None
        fields = json.loads(raw)
        return cls(**{**fields, "target": QualityTarget(**fields["target"])})


class SampleMembers:
    """Whether each position is in a job's sample, for a reader walking the corpus in order: the keyed
    hash is computed a block of positions at a time, not once per item."""

    def __init__(self, seed: str, cutoff: int) -> None:
        self.seed, self.cutoff = seed, cutoff
        self._start, self._mask = -1, np.zeros(0, bool)

    def __contains__(self, index: int) -> bool:
        if not self._start <= index < self._start + len(self._mask):
            self._start = index - index % _BLOCK
            keys = calibration_keys(self.seed, np.arange(self._start, self._start + _BLOCK))
            self._mask = keys <= np.uint64(self.cutoff) if self.cutoff >= 0 else np.zeros(_BLOCK, bool)
        return bool(self._mask[index - self._start])


def sample_below(seed: str, cutoff: int, stop: int) -> int:
    """How many sample items lie before position ``stop``."""
    if cutoff < 0 or stop <= 0:
        return 0
    return sum(int((calibration_keys(seed, np.arange(s, min(stop, s + (1 << 20)))) <= np.uint64(cutoff)).sum())
               for s in range(0, stop, 1 << 20))


def in_flight(status: "JobStatus") -> int:
    """Items of the job queued and not yet answered, from its queued mark (``fed``, a position in the
    corpus) and its answered count; in the calibration phase only sample items are fed, after it only
    the rest (every sample item is answered by then)."""
    calibration = JobCalibration.of(status)
    if calibration is None or not calibration.size:
        return status.fed - status.answered
    below = sample_below(status.job, calibration.cutoff, status.fed)
    if status.extra.get("phase") == CALIBRATING:
        return below - status.answered
    return (status.fed - below) - (status.answered - calibration.size)


_LOSS = (1.0, 0, 1, 1)  # accepted at every threshold, another label than tier 2's, wrong where tier 2 is right


def certify_job(status: "JobStatus", calibration: JobCalibration, triples: dict[int, tuple]) -> "Guarantee":
    """``certify_target`` on the job's triples; a sample item without one (it failed) counts as a loss."""
    from common.guarantee import certify_target

    labels = list(status.labels)
    drop = calibration.target.loss == "drop"
    sample = calibration_sample(status.total, calibration.size, status.job)
    ids = np.array([_ids(triples.get(int(i)), labels, drop) for i in sample], dtype=float).reshape(-1, 4)
    confidence, small, big, gold = ids[:, 0], ids[:, 1].astype(int), ids[:, 2].astype(int), ids[:, 3].astype(int)
    return certify_target(confidence, small, big, status.total, calibration.target, max(len(labels), 2),
                          gold if drop else None)


def _ids(row: tuple | None, labels: list[str], drop: bool) -> tuple[float, int, int, int]:
    """A triple in label ids; a missing one, or one naming no label of the job, is a loss."""
    if row is None or row[1] not in labels or row[2] not in labels:
        return _LOSS
    confidence, small, big, gold = row
    named = gold_names(gold, labels) if gold else None
    if named is None and drop:  # submit refuses a --max-drop sample without gold; a loss if one slips by
        return _LOSS
    return confidence, labels.index(small), labels.index(big), labels.index(named) if named else 0


class CalibrationRecords:
    """The calibration part of ``ResultStore`` (which supplies ``client`` and the scripts)."""

    client: redis.Redis
    _fix_threshold: "Script"

    def record_calibration(self, job: str, triples: "list[Triple]") -> None:
        """Keep each sample item's triple (tier 2, before the items' results are written)."""
        if triples:
            self.client.hset(calibration_key(job), mapping={
                str(index): f"{confidence!r}\t{small}\t{big}\t{gold or ''}"
                for index, confidence, small, big, gold in triples})

    def calibration_triples(self, job: str) -> dict[int, tuple[float, str, str, str]]:
        out = {}
        for index, raw in self.client.hgetall(calibration_key(job)).items():
            confidence, small, big, gold = raw.split("\t", 3)
            out[int(index)] = (float(confidence), small, big, gold)
        return out

    def fix_threshold(self, job: str, guarantee: "Guarantee") -> tuple[float, dict] | None:
        """Fix the job's threshold unless another feeder did first; returns the one that stands."""
        stored = self._fix_threshold(keys=[meta_key(job)], args=[repr(guarantee.threshold),
                                                                 json.dumps(guarantee.as_dict())])
        if not stored:
            return None
        threshold, raw = stored
        return float(threshold), json.loads(raw) if raw else {}


def plan(target: "QualityTarget", job: str, models: tuple[str | None, str | None], labels: list[str], total: int,
         read: Callable[[], Iterator["Item"]]) -> JobCalibration:
    """The job's sample, sized as ``tango label`` sizes it for the same two models (so ``--seed JOB`` there
    draws these items; without both models, at ``DEFAULT_COST_RATIO``); with --max-drop, every sample
    item's gold label is checked (``read`` reads the corpus), before anything is recorded."""
    from common.guarantee import DEFAULT_COST_RATIO, model_cost_ratio
    from common.labels import model_config
    from common.queue.inprocess import pick_sample, sample_gold
    from common.sampling import calibration_cutoff

    small, big = models
    ratio = model_cost_ratio(model_config(small), model_config(big)) if small and big else DEFAULT_COST_RATIO
    planned = target.plan(total, ratio)
    if planned.size and target.loss == "drop":
        if not labels:
            raise ConfigError("--max-drop needs the job's labels at submit (--labels, or --small and --big) to "
                              "check the sample's gold labels")
        sample_gold(pick_sample(read(), total, planned.size, job), labels)
    return JobCalibration(target, planned.size, calibration_cutoff(total, planned.size, job), ratio,
                          planned.sample_cost, planned.expected_saving, planned.reason)


def await_threshold(store, job: str) -> float | None:
    """Wait, renewing the feeder's lease, until the job's sample is answered; then certify and fix its
    threshold (or find it fixed). None when the job ended first. The wait may be long (the sample waits
    for workers), so it rides out a Redis restart as ``tango wait`` does, rather than leaving the job to
    the sweep."""
    from common.queue.waiting import poll
    from common.queue.window import MAX_POLL, Window

    window = Window(store, job, 0, CALIBRATING)
    delay = 0.005
    while True:
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):  # the poll below waits it out
            window.beat()
        status = poll(store, job)
        if status.is_final:
            return None
        threshold = finish(store, status)
        if threshold is not None:
            return threshold
        time.sleep(delay)
        delay = min(delay * 2, MAX_POLL)


def finish(store, status: "JobStatus") -> float | None:
    """Certify and fix a calibrating job's threshold once all its sample is answered; returns the
    threshold that stands (None while the sample is still out, or when the job is gone)."""
    calibration = JobCalibration.of(status)
    if calibration is None or status.extra.get("phase") != CALIBRATING:
        return status.threshold
    if status.answered < calibration.size:
        return None
    guarantee = certify_job(status, calibration, store.calibration_triples(status.job))
    fixed = store.fix_threshold(status.job, guarantee)
    return None if fixed is None else fixed[0]


def guarantee_of(status: "JobStatus") -> "Guarantee | None":
    """The job's fixed guarantee, once certified."""
    from common.guarantee import Guarantee

    raw = status.extra.get("guarantee")
    if not raw:
        return None
    fields = json.loads(raw)
    fields.pop("job_bound", None)
    return Guarantee(**fields)


def provenance(status: "JobStatus") -> dict:
    """What ``tango results`` writes beside its output: the models named at submit and their revisions
    then, the threshold every item outside the calibration sample was decided at (sample items are tier
    2's), the temperature where a local model saved one, and the quality target (D, C, N) with the
    certified bound, when the job had one. Each result's own ``model`` says which worker answered it."""
    small, big = status.extra.get("small", ""), status.extra.get("big", "")
    calibration = JobCalibration.of(status)
    guarantee = guarantee_of(status)
    return {"job": status.job, "state": status.state, "total": status.total, "labels": status.labels,
            "models": {"small": small, "big": big},
            "revisions": {tier: status.extra.get(f"{tier}_revision") or None for tier in ("small", "big")},
            "temperature": {"small": _temperature(small)},
            "threshold": status.threshold, "audit": status.audit,
            "target": calibration.target.as_dict() if calibration else None,
            "calibration_sample": calibration.size if calibration else 0,
            "calibration_seed": status.job if calibration else None,
            "guarantee": guarantee.as_dict() if guarantee else None}


def _temperature(model: str) -> float | None:
    """The calibration temperature saved beside a local model (``tango calibrate``), or None."""
    from pathlib import Path

    path = Path(model) / "tango_calibration.json" if model else None
    try:
        return float(json.loads(path.read_text())["temperature"]) if path and path.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
