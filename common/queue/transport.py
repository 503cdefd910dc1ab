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

# KEYS: the queue, unacked, unacked_index. ARGV: the raw message, the time now.
# Returns 1 when this consumer took the message, 0 when another one did first.
_CLAIM = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
local properties = cjson.decode(ARGV[1])['properties']
local info = properties['delivery_info']
redis.call('ZADD', KEYS[3], ARGV[2], properties['delivery_tag'])
redis.call('HSET', KEYS[2], properties['delivery_tag'],
           '[' .. ARGV[1] .. ',' .. cjson.encode(info['exchange']) .. ',' .. cjson.encode(info['routing_key']) .. ']')
return 1
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
            if item is None or not self._claim(queue, item):
                raise kombu_redis.Empty()
            self.connection._deliver(loads(bytes_to_str(item)), queue)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.7: a re-auth waits for this idle moment
            if flush is not None:
                flush()

    def _claim(self, queue: str, item: bytes) -> bool:
        with self.conn_or_acquire() as client:
            if self._claim_script is None:
                self._claim_script = client.register_script(_CLAIM)
            return bool(self._claim_script(keys=[queue, self.unacked_key, self.unacked_index_key],
                                           args=[item, time.time()], client=client))


class Transport(kombu_redis.Transport):
    """Select with ``broker_transport = "common.queue.transport:Transport"`` (``celery_app`` does)."""

    Channel = Channel
