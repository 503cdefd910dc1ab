"""The atomic consume on a real redis-server: a consumer that dies after taking a message loses nothing."""
from __future__ import annotations

import json
import time

import pytest
from kombu import Connection, Exchange, Queue
from kombu.transport.redis import Transport as KombuTransport

from common.queue.keys import UNACKED
from common.queue.transport import Transport

QUEUE = "tier1"


def publish(conn: Connection, body: dict) -> None:
    conn.Producer(serializer="json").publish(body, exchange=Exchange(QUEUE, type="direct"), routing_key=QUEUE,
                                             declare=[Queue(QUEUE, Exchange(QUEUE, type="direct"), QUEUE)])


def start_take(channel) -> None:
    """Send the blocking take as kombu's poller does (it gives the channel its connection first)."""
    channel.connection.cycle._register_BRPOP(channel)


def take_and_die(url: str, transport: type, command: str) -> None:
    """What a consumer killed right after the broker handed it a message leaves behind: it sent the
    blocking take and read the reply, and never got to record the message as unacknowledged."""
    with Connection(url, transport=transport) as conn:
        publish(conn, {"n": 1})
        channel = conn.default_channel
        channel.basic_consume(QUEUE, no_ack=False, callback=lambda message: None, consumer_tag="dies")
        start_take(channel)
        assert channel.client.parse_response(channel.client.connection, command) is not None
        channel.client.connection.disconnect()


@pytest.fixture()
def client(redis_server, redis_url):
    return redis_server.client()


def test_kombus_own_consume_loses_a_message_taken_by_a_consumer_that_dies(redis_url, client):
    take_and_die(redis_url, KombuTransport, "BRPOP")
    assert (client.llen(QUEUE), client.hlen(UNACKED)) == (0, 0)  # in no queue, not unacknowledged: gone


def test_the_atomic_consume_leaves_it_in_the_queue(redis_url, client):
    take_and_die(redis_url, Transport, "BLMOVE")
    assert (client.llen(QUEUE), client.hlen(UNACKED)) == (1, 0)
    with Connection(redis_url, transport=Transport) as conn:  # and the next consumer gets it
        got = []
        conn.default_channel.basic_consume(QUEUE, no_ack=False, callback=got.append, consumer_tag="next")
        conn.drain_events(timeout=5)
        assert [m.payload for m in got] == [{"n": 1}]


def test_a_claimed_message_is_recorded_as_kombu_records_it_and_restored_when_its_holder_is_gone(redis_url, client):
    with Connection(redis_url, transport=Transport, transport_options={"visibility_timeout": 1}) as conn:
        publish(conn, {"n": 2})
        channel = conn.default_channel
        channel.basic_consume(QUEUE, no_ack=False, callback=lambda message: None, consumer_tag="c")
        start_take(channel)
        item = channel.client.parse_response(channel.client.connection, "BLMOVE")
        channel._in_poll = None  # the reply is read: nothing outstanding on the connection
        claimed = channel._claim(QUEUE, item)
        assert claimed and channel._claim(QUEUE, item) is None  # a second claim finds nothing
        published, delivered = json.loads(item), json.loads(claimed)
        tag = delivered["properties"]["delivery_tag"]
        assert tag.startswith(published["properties"]["delivery_tag"] + "~")
        published["properties"]["delivery_tag"] = tag
        assert delivered == published  # nothing but the tag changed
        assert json.loads(client.hget(UNACKED, tag)) == [delivered, QUEUE, QUEUE]
        assert client.llen(QUEUE) == 0
        time.sleep(1.2)
        channel.qos.restore_visible()
    assert client.llen(QUEUE) == 1 and client.hlen(UNACKED) == 0


def test_a_late_ack_of_a_timed_out_delivery_keeps_the_redelivery_recorded(redis_url, client):
    """A task held past the visibility timeout goes to a second worker; the first one's ack, when it
    finally comes, must not erase the second one's record (a kill of the second would lose the task)."""
    with Connection(redis_url, transport=Transport, transport_options={"visibility_timeout": 1}) as conn:
        publish(conn, {"n": 3})
        first, second = [], []
        channel = conn.default_channel
        channel.basic_consume(QUEUE, no_ack=False, callback=first.append, consumer_tag="slow")
        conn.drain_events(timeout=5)
        time.sleep(1.2)
        channel.qos.restore_visible()  # the timeout passed: back on the queue
        channel.basic_cancel("slow")
        channel.basic_consume(QUEUE, no_ack=False, callback=second.append, consumer_tag="second")
        conn.drain_events(timeout=5)
        assert first[0].delivery_tag != second[0].delivery_tag
        first[0].ack()
        assert client.hexists(UNACKED, second[0].delivery_tag)
        second[0].ack()
    assert client.hlen(UNACKED) == 0 and client.llen(QUEUE) == 0


