"""Workers SIGKILLed mid-job, on a real redis-server with real celery workers: nothing lost, nothing twice."""
from __future__ import annotations

from common.testing.chaos import chaos_scenario

N_ITEMS = 5000
KILLS_PER_TIER = 3  # two pool processes, then a whole worker


def test_killed_workers_lose_nothing_and_count_nothing_twice(tiny_models, glue_dir, tmp_path, capsys):
    texts = [row.split("\t")[0] for row in (glue_dir / "sst2" / "train.tsv").read_text().splitlines()[1:2001]]
    # a short visibility timeout brings a killed worker's task back within seconds
    figures = chaos_scenario(tmp_path, tiny_models, texts, N_ITEMS, KILLS_PER_TIER, 10, 4.0)
    with capsys.disabled():
        print("\n" + figures.report())
    assert figures.kills == 2 * KILLS_PER_TIER, "the job ended before every planned kill"
    assert (figures.items, figures.lost, figures.duplicated, figures.failed) == (N_ITEMS, 0, 0, 0)
    assert figures.state == "done"
    assert figures.broker_count == 0, "the broker's count of the job's messages must settle with them, kills or not"
