"""A job's audit: from the counters in its record to the figures ``status`` and ``label`` report.

Tier 1 accepts some items (``tier1``) and escalates the rest (``tier2``); tier 2
also checks a seeded random sample of the accepted ones (``audited``, of which
``audit_agreed`` got its label). ``common.risk.audit_estimate`` turns these into
the agreement of the accepted items with tier 2, with an exact Clopper-Pearson
interval, and the agreement of the whole job, where an escalated item agrees by
definition (tier 2 answered it). Each check is one more item on tier 2, so the
load the job put on tier 2 counts the audits beside the escalated items.

This imports scipy (through ``common.risk``); the CLI imports it only in the
commands that report, so that ``submit`` starts fast.
"""
from __future__ import annotations

from dataclasses import dataclass

from common.queue.jobs import JobStatus
from common.risk import AuditEstimate, audit_estimate

CONFIDENCE = 0.95


@dataclass(frozen=True)
class AuditReport:
    """The audit's estimate plus the audit rate and the load it adds to tier 2."""

    rate: float
    estimate: AuditEstimate

    @property
    def answered(self) -> int:
        return self.estimate.accepted + self.estimate.escalated

    @property
    def escalated_share(self) -> float | None:
        return self.estimate.escalated / self.answered if self.answered else None

    @property
    def audited_share(self) -> float | None:
        return self.estimate.audited / self.answered if self.answered else None

    @property
    def tier2_load(self) -> float | None:
        """Items run on tier 2 per answered item: the escalated ones plus the audit's checks."""
        return (self.estimate.escalated + self.estimate.audited) / self.answered if self.answered else None

    def to_dict(self) -> dict:
        return {"rate": self.rate, **self.estimate.to_dict(), "tier2_load": self.tier2_load,
                "escalated_share": self.escalated_share, "audited_share": self.audited_share}

    def lines(self) -> list[str]:
        """``status``'s lines (also ``label``'s), aligned like the rest of the status."""
        e = self.estimate
        out = []
        if self.answered:
            out.append(f"load      tier-2 load {self.tier2_load:.1%} ({self.escalated_share:.1%} escalated + "
                       f"{self.audited_share:.1%} audited)")
        if not e.audited:
            out.append("audit     off (--audit 0)" if self.rate <= 0 else
                       f"audit     rate {self.rate:g}: no checks answered yet")
            return out
        out.append(f"audit     rate {self.rate:g}: tier 2 checked {e.audited} of {e.accepted} accepted items, "
                   f"agreed on {e.agreed}")
        out.append(f"agreement with tier 2, {e.confidence:.0%} interval: accepted items "
                   f"{_interval(e.accepted_agreement, e.accepted_low, e.accepted_high)}, whole job "
                   f"{_interval(e.job_agreement, e.job_low, e.job_high)}")
        return out


def audit_report(rate: float, accepted: int, escalated: int, audited: int, agreed: int,
                 confidence: float = CONFIDENCE) -> AuditReport:
    """The report for counts of a job or of an in-process run."""
    return AuditReport(rate, audit_estimate(accepted, escalated, audited, agreed, confidence))


def job_audit(status: JobStatus, confidence: float = CONFIDENCE) -> AuditReport:
    """The report for a job's counters. Tier 1 sends an audit item on before it stores its answer,
    so for a moment tier 2's check can be counted before the answer: the accepted count is then
    at least the checked one."""
    return audit_report(status.audit, max(status.tier1, status.audited), status.tier2, status.audited,
                        status.audit_agreed, confidence)


def promise_line(guarantee, report: AuditReport | None) -> str:
    """The certified bound on the rest (``common.guarantee.Guarantee``) beside what the audit measured there.

    ``report`` counts the items outside the calibration sample only: the
    bound is on their share, and the audit's whole-job disagreement is that share.
    """
    what = "disagreement with the big model" if guarantee.loss == "disagreement" else "accuracy drop"
    line = (f"promise   {what} outside the sample at most {guarantee.bound:.4f} (target {guarantee.max_loss:g}, "
            f"{guarantee.confidence:.0%} confidence)")
    e = report.estimate if report else None
    if e is None or not e.audited or e.job_low is None or e.job_high is None:
        return line + "; the audit measured nothing (no checks)"
    return (line + f"; the audit measured disagreement {1 - e.job_agreement:.4f} "
            f"[{1 - e.job_high:.4f}, {1 - e.job_low:.4f}] ({e.confidence:.0%} interval)")


def _interval(point: float | None, low: float | None, high: float | None) -> str:
    if point is None or low is None or high is None:
        return "n/a"
    return f"{point:.4f} [{low:.4f}, {high:.4f}]"


def quality_report(status: JobStatus) -> dict | None:
    """A job's quality target and where it stands (``status --json``): its phase, the sample answered so
    far, then the certified threshold, bound and expected tier-2 share; at the end the audit's interval on
    the rest beside the bound. None for a job run at a given threshold."""
    from common.queue.calibration import JobCalibration, guarantee_of

    calibration = JobCalibration.of(status)
    if calibration is None:
        return None
    phase = status.extra.get("phase") or ("no gain" if not calibration.size else "")
    out = {"phase": phase, "target": calibration.target.as_dict(), "sample_size": calibration.size,
           "sampled": min(status.answered, calibration.size) if phase == "calibrating" else calibration.size,
           "sample_cost": calibration.sample_cost, "expected_saving": calibration.expected_saving,
           "reason": calibration.reason, "guarantee": None, "audit": None}
    guarantee = guarantee_of(status)
    if guarantee is not None:
        out["guarantee"] = guarantee.as_dict()
        if status.is_final:
            out["audit"] = rest_audit(status, calibration.size).to_dict()
    return out


def rest_audit(status: JobStatus, sample: int, confidence: float = CONFIDENCE) -> AuditReport:
    """The audit's report on the items outside the calibration sample (all of whose answers are tier 2's)."""
    return audit_report(status.audit, max(status.tier1, status.audited), max(status.tier2 - sample, 0),
                        status.audited, status.audit_agreed, confidence)


def quality_lines(status: JobStatus) -> list[str]:
    """``status``'s lines for a job with a quality target."""
    from common.queue.calibration import guarantee_of

    report = quality_report(status)
    if report is None:
        return []
    target = report["target"]
    what = "disagreement" if target["loss"] == "disagreement" else "accuracy drop"
    aim = f"{what} at most {target['max_loss']:g} at {target['confidence']:.0%} confidence"
    if report["phase"] == "no gain":
        return [f"quality   {aim}: no sample ({report['reason']}); every item runs on tier 2"]
    if report["phase"] == "calibrating":
        return [f"quality   {aim}: calibrating, {report['sampled']} of {report['sample_size']} sample items "
                f"answered by both tiers (they cost about {report['sample_cost']:.0f} big-model items; expected "
                f"saving {report['expected_saving']:.0f})"]
    guarantee = guarantee_of(status)
    lines = [f"quality   {aim}, sample of {report['sample_size']}: {guarantee.describe()}"]
    if status.is_final:
        lines.append(promise_line(guarantee, rest_audit(status, report["sample_size"])))
    return lines
