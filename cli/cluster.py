"""The cluster's job commands: submit, status, wait, results, jobs, cancel.

Thin click wrappers over ``common.queue.submission`` and ``common.queue.store``. None of
them imports torch: they start fast and stay small whatever the job's size.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import TYPE_CHECKING, Callable

import click

from cli.options import (CONTEXT, audit_option, chunk_size_option, corpus_options, corpus_spec, is_url, open_output,
                         output_format, output_options, redis_errors, redis_option, target_options, window_option)
from cli.spool import spool, spool_path, spooled_paths
from common.queue.config import DEFAULT_MAX_ITEMS, ENV_MAX_ITEMS, ClusterSettings
from common.errors import EXIT_FAILURE, EXIT_OK, ConfigError
from common.queue.results import BINARY_FORMATS, OUTPUT_FORMATS
from common.queue.jobs import JobStatus
from common.queue.store import ResultStore

if TYPE_CHECKING:
    from tqdm import tqdm

def open_store(redis_url: str | None) -> tuple[ClusterSettings, ResultStore]:
    settings = ClusterSettings.from_env(redis_url)
    return settings, ResultStore.open(settings)


def interval_option(command: Callable) -> Callable:
    """``--interval S``: how often ``wait`` and ``results --follow`` look at the job."""
    return click.option("--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True, metavar="S",
                        help="Seconds between polls.")(command)


@click.command("submit", context_settings=CONTEXT)
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--threshold", type=float, default=None, metavar="T",
              help="Items whose tier-1 confidence is at or above T stop at tier 1 [default: 0.9, unless a quality "
                   "target picks it].")
@target_options
@chunk_size_option
@click.option("--job-id", default=None, metavar="ID", help="Name the job (default: time + random).")
@click.option("--labels", default=None, metavar="A,B,...",
              help="The label set the job expects (default: from --small/--big, else from the running workers).")
@click.option("--small", default=None, metavar="S", help="Tier-1 model whose config names the labels.")
@click.option("--big", default=None, metavar="B", help="Tier-2 model whose config names the labels.")
@click.option("--skip-invalid", is_flag=True,
              help="Record invalid records as rejected (see `tango status`) and submit the rest, "
                   "instead of refusing the whole file.")
@click.option("--max-items", type=click.IntRange(min=1), default=DEFAULT_MAX_ITEMS, envvar=ENV_MAX_ITEMS,
              show_default=True, metavar="N", help=f"Refuse a corpus of more than N items [env {ENV_MAX_ITEMS}].")
@audit_option
@window_option
@corpus_options
@redis_option
def submit_command(input_path: str, threshold: float | None, max_disagreement: float | None, max_drop: float | None,
                   confidence: float | None, calibration: str | None, require_gain: bool, chunk_size: int | None,
                   job_id: str | None, labels: str | None, small: str | None, big: str | None, skip_invalid: bool,
                   max_items: int, audit: float, window: int, fmt: str | None, text_column: str,
                   pair_column: str | None, id_column: str, label_column: str, redis_url: str | None) -> None:
    """Validate INPUT (a file, or - for standard input, --format jsonl by default), record a job and queue
    its chunks for tier 1; prints the job id.

    A corpus larger than --window is queued as workers answer, so Redis never
    holds more than a window of it: submit then returns when the last chunk is
    queued. Stopped before that (Ctrl-C, a lost broker), `tango resume JOB`
    queues the rest; killed, it is reported gone by `tango status` once its
    lease lapses, and the workers' sweep queues the rest a window at a time.

    With --max-disagreement D (or --max-drop D) the job certifies its own threshold: a seeded sample of
    INPUT (keyed by the job id; `tango label --seed JOB` draws the same) goes through both tiers first,
    and submit queues the rest once the sample is answered and the threshold fixed.
    """
    from common.target import quality_target
    from common.queue.celery_app import make_app
    from common.queue.keys import new_job_id, validate_job_id
    from common.queue.submission import SubmitRequest, submit

    target = quality_target(threshold, max_disagreement, max_drop, confidence, calibration, require_gain)
    settings, store = open_store(redis_url)
    incoming = keep = None
    if input_path == "-":  # a stream: spooled to this host's disk, never held in memory
        job_id = validate_job_id(job_id, error=ConfigError) if job_id else new_job_id()
        fmt = fmt or "jsonl"
        incoming, keep = spool(click.get_binary_stream("stdin"), fmt), spool_path(job_id, fmt)
        input_path = str(incoming)
    spec = dataclasses.replace(corpus_spec(fmt, text_column, pair_column, id_column, label_column),
                               max_items=max_items)
    request = SubmitRequest(path=input_path, spec=spec, threshold=0.9 if threshold is None else threshold,
                            target=target, chunk_size=chunk_size, job_id=job_id,
                            labels=tuple(labels.split(",")) if labels else (), small=small, big=big,
                            skip_invalid=skip_invalid, audit=audit, window=window, spool=keep,
                            shown="standard input" if incoming else None)
    said: list[str] = []

    def quality(job: str) -> None:  # the sample's cost and saving (or why there is none), then what it bought
        from common.queue.audit import quality_lines

        for line in quality_lines(store.status(job)):
            if line not in said:
                click.echo(line, err=True)
                said.append(line)

    try:
        with redis_errors(settings):
            done = submit(store, make_app("client", settings), request, recorded=quality if target else None)
    finally:
        if incoming:  # still there only when the submit was refused before its job was recorded
            incoming.unlink(missing_ok=True)
    cut = f", {done.truncated} over-long texts cut" if done.truncated else ""
    cut += f", {done.rejected} invalid records rejected" if done.rejected else ""
    labels = ",".join(done.labels) or "fixed by the first worker to take the job (none is up yet)"
    click.echo(f"submitted {done.total} items in {done.chunks} chunks, labels {labels}{cut} "
               f"({done.seconds:.1f} s)", err=True)
    if target:
        quality(done.job)
    click.echo(done.job)


@click.command("status", context_settings=CONTEXT)
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@redis_option
def status_command(job: str, as_json: bool, redis_url: str | None) -> None:
    """Show a job's progress: items done of total, per tier, failed, rate, state, and the audit's estimate
    of how often the accepted items (and the whole job) agree with tier 2."""
    settings, store = open_store(redis_url)
    with redis_errors(settings):
        status = store.status(job)
        rejects = store.rejects(job) if status.rejected else []
    click.echo(json.dumps(status_dict(status, rejects)) if as_json else format_status(status, rejects))


@click.command("wait", context_settings=CONTEXT)
@click.argument("job")
@interval_option
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="S",
              help="Give up (exit 1) after S seconds.")
@click.option("--resume-stalled", is_flag=True,
              help="When the job stops moving with nothing queued or in flight (a Redis crash lost a task, or "
                   "its submit was killed), send its unanswered items again, as `tango resume` does, within the "
                   "job's window.")
@redis_option
def wait_command(job: str, interval: float, timeout: float | None, resume_stalled: bool,
                 redis_url: str | None) -> int:
    """Show a live progress bar until JOB ends; exit 0 when every item succeeded, 1 otherwise."""
    from common.queue.celery_app import make_app
    from common.queue.submission import resume, stalled
    from common.queue.waiting import wait_final

    settings, store = open_store(redis_url)
    with redis_errors(settings):
        status = store.status(job)
        told = False
        with progress_bar(status) as bar:
            def watch(now: JobStatus, before: JobStatus | None) -> None:
                nonlocal told
                if before is not None and resume_stalled and stalled(store, before, now):
                    resumed = resume(store, make_app("client", settings), job, window=now.window)
                    bar.write(f"tango: job {job!r} stalled; resent {resumed.items} unanswered items", file=sys.stderr)
                elif before is not None and now.feeder_lost and not (told or resume_stalled):
                    bar.write(f"tango: the submit of job {job!r} is gone after queueing {now.fed} of "
                              f"{now.total} items; `tango resume {job}` (or wait --resume-stalled) queues the rest",
                              file=sys.stderr)
                    told = True
                show(bar, now)

            status = wait_final(store, status, interval, timeout, watch)
    return outcome(status)


@click.command("results", context_settings=CONTEXT)
@click.argument("job")
@output_options("--format", OUTPUT_FORMATS)
@click.option("--partial", is_flag=True,
              help="Write what is there even if the job has not finished; after a --drain, start at the first "
                   "item it left in Redis.")
@click.option("--follow", is_flag=True,
              help="Write results in input order as they come in until the job ends, with a progress bar on "
                   "stderr; exit 0 when every item succeeded, 1 otherwise (as `wait`).")
@click.option("--drain", is_flag=True,
              help="Delete results from Redis once they are written out and synced, so Redis keeps only the "
                   "tail not exported yet (needs -o with a new local file).")
@interval_option
@redis_option
def results_command(job: str, output: str, out_format: str | None, partial: bool, follow: bool, drain: bool,
                    interval: float, redis_url: str | None) -> int | None:
    """Write every item's result in input order: id, label, score, tier, model (and error for a failed item)."""
    from common.queue.export import Exporter
    from common.queue.results import open_sink
    from common.queue.answers import export_start
    from common.queue.waiting import poll

    if drain and (output == "-" or is_url(output)):
        raise ConfigError("--drain needs -o with a local file: it deletes results from Redis once they are "
                          "synced to disk, which stdout and object stores cannot promise")
    fmt = output_format(output, out_format, OUTPUT_FORMATS)
    settings, store = open_store(redis_url)
    with redis_errors(settings):
        status = store.status(job)
        export_start(status, partial, follow)  # refused before any output file is made
        with open_output(output, fmt in BINARY_FORMATS, live=follow, new=drain) as out:
            exporter = Exporter(store, job, open_sink(out, fmt), drain=drain, poll=lambda: poll(store, job))
            if not follow:
                status = exporter.once(status, partial)
            else:
                with progress_bar(status) as bar:
                    status = exporter.follow(status, partial, interval, lambda now, written: show(bar, now, written))
    if output != "-":
        drained = f"; {status.drained} of {status.total} now drained from Redis" if drain else ""
        sidecar = _write_provenance(output, status)
        click.echo(f"wrote {exporter.written} results to {output}{drained}" + (f" (provenance in {sidecar})"
                                                                             if sidecar else ""), err=True)
    return outcome(status) if follow else None


