"""Where a tier-1 item's CPU goes, step by step, beside the floor: what the work around the model costs.

One process, one torch thread, the near-free model of ``queue_ceiling.py`` and 1000-item chunks of
SST-2 train sentences as a worker receives them (a JSON message). Each step of a worker's chunk is
timed alone: the message's JSON, its checked decode into items, tokenization, the model, the
routing decision with its result records, and the packing of what leaves (the Lua write's argument
and the tier-2 message). The steps that exist only because a chunk travels between processes as a
message with per-item records are decode, decide and pack; the floor (``queue_ceiling.floor_rate``: parse, tokenize once, model,
encode a result) is what any pipeline pays.

    python bench/tier1_steps.py --items 20000
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import build_corpus, machine  # noqa: E402
from bench.queue_ceiling import floor_rate, near_free_model  # noqa: E402

STEPS = ("message JSON", "decode", "tokenize", "model", "decide", "pack")
AROUND_THE_MODEL = ("decode", "decide", "pack")


def chunk_messages(corpus: Path, threshold: float, size: int) -> list[str]:
    """The corpus as tier-1 messages, exactly as ``tango submit`` encodes them."""
    from common.queue.messages import Chunk, WorkItem

    rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    items = [WorkItem(n, row["id"], row["text"], gold=row["label"]) for n, row in enumerate(rows)]
    return [json.dumps(Chunk("steps", c, 1, threshold, ("negative", "positive"), tuple(items[s:s + size])).encode())
            for c, s in enumerate(range(0, len(items), size))]


def time_steps(messages: list[str], model_dir: Path, batch: int) -> dict[str, float]:
    """Seconds spent in each step over all messages. Tokenization and the model are timed apart, so
    ``TierModel.run``'s loop (sort by length, batch, encode, forward, put back in order) is spelled out."""
    import numpy as np
    import torch

    from common.cascade import softmax
    from common.ml.models import load_tier
    from common.queue.decisions import decide_tier1, output_map
    from common.queue.messages import Chunk
    from common.queue.answers import entry_line

    torch.set_num_threads(1)
    model = load_tier(str(model_dir), batch_size=batch)
    outputs = output_map(["negative", "positive"], model.labels)
    spent = dict.fromkeys(STEPS, 0.0)
    for message in messages:
        marks = [time.perf_counter()]  # one mark after each step, in the order of STEPS
        raw = json.loads(message)
        marks.append(time.perf_counter())
        chunk = Chunk.decode(raw)
        marks.append(time.perf_counter())
        texts = [item.text for item in chunk.items]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [[texts[i] for i in order[s:s + batch]] for s in range(0, len(texts), batch)]
        encoded = [model.encode(b, None) for b in batches]
        marks.append(time.perf_counter())
        with torch.inference_mode():
            logits = torch.cat([model.model(**inputs).logits for inputs in encoded]).numpy()
        probs = softmax(logits, model.temperature)[np.argsort(order)]  # back in the chunk's order
        marks.append(time.perf_counter())
        decision = decide_tier1(chunk, probs, outputs, "steps")
        marks.append(time.perf_counter())
        "\n".join(entry_line(i, record, correct) for i, record, correct in decision.entries)  # what leaves: timed,
        json.dumps(chunk.forward(decision.forward).encode())  # not sent
        marks.append(time.perf_counter())
        for step, begun, ended in zip(STEPS, marks, marks[1:]):
            spent[step] += ended - begun
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=256, help="model batch, as the workers' default")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="tango-steps-") as tmp:
        root = Path(tmp)
        model, threshold = near_free_model(root, 0.2)
        corpus = root / "corpus.jsonl"
        build_corpus(corpus, args.items)
        spent = time_steps(chunk_messages(corpus, threshold, args.chunk_size), model, args.batch)
        floor = floor_rate(corpus, model, args.batch, args.chunk_size)
    total = sum(spent.values())
    for step in STEPS:
        print(f"  {step:<13} {spent[step] / args.items * 1e6:6.1f} us/item  {spent[step] / total:5.1%}")
    around = sum(spent[step] for step in AROUND_THE_MODEL)
    print(f"tier 1's chunk: {total / args.items * 1e6:.1f} us/item; decode + decide + pack (the work around the "
          f"model) {around / args.items * 1e6:.1f} us/item = {around / total:.0%} of it")
    print(f"floor (parse, tokenize once, near-free model, encode): {1e6 / floor:.1f} us/item; a chunk costs "
          f"{total / args.items * floor:.2f}x the floor")


if __name__ == "__main__":
    main()
