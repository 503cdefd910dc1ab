"""``tango demo`` end to end in its reduced mode: trains a MiniLM pair, labels the sample corpus, reuses the cache."""
from __future__ import annotations

import json

from cli.main import cli, run


def test_quick_demo_runs_end_to_end_and_reuses_its_cache(tmp_path, capsys):
    args = ["demo", "--quick", "--cache-dir", str(tmp_path), "--json"]
    assert run(cli, args=args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "step 3/3" in captured.err and "distilling the small tier" in captured.err
    assert result["tier1_items"] + result["tier2_items"] == result["items"] == 88
    assert result["speedup"] > 0 and result["big_seconds"] > 0
    for key in ("cascade_accuracy", "big_accuracy", "small_accuracy"):
        assert 0.0 <= result[key] <= 100.0
    assert result["big_accuracy"] > 60.0  # MiniLM-L6 fine-tuned on 120 reviews is far above chance

    assert run(cli, args=args[:-1]) == 0
    captured = capsys.readouterr()
    assert "reusing the cached models" in captured.err
    assert "tier 1 (small, MiniLM 1 layer) decided" in captured.out and "speedup" in captured.out


def test_redis_url_is_refused_in_one_line(tmp_path, capsys):
    assert run(cli, args=["demo", "--redis-url", "redis://localhost:6379/0", "--cache-dir", str(tmp_path)]) == 2
    assert "--redis-url" in capsys.readouterr().err