def _write_provenance(output: str, status: JobStatus) -> str | None:
    """``OUT.provenance.json`` beside a local output: models, threshold, temperature, target and bound."""
    from common.queue.calibration import provenance

    if is_url(output):
        return None
    path = f"{output}.provenance.json"
    with open_output(path) as out:
        out.write(json.dumps(provenance(status), indent=1) + "\n")
    return path


@click.command("jobs", context_settings=CONTEXT)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many jobs.")
@redis_option
def jobs_command(limit: int, redis_url: str | None) -> None:
    """List recent jobs, newest first, with their states."""
    settings, store = open_store(redis_url)
    with redis_errors(settings):
        jobs = store.list_jobs(limit)
    click.echo(f"{'JOB':<28} {'STATE':<10} {'DONE':>9} {'TOTAL':>9} {'FAILED':>7} {'TIER2':>6}  CREATED (UTC)")
    for s in jobs:
        tier2 = f"{s.tier2 / s.done:.0%}" if s.done else "-"
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.created))
        click.echo(f"{s.job:<28} {s.state:<10} {s.done:>9} {s.total:>9} {s.failed:>7} {tier2:>6}  {created}")


@click.command("resume", context_settings=CONTEXT)
@click.argument("job")
@window_option
@redis_option
def resume_command(job: str, window: int, redis_url: str | None) -> None:
    """Send JOB's unanswered items again (after a Redis crash lost queued work, or a
    submit stopped before it queued the whole corpus).

    Safe at any time: results are written once per item, so a resend costs at
    most duplicate work. Reads the job's source file as submit did, and refuses it, queueing nothing,
    unless it still holds the exact bytes (size and SHA-256) the job was submitted with.
    """
    from common.queue.celery_app import make_app
    from common.queue.submission import resume

    settings, store = open_store(redis_url)
    with redis_errors(settings):
        done = resume(store, make_app("client", settings), job, window)
    click.echo(f"resent {done.items} unanswered items of {job} in {done.chunks} chunks")


