"""kombu's Redis transport, with a consume that never holds a message outside Redis.

kombu takes a message with ``BRPOP`` and then, in a second round trip, records
it as unacknowledged (``unacked`` / ``unacked_index``), which is what brings a
dead worker's task back after the visibility timeout. A worker killed between
the two (SIGKILL, the out-of-memory killer, a lost machine) takes the message
with it: it is in no queue and not in ``unacked``, so nothing ever delivers it
again and its job never finishes.

Here the message never leaves Redis until it is recorded. ``BLMOVE queue queue
RIGHT LEFT`` waits for a message exactly as ``BRPOP`` does but only rotates it
to the other end of the same list; one Lua script then removes it from the list
and records it as unacknowledged, atomically. A worker killed before the script
leaves the message in its queue (at the back of the line); one killed after it
leaves the message in ``unacked``, which kombu restores as usual. When two
consumers see the same message, only one script finds it to remove; the other
goes back to waiting.

Each claim also gives the message a delivery tag of its own. kombu keeps the
publisher's tag on every redelivery, so when a task outlived the visibility
timeout and went to a second worker, the first worker's late acknowledgement
erased the second worker's ``unacked`` record, and a kill of the second worker
then lost the task too.

It applies to a channel consuming one queue with acknowledgements, without
priorities and without a global key prefix, which is how every tango worker
consumes; anything else (a control client's replies, taken without acks) falls
back to kombu's own ``BRPOP``.

The broker also keeps counts, so that the stall sweep and a metrics scrape learn
what is queued or held without reading a message body (``HVALS unacked`` pulls
every held chunk's texts): ``IN_BROKER`` holds, per job, how many of its messages
are in the broker at all, queued or held; ``HELD_BY_QUEUE`` how many messages each
queue has in workers' hands. They are exact because each count moves in the same
atomic step as the message it counts: a publish pushes the message and bumps its
job in one MULTI; the claim records the message as held, and which job and queue
it belongs to (``HELD``, by its delivery tag), in its script; an acknowledgement
(or a reject without requeue) removes the unacked record and settles both counts
in one script, and only when that record was still there, so a late or repeated
acknowledgement settles nothing twice. A message that goes back to its queue (a
dead worker's, after the visibility timeout; a rejected one) stays in its job's
count and leaves its queue's held count, inside kombu's own restore transaction.
A worker killed at any point therefore leaves the counts describing what Redis
holds, and a Redis restarted from its append-only file replays the steps whole.
What no step sees is a message deleted behind the broker's back (``DEL``,
``LPOP`` by hand): ``settle_counts`` resets the counts whenever the broker is
empty, which is the one state in which they are known without a look.
"""
from __future__ import annotations

import time

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from common.queue import lua
from common.queue.keys import CLAIMS, HELD, HELD_BY_QUEUE, IN_BROKER, JOB_HEADER, UNACKED

def job_of(message: dict) -> str | None:
    """The job a message belongs to, from its header (None for a message without one)."""
    headers = message.get("headers") if isinstance(message, dict) else None
    job = headers.get(JOB_HEADER) if isinstance(headers, dict) else None
    return job if isinstance(job, str) and job else None


def settle_counts(client, queues: list[str]) -> bool:
    """Reset the broker's counts where they are known without a look (see the module docstring): the
    held ones when nothing is held, the jobs' ones when the whole broker is empty. True when it was."""
    return bool(client.register_script(lua.SETTLE_COUNTS)(keys=[UNACKED, HELD, HELD_BY_QUEUE, IN_BROKER, *queues]))


