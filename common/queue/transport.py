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
"""
from __future__ import annotations

import time

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from common.queue.keys import CLAIMS

# KEYS: the queue, unacked, unacked_index, the claim counter. ARGV: the raw message, the time now.
# Returns the message as delivered (with this claim's own delivery tag), or false when another
# consumer took it first. The tag is the publisher's with ``~N`` (N counts claims) put in place of
# any earlier claim's suffix; the message text is otherwise left exactly as it was.
_CLAIM = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return false
end
local properties = cjson.decode(ARGV[1])['properties']
local tag = properties['delivery_tag']
local fresh = (string.match(tag, '^(.*)~%d+$') or tag) .. '~' .. redis.call('INCR', KEYS[4])
local old = '"delivery_tag": ' .. cjson.encode(tag)
local at = string.find(ARGV[1], old, 1, true)
if not at then return redis.error_reply('no delivery tag in the message') end
local item = string.sub(ARGV[1], 1, at - 1) .. '"delivery_tag": ' .. cjson.encode(fresh) .. string.sub(ARGV[1], at + #old)
local info = properties['delivery_info']
redis.call('ZADD', KEYS[3], ARGV[2], fresh)
redis.call('HSET', KEYS[2], fresh,
           '[' .. item .. ',' .. cjson.encode(info['exchange']) .. ',' .. cjson.encode(info['routing_key']) .. ']')
return item
"""


class Channel(kombu_redis.Channel):
    """A Redis channel whose consume is one atomic claim (see the module docstring)."""

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

    def _claim(self, queue: str, item: bytes) -> bytes | None:
        """Take ``item`` off ``queue`` and record it as unacknowledged under a tag of its own; the
        message to deliver, or None when another consumer took it first."""
        with self.conn_or_acquire() as client:
            if self._claim_script is None:
                self._claim_script = client.register_script(_CLAIM)
            return self._claim_script(keys=[queue, self.unacked_key, self.unacked_index_key, CLAIMS],
                                      args=[item, time.time()], client=client)


class Transport(kombu_redis.Transport):
    """Select with ``broker_transport = "common.queue.transport:Transport"`` (``celery_app`` does)."""

    Channel = Channel
