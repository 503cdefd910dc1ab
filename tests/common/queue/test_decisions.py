"""The tiers' pure decisions: what tier 1 answers, forwards and sends for audit; what tier 2 answers or checks."""
from __future__ import annotations

import numpy as np

from common.queue.decisions import decide_tier1, decide_tier2
from common.queue.messages import Chunk, WorkItem
from common.sampling import audit_mask

LABELS = ("negative", "positive")
OUTPUTS = np.array([0, 1])
N = 400


def tier1_chunk(audit: float) -> tuple[Chunk, np.ndarray]:
    """Items at positions 1000.. whose confidence alternates: even ones sure (0.95), odd ones not (0.6)."""
    items = tuple(WorkItem(1000 + n, f"id{n}", f"text {n}") for n in range(N))
    sure = np.array([n % 2 == 0 for n in range(N)])
    positive = np.where(sure, 0.95, 0.6)
    probs = np.stack([np.where(np.arange(N) % 4 == 0, 1 - positive, positive),
                      np.where(np.arange(N) % 4 == 0, positive, 1 - positive)], axis=1)
    return Chunk("job-a", 3, 1, 0.9, LABELS, items, audit=audit), probs


def test_tier1_sends_the_audit_share_of_its_answers_on_and_keeps_their_records():
    chunk, probs = tier1_chunk(audit=0.25)
    decision = decide_tier1(chunk, probs, OUTPUTS, "small")
    answered = [index for index, _, _ in decision.entries]
    assert answered == [1000 + n for n in range(0, N, 2)]
    assert [item.index for item in decision.forward] == [1000 + n for n in range(1, N, 2)]
    assert all(item.audit is None for item in decision.forward)
    expected = np.array(answered)[audit_mask("job-a", np.array(answered), 0.25)]
    assert [item.index for item in decision.audit] == expected.tolist()
    assert 0.15 * len(answered) < len(expected) < 0.35 * len(answered)
    labels = {index: record.label for index, record, _ in decision.entries}
    assert all(item.audit == labels[item.index] for item in decision.audit)
    assert {item.audit for item in decision.audit} == {"negative", "positive"}
    assert all(record.tier == 1 for _, record, _ in decision.entries)


def test_tier1_without_a_rate_audits_nothing():
    chunk, probs = tier1_chunk(audit=0.0)
    decision = decide_tier1(chunk, probs, OUTPUTS, "small")
    assert decision.audit == [] and len(decision.entries) == N // 2


def test_tier2_checks_audit_items_and_answers_the_rest():
    items = (WorkItem(0, "a", "t0"), WorkItem(1, "b", "t1"))
    checks = (WorkItem(5, "c", "t5", audit="positive"), WorkItem(6, "d", "t6", audit="positive"))
    probs = np.array([[0.2, 0.8], [0.7, 0.3]])
    answered = decide_tier2(Chunk("job-a", 3, 2, 0.9, LABELS, items), probs, OUTPUTS, "big")
    assert [(i, r.label, r.tier) for i, r, _ in answered.entries] == [(0, "positive", 2), (1, "negative", 2)]
    assert answered.outcomes == []
    checked = decide_tier2(Chunk("job-a", 3, 2, 0.9, LABELS, checks), probs, OUTPUTS, "big")
    assert checked.entries == [] and checked.forward == [] and checked.audit == []
    assert [(o.index, o.tier1, o.tier2, o.agrees) for o in checked.outcomes] == \
        [(5, "positive", "positive", True), (6, "positive", "negative", False)]