def test_consume_ack_and_a_consumer_without_acks(redis_url, client):
    with Connection(redis_url, transport=Transport) as conn:
        for n in range(3):
            publish(conn, {"n": n})
        got = []
        conn.default_channel.basic_consume(QUEUE, no_ack=False, callback=got.append, consumer_tag="c")
        for _ in range(3):
            conn.drain_events(timeout=5)
        assert [m.payload["n"] for m in got] == [0, 1, 2]  # first in, first out
        assert client.hlen(UNACKED) == 3
        for message in got:
            message.ack()
        assert client.hlen(UNACKED) == 0
    with Connection(redis_url, transport=Transport) as conn:  # a reply consumer takes without acks
        publish(conn, {"n": 9})
        got = []
        conn.default_channel.basic_consume(QUEUE, no_ack=True, callback=got.append, consumer_tag="r")
        conn.drain_events(timeout=5)
        assert [m.payload["n"] for m in got] == [9] and client.hlen(UNACKED) == 0


def test_the_broker_counts_each_jobs_messages_through_claims_acks_redeliveries_and_late_acks(redis_url, client):
    """What the stall sweep and the metrics read instead of message bodies: per job, its messages queued
    or held; per queue, the held ones. Each moves with its message in one step, whatever happens to it."""
    from common.queue.broker import in_broker, queue_depths
    from common.queue.keys import JOB_HEADER
    from common.queue.transport import settle_counts

    def publish_for(conn, job):
        conn.Producer(serializer="json").publish({"job": job}, exchange=Exchange(QUEUE, type="direct"),
                                                 routing_key=QUEUE, headers={JOB_HEADER: job},
                                                 declare=[Queue(QUEUE, Exchange(QUEUE, type="direct"), QUEUE)])

    def counts():
        return in_broker(client, ["j", "k"]), queue_depths(client)[0].in_flight

    with Connection(redis_url, transport=Transport) as conn:
        for job in ("j", "j", "j", "k"):
            publish_for(conn, job)
        got = []
        conn.default_channel.basic_consume(QUEUE, no_ack=False, callback=got.append, consumer_tag="c")
        for _ in range(3):
            conn.drain_events(timeout=5)
        assert counts() == ({"j": 3, "k": 1}, 3)  # held or queued, each counted once
        got[0].ack()
        conn.default_channel.qos.ack(got[0].delivery_tag)  # a repeated acknowledgement settles nothing twice
        assert counts() == ({"j": 2, "k": 1}, 2)
        late = got[1].delivery_tag
        got[1].reject(requeue=True)  # back on its queue: still the job's, no longer held
        assert counts() == ({"j": 2, "k": 1}, 1)
        conn.default_channel.qos.ack(late)  # the first holder's late ack of the redelivered message
        assert counts() == ({"j": 2, "k": 1}, 1) and client.llen(QUEUE) == 2
    # the consumer went away holding got[2]: kombu restores it at close, as the visibility timeout would
    assert counts() == ({"j": 2, "k": 1}, 0) and client.llen(QUEUE) == 3
    with Connection(redis_url, transport=Transport) as conn:
        got = []
        conn.default_channel.basic_consume(QUEUE, no_ack=False, callback=got.append, consumer_tag="d")
        for _ in range(3):
            conn.drain_events(timeout=5)
        for message in got:
            message.ack()
    assert counts() == ({"j": 0, "k": 0}, 0) and client.hlen("tango:in-broker") == 0
    publish_for(Connection(redis_url, transport=Transport), "j")
    client.delete(QUEUE)  # deleted behind the broker's back: no step saw it go
    assert in_broker(client, ["j"]) == {"j": 1}
    assert settle_counts(client, [QUEUE]) and in_broker(client, ["j"]) == {"j": 0}  # an empty broker resets