@click.command("purge", context_settings=CONTEXT)
@click.argument("jobs", nargs=-1, required=True, metavar="JOB...")
@redis_option
def purge_command(jobs: tuple[str, ...], redis_url: str | None) -> None:
    """Delete ended jobs' records from Redis (job keys never expire on their own), and what `submit -`
    spooled of their standard input on this host."""
    settings, store = open_store(redis_url)
    with redis_errors(settings):
        for job in jobs:
            store.purge(job)
            for spooled in spooled_paths(job):  # what `submit -` kept of its standard input
                spooled.unlink(missing_ok=True)
            click.echo(f"purged {job}")


@click.command("cancel", context_settings=CONTEXT)
@click.argument("job")
@redis_option
def cancel_command(job: str, redis_url: str | None) -> None:
    """Cancel JOB: workers skip its chunks that have not run yet."""
    settings, store = open_store(redis_url)
    with redis_errors(settings):
        if store.cancel(job):
            click.echo(f"cancelled {job}")
        else:
            click.echo(f"job {job} had already ended ({store.status(job).state})")


def progress_bar(status: JobStatus) -> tqdm:
    """The live bar of ``wait`` and ``results --follow``, on stderr."""
    from tqdm import tqdm

    return tqdm(total=status.total, initial=status.answered, desc=status.job, unit="item", file=sys.stderr,
                dynamic_ncols=True)


