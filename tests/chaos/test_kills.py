"""Workers SIGKILLed mid-job, on a real redis-server with real celery workers: nothing lost, nothing twice."""
from __future__ import annotations

from tests.chaos.harness import Fleet, run_chaos, write_corpus
from tests.cluster import start_redis, wait_ready

N_ITEMS = 5000
KILLS_PER_TIER = 3  # two pool processes, then a whole worker


def test_killed_workers_lose_nothing_and_count_nothing_twice(tiny_models, glue_dir, tmp_path, capsys):
    texts = [row.split("\t")[0] for row in (glue_dir / "sst2" / "train.tsv").read_text().splitlines()[1:2001]]
    server = start_redis(tmp_path)
    # a short visibility timeout brings a killed worker's task back within seconds (RELIABILITY.md)
    fleet = Fleet(server, tiny_models, tmp_path, env={"TANGO_VISIBILITY_TIMEOUT": "4"})
    try:
        for tier in (1, 1, 2, 2):
            fleet.add(tier)
        wait_ready(fleet.workers)
        ids = write_corpus(tmp_path / "corpus.jsonl", texts, N_ITEMS)
        figures = run_chaos(server, fleet, tmp_path / "corpus.jsonl", ids, "chaos", KILLS_PER_TIER, 10,
                            tmp_path / "results.jsonl")
    finally:
        fleet.close()
        server.stop()
    with capsys.disabled():
        print("\n" + figures.report())
    assert figures.kills == 2 * KILLS_PER_TIER, "the job ended before every planned kill"
    assert (figures.items, figures.lost, figures.duplicated, figures.failed) == (N_ITEMS, 0, 0, 0)
    assert figures.state == "done"
