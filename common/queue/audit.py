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


def _interval(point: float | None, low: float | None, high: float | None) -> str:
    if point is None or low is None or high is None:
        return "n/a"
    return f"{point:.4f} [{low:.4f}, {high:.4f}]"