def show(bar: tqdm, status: JobStatus, written: int | None = None) -> None:
    """The bar at the job's answered count, with its tier-2 and failed counts (and what is written)."""
    bar.n = status.answered
    out = "" if written is None else f", written {written}"
    bar.set_postfix_str(f"tier2 {status.tier2}, failed {status.failed}{out}, {status.state}", refresh=False)
    bar.refresh()


def outcome(status: JobStatus) -> int:
    """The job's figures on stderr and the exit status: 0 when every item succeeded, 1 otherwise."""
    click.echo(format_status(status), err=True)
    if status.state == "done":
        return EXIT_OK
    click.echo(f"tango: job {status.job!r} " + (f"is still {status.state}" if not status.is_final else
                                                f"ended {status.state} ({status.failed} failed items)"), err=True)
    return EXIT_FAILURE


def status_dict(s: JobStatus, rejects: list[tuple[int, str]] = ()) -> dict:
    from common.queue.audit import job_audit, quality_report  # scipy: only the commands that report pay its import

    return {"job": s.job, "state": s.state, "total": s.total, "done": s.done, "failed": s.failed,
            "tier1": s.tier1, "tier2": s.tier2, "rate": round(s.rate, 3), "elapsed": round(s.elapsed, 3),
            "threshold": s.threshold, "labels": s.labels, "waiting_for_workers": s.waiting_for_workers,
            "accuracy": s.accuracy if s.is_final else None,
            "gold": s.gold, "truncated": int(s.extra.get("truncated") or 0), "rejected": s.rejected,
            "resumed": int(s.extra.get("resumed") or 0), "drained": s.drained, "queued": s.fed,
            "submit_lost": s.feeder_lost, "audit": job_audit(s).to_dict(), "quality": quality_report(s),
            "rejects": [{"line": line, "reason": reason} for line, reason in rejects]}


def format_status(s: JobStatus, rejects: list[tuple[int, str]] = ()) -> str:
    from common.queue.audit import job_audit, quality_lines

    share = f" ({s.tier2 / s.done:.1%} escalated)" if s.done else ""
    waiting = " (waiting for workers: none has taken the job yet)" if s.waiting_for_workers else ""
    if s.feeder_lost:
        waiting += (f" ({s.fed} of {s.total} items queued, and its submit is gone: `tango resume {s.job}` queues "
                    "the rest; the workers' sweep does too, a window at a time)")
    elif s.state == "submitting" and s.fed < s.total:
        waiting += f" ({s.fed} of {s.total} items queued so far: the submit queues the rest as workers answer)"
    lines = [f"job       {s.job}",
             f"state     {s.state}{waiting}",
             f"progress  {s.answered} of {s.total} items ({s.answered / max(s.total, 1):.1%}): "
             f"{s.done} done, {s.failed} failed",
             f"tiers     tier 1 {s.tier1}, tier 2 {s.tier2}{share}; threshold {s.threshold:g}",
             f"rate      {s.rate:.1f} items/s over {s.elapsed:.1f} s"]
    lines += job_audit(s).lines()
    lines += quality_lines(s)
    if s.is_final and s.gold:
        lines.append(f"accuracy  {s.accuracy:.4f} on {s.gold} items with gold labels")
    if s.rejected:
        first = f" (first: {rejects[0][1]})" if rejects else ""
        lines.append(f"rejected  {s.rejected} invalid input records left out{first}")
    if s.drained:
        lines.append(f"drained   {s.drained} results (items 0-{s.drained - 1}) written out by `tango results "
                     "--drain` and deleted from Redis")
    return "\n".join(lines)


@click.command("queues", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per queue.")
@redis_option
def queues_command(as_json: bool, redis_url: str | None) -> None:
    """Each tier's queue: tasks waiting and tasks workers hold (what autoscalers scale on).

    A task is one chunk of a job. Waiting tasks on tier2 with no tier-2 worker up
    mean the GPU fleet should start; the workers' /metrics export the same as
    tango_queue_waiting and tango_queue_in_flight.
    """
    from common.queue.broker import queue_depths

    settings, store = open_store(redis_url)
    with redis_errors(settings):
        depths = queue_depths(store.client)
    for depth in depths:
        click.echo(json.dumps(depth.as_dict()) if as_json else
                   f"{depth.queue:<6} waiting {depth.waiting:6d}  in flight {depth.in_flight:4d}")


# the cluster client's commands: none loads a model (nor imports torch or transformers)
COMMANDS = (submit_command, status_command, wait_command, results_command, jobs_command, cancel_command,
            resume_command, purge_command, queues_command)
