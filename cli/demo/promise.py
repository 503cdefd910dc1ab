"""The demo's job-level promise: what a job with a quality target would certify on this corpus.

``tango label --max-disagreement D --seed demo`` (or a cluster job with id ``demo``) sends a seeded
sample of its corpus through both tiers, certifies the threshold on it and labels the rest at that
threshold. The demo has already run both tiers on every corpus item, so it replays that job on those
scores (the same ``certify_target`` on the same sample) at no extra model cost, and shows what the
sample cost and what it bought: the certified bound, the disagreement measured on the rest, and the
speed against the big model alone with the sample included. A corpus too small to pay for its sample
(the shipped reviews) is said to be so, as the job would say it.
"""
from __future__ import annotations

import numpy as np

SEED = "demo"


def job_promise(confidence: np.ndarray, small_ids: np.ndarray, big_ids: np.ndarray, num_labels: int,
                max_disagreement: float, level: float, cost_ratio: float) -> dict:
    """The job's plan, certified threshold and measured outcome on these per-item scores, as data."""
    from common.guarantee import QualityTarget, certify_target
    from common.sampling import calibration_sample

    total = len(big_ids)
    target = QualityTarget(max_disagreement, level)
    plan = target.plan(total, min(max(cost_ratio, 0.0), 0.99))
    out = {"max_disagreement": max_disagreement, "confidence": level, "items": total, "sample": plan.size,
           "cost_ratio": cost_ratio, "reason": plan.reason}
    if not plan.size:
        return out
    sample = calibration_sample(total, plan.size, SEED)
    guarantee = certify_target(confidence[sample], small_ids[sample], big_ids[sample], total, target, num_labels)
    rest = np.setdiff1d(np.arange(total), sample)
    accepted = (confidence[rest] >= guarantee.threshold) & (guarantee.threshold < 1.0)
    tier2 = float(1.0 - accepted.mean())
    cost = plan.size * (1.0 + cost_ratio) + len(rest) * (cost_ratio + tier2)
    return {**out, "threshold": guarantee.threshold, "bound": guarantee.bound,
            "sample_cost": plan.size * (1.0 + cost_ratio),
            "rest_disagreement": float((accepted & (small_ids[rest] != big_ids[rest])).mean()),
            "rest_tier2": tier2, "speedup": total / cost}


def promise_lines(promise: dict) -> list[str]:
    """What the demo prints about the job-level promise."""
    if not promise:
        return []
    aim = (f"job promise (`tango label --max-disagreement {promise['max_disagreement']:g} --seed {SEED}`): "
           f"disagreement with the big model at most {promise['max_disagreement']:.0%} at "
           f"{promise['confidence']:.0%} confidence")
    if not promise["sample"]:
        return [f"  {aim}: {promise['reason']}; such a job runs every item on tier 2"]
    held = "within" if promise["rest_disagreement"] <= promise["max_disagreement"] else "outside"
    return [f"  {aim}:",
            f"    the sample: {promise['sample']} of {promise['items']} items through both tiers, costing about "
            f"{promise['sample_cost']:.0f} big-model items (their labels are the big model's)",
            f"    bought: threshold {promise['threshold']:.4g} certified with disagreement at most "
            f"{promise['bound']:.2%} on the rest; measured there {promise['rest_disagreement']:.2%} ({held} the "
            f"target), {promise['rest_tier2']:.0%} sent to tier 2",
            f"    the whole job, sample included: {promise['speedup']:.2f}x the big model alone (from the measured "
            f"cost ratio {promise['cost_ratio']:.2f})"]