class QoS(kombu_redis.QoS):
    """kombu's acknowledgement emulation, settling the broker's counts in the same steps."""

    _settle_script = None

    def ack(self, delivery_tag):
        self._settle(delivery_tag, final=True)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if requeue:
            self.restore_by_tag(delivery_tag, leftmost=True)
        else:
            self._settle(delivery_tag, final=True)
        virtual.QoS.ack(self, delivery_tag)

    def _remove_from_indices(self, delivery_tag, pipe=None):
        """kombu calls this inside its restore transaction, which then pushes the message back: it
        leaves its queue's held count and stays in its job's."""
        with self.pipe_or_acquire(pipe) as pipe:
            self._settle(delivery_tag, final=False, client=pipe)
            return pipe

    def append(self, message, delivery_tag):
        super().append(message, delivery_tag)
        if self.channel._claiming is None:  # kombu's own BRPOP took it: record it as the claim would
            job = job_of(message._raw) or ""
            queue = message.delivery_info.get("routing_key", "")
            with self.pipe_or_acquire() as pipe:
                pipe.hsetnx(HELD, delivery_tag, f"{queue}\t{job}").hincrby(HELD_BY_QUEUE, queue, 1).execute()

    def _settle(self, delivery_tag, final: bool, client=None):
        with self.channel.conn_or_acquire() as own:
            if self._settle_script is None:
                self._settle_script = own.register_script(lua.SETTLE)
            return self._settle_script(keys=[self.unacked_key, self.unacked_index_key, HELD, HELD_BY_QUEUE,
                                             IN_BROKER], args=[delivery_tag, "1" if final else "0"],
                                       client=client or own)


class Channel(kombu_redis.Channel):
    """A Redis channel whose consume is one atomic claim and that keeps the broker's counts (see the
    module docstring)."""

    QoS = QoS
    supports_batch_publish = False  # every publish goes through ``_put``, which counts it
    _claiming: str | None = None
    _claim_script = None

    def __init__(self, *args, **kwargs) -> None:
        self._acking: set[str] = set()  # queues consumed with acknowledgements
        super().__init__(*args, **kwargs)

    def basic_consume(self, queue, *args, **kwargs):
        no_ack = kwargs["no_ack"] if "no_ack" in kwargs else bool(args and args[0])
        (self._acking.discard if no_ack else self._acking.add)(queue)
        return super().basic_consume(queue, *args, **kwargs)

    def _brpop_start(self, timeout=None):
        queues = list(self.active_queues)
        if len(queues) != 1 or self.global_keyprefix or queues[0] not in self._acking:
            self._claiming = None
            return super()._brpop_start(timeout)
        queue = queues[0]
        self._claiming = queue
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        wait = self.brpop_timeout if timeout is None else timeout
        self.client.connection.send_command("BLMOVE", queue, queue, "RIGHT", "LEFT", wait or 0)

    def _brpop_read(self, **options):
        queue = self._claiming
        if queue is None:
            return super()._brpop_read(**options)
        try:
            try:
                item = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            claimed = None if item is None else self._claim(queue, item)
            if claimed is None:
                raise kombu_redis.Empty()
            self.connection._deliver(loads(bytes_to_str(claimed)), queue)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.7: a re-auth waits for this idle moment
            if flush is not None:
                flush()

    def _put(self, queue, message, **kwargs):
        """Publish; a chunk's message and its job's count land in one MULTI, or neither does."""
        job = job_of(message)
        if job is None or (self._expires and queue in self._expires):
            return super()._put(queue, message, **kwargs)
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        with self.conn_or_acquire() as client:
            with client.pipeline() as pipe:
                pipe.lpush(key, dumps(message)).hincrby(IN_BROKER, job, 1).execute()

    def _claim(self, queue: str, item: bytes) -> bytes | None:
        """Take ``item`` off ``queue`` and record it as unacknowledged under a tag of its own; the
        message to deliver, or None when another consumer took it first."""
        with self.conn_or_acquire() as client:
            if self._claim_script is None:
                self._claim_script = client.register_script(lua.CLAIM)
            return self._claim_script(keys=[queue, self.unacked_key, self.unacked_index_key, CLAIMS, HELD,
                                            HELD_BY_QUEUE], args=[item, time.time()], client=client)


class Transport(kombu_redis.Transport):
    """Select with ``broker_transport = "common.queue.transport:Transport"`` (``celery_app`` does)."""

    Channel = Channel
