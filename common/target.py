"""A job's quality target as its user states it, checked without scipy, so ``submit`` starts fast.

``common.guarantee`` plans the sample and certifies the threshold for it; this module only holds
the target and the checks that refuse a bad one in one line, before anything is read or recorded.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from common.errors import GuaranteeError

if TYPE_CHECKING:
    from common.guarantee import CalibrationPlan

LOSS_OPTIONS = {"disagreement": "--max-disagreement", "drop": "--max-drop"}
DEFAULT_CONFIDENCE = 0.9


def check_target(max_loss: float, confidence: float, loss: str = "disagreement") -> None:
    """D in (0, 1) and C in (0.5, 1): outside them the promise is empty or is a coin flip."""
    option = _option(loss)
    if not 0.0 < max_loss < 1.0:
        raise GuaranteeError(f"{option} must be a share between 0 and 1 (exclusive), got {max_loss:g}")
    if not 0.5 < confidence < 1.0:
        raise GuaranteeError(f"--confidence must be between 0.5 and 1 (exclusive), got {confidence:g}")


def calibration_value(value: str | int) -> int | None:
    """``--calibration`` as given: a positive number of items, or None for ``auto``."""
    if str(value).strip().lower() == "auto":
        return None
    try:
        size = int(str(value).strip())
    except (TypeError, ValueError):
        raise GuaranteeError(f"--calibration must be a number of items or 'auto', got {value!r}") from None
    if size < 1:
        raise GuaranteeError(f"--calibration must be at least 1 item (or 'auto'), got {size}")
    return size


@dataclass(frozen=True)
class QualityTarget:
    """A job's promise as its user states it (``--max-disagreement`` or ``--max-drop``, ``--confidence``,
    ``--calibration``, ``--require-gain``), checked once so ``label``, ``submit`` and ``sweep`` agree."""

    max_loss: float
    confidence: float = DEFAULT_CONFIDENCE
    calibration: str = "auto"
    loss: str = "disagreement"
    require_gain: bool = False

    @property
    def option(self) -> str:
        return _option(self.loss)

    def plan(self, total: int, cost_ratio: float) -> "CalibrationPlan":
        """The sample for a corpus of ``total`` items; no expected gain is refused under ``--require-gain``."""
        from common.guarantee import resolve_calibration  # scipy: only a job that plans pays its import

        plan = resolve_calibration(self.calibration, total, self.max_loss, self.confidence, cost_ratio,
                                   loss=self.loss)
        if self.require_gain and not plan.gain:
            raise GuaranteeError(f"--require-gain: {plan.reason}")
        return plan

    def as_dict(self) -> dict:
        return asdict(self)


def quality_target(threshold: float | None, max_disagreement: float | None, max_drop: float | None,
                   confidence: float | None, calibration: str | None, require_gain: bool) -> QualityTarget | None:
    """The command line's target, or None for a job run at a threshold; each conflict is one line."""
    if max_disagreement is not None and max_drop is not None:
        raise GuaranteeError("--max-disagreement and --max-drop are exclusive: a job certifies one of them")
    loss, max_loss = ("drop", max_drop) if max_drop is not None else ("disagreement", max_disagreement)
    if max_loss is None:
        extra = [name for name, given in (("--confidence", confidence is not None),
                                          ("--calibration", calibration is not None),
                                          ("--require-gain", require_gain)) if given]
        if extra:
            raise GuaranteeError(f"{extra[0]} needs a quality target: --max-disagreement D or --max-drop D")
        return None
    if threshold is not None:
        raise GuaranteeError(f"{_option(loss)} and --threshold are exclusive: name the quality and the job "
                             "certifies its threshold, or give the threshold")
    target = QualityTarget(float(max_loss), DEFAULT_CONFIDENCE if confidence is None else float(confidence),
                           "auto" if calibration is None else str(calibration).strip().lower(), loss, require_gain)
    check_target(target.max_loss, target.confidence, loss)
    calibration_value(target.calibration)
    return target


def _option(loss: str) -> str:
    if loss not in LOSS_OPTIONS:
        raise GuaranteeError(f"the loss must be one of {', '.join(LOSS_OPTIONS)}, got {loss!r}")
    return LOSS_OPTIONS[loss]
