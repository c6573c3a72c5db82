"""``hmr-ros play`` and ``hmr-ros record``: bags to the wire and back, on a `Transport`.

Playing publishes each sample's CDR bytes as recorded (headers, stamps untouched), with the QoS
the bag recorded per topic (transient-local topics stay latched), at the recorded pace scaled
by ``rate``, or, with ``as_fast_as_consumed``, as fast as every matched reliable reader
acknowledges each sample. Recording subscribes to topics on the wire (types given, or learnt
from DDS discovery) and writes what arrives, as received, into a new rosbag2.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Sequence

from hmr_ros.transport import QOS_DEFAULT, QoSProfile, Transport, TransportError

from .reader import BagError, BagReader
from .writer import BagWriter

__all__ = ["PlayStats", "play_bag", "record_topics", "RecordStats"]

log = logging.getLogger(__name__)


@dataclass
class PlayStats:
    published: Dict[str, int] = field(default_factory=dict)
    loops: int = 0
    unacknowledged: int = 0   #: as_fast_as_consumed: samples whose acks timed out
    wall_s: float = 0.0


def play_bag(path: Any, transport: Transport, *, rate: float = 1.0,
             as_fast_as_consumed: bool = False, loop: bool = False,
             topics: Optional[Sequence[str]] = None, wait_for_subscribers_s: float = 0.0,
             ack_timeout_s: float = 5.0, stop: Optional[Callable[[], bool]] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> PlayStats:
    """Publish a bag's topics on ``transport``; returns what was sent."""
    if not as_fast_as_consumed and not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    stats = PlayStats()
    with BagReader(path) as bag:
        summaries = {s.topic: s for s in bag.topics()}
        chosen = list(topics) if topics else sorted(summaries)
        missing = [t for t in chosen if t not in summaries]
        if missing:
            raise BagError(f"{bag.path}: no topic(s) {missing}; the bag has {sorted(summaries)}")
        publishers = {}
        for topic in chosen:
            s = summaries[topic]
            qos = QoSProfile(reliability=s.reliability, durability=s.durability,
                             history="keep_last",
                             depth=1 if s.durability == "transient_local" else 10)
            publishers[topic] = transport.create_publisher(topic, s.type_name, qos)
        total = sum(summaries[t].count for t in chosen)
        deadline = time.monotonic() + wait_for_subscribers_s
        while wait_for_subscribers_s > 0 and time.monotonic() < deadline and not all(
                p.subscription_count() for p in publishers.values()):
            time.sleep(0.02)
        start_wall = time.monotonic()
        sent = 0
        while True:
            loop_start_wall, first_ts = time.monotonic(), None
            if total == 0:
                break  # nothing selected: --loop would spin forever
            for msg in bag.messages(chosen):
                if stop and stop():
                    stats.wall_s = time.monotonic() - start_wall
                    return stats
                if first_ts is None:
                    first_ts = msg.timestamp_ns
                if not as_fast_as_consumed:
                    due = loop_start_wall + (msg.timestamp_ns - first_ts) / 1e9 / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                pub = publishers[msg.topic]
                pub.publish(msg.data)
                if as_fast_as_consumed and not wait_for_acks(pub, ack_timeout_s):
                    stats.unacknowledged += 1
                stats.published[msg.topic] = stats.published.get(msg.topic, 0) + 1
                sent += 1
                if progress:
                    progress(sent, total * (stats.loops + 1))
            stats.loops += 1
            if not loop:
                break
        stats.wall_s = time.monotonic() - start_wall
    return stats


def wait_for_acks(publisher: Any, timeout_s: float) -> bool:
    """Block until matched reliable readers acknowledged everything sent (False on timeout).
    Best-effort readers never acknowledge: with none reliable this returns at once."""
    waiter = getattr(publisher, "wait_for_acks", None)
    if waiter is None:
        raise TransportError("this transport cannot wait for acknowledgements "
                             "(--as-fast-as-consumed needs the built-in transport)")
    return waiter(timeout_s)


@dataclass
class RecordStats:
    received: Dict[str, int] = field(default_factory=dict)
    types: Dict[str, str] = field(default_factory=dict)
    qos: Dict[str, QoSProfile] = field(default_factory=dict)
    wall_s: float = 0.0


def record_topics(out: Any, transport: Transport, topics: Iterable[str], *,
                  types_by_topic: Optional[Dict[str, str]] = None, storage: str = "mcap",
                  duration_s: Optional[float] = None, max_messages: Optional[int] = None,
                  discovery_timeout_s: float = 5.0, stop: Optional[Callable[[], bool]] = None,
                  qos: Optional[QoSProfile] = None) -> RecordStats:
    """Record ``topics`` into a new bag at ``out`` until ``duration_s``, ``max_messages`` or
    ``stop()``; the bag is always closed (readable) on return, also on errors.

    Types not in ``types_by_topic`` are learnt from discovery (built-in transport). QoS adapts
    per topic to the publishers seen, as ``ros2 bag record`` does (best effort if any
    publisher is best effort, transient local if all are), and is what the bag records as
    offered; ``qos`` overrides it for every topic. A failed write (disk full) stops recording
    and raises `BagError` after the bag is closed."""
    topics = list(topics)
    if not topics:
        raise ValueError("record needs at least one topic")
    known = dict(types_by_topic or {})
    untyped = [t for t in topics if t not in known]
    # untyped topics must show up within the timeout; the others only lend their QoS if seen
    found = discover_publishers(transport, topics, discovery_timeout_s, wait_for=untyped)
    for topic, (type_name, _) in found.items():
        known.setdefault(topic, type_name)
    offered = {topic: profile for topic, (_, profile) in found.items()}
    stats = RecordStats(types={t: known[t] for t in topics},
                        qos={t: qos or offered.get(t, QOS_DEFAULT) for t in topics})
    writer = BagWriter(Path(out), storage=storage)
    writer.open()
    failure: list = []
    try:
        for t in topics:
            writer.add_topic(t, known[t], stats.qos[t])

        def on_sample(topic: str) -> Callable[[bytes], None]:
            def callback(data: bytes) -> None:
                if failure or (max_messages is not None
                               and sum(stats.received.values()) >= max_messages):
                    return
                try:
                    writer.write(topic, time.time_ns(), data)
                except Exception as exc:  # noqa: BLE001 - stop, close the bag, report
                    failure.append(exc)
                    return
                stats.received[topic] = stats.received.get(topic, 0) + 1
            return callback

        subs = [transport.create_subscription(t, known[t], on_sample(t), stats.qos[t], raw=True)
                for t in topics]
        start = time.monotonic()
        while not transport.closed and not failure:
            if stop and stop():
                break
            if duration_s is not None and time.monotonic() - start >= duration_s:
                break
            if max_messages is not None and sum(stats.received.values()) >= max_messages:
                break
            transport.spin_once(0.05)
        for s in subs:
            s.close()
        stats.wall_s = time.monotonic() - start
    finally:
        writer.close()
    if failure:
        raise BagError(f"{out}: recording stopped, a write failed: {failure[0]}")
    return stats


def discover_publishers(transport: Transport, topics: Sequence[str], timeout_s: float, *,
                        wait_for: Sequence[str] = ()) -> Dict[str, Any]:
    """``{topic: (type, QoSProfile)}`` of the publishers of ``topics`` seen in DDS discovery,
    waiting up to ``timeout_s`` for those in ``wait_for`` (an error if they do not appear).
    The profile is what a recorder should use and store: best effort if any publisher is,
    transient local if all are. Transports without DDS discovery (rclpy) see nothing."""
    participant = getattr(transport, "participant", None)
    if participant is None:
        if wait_for:
            raise TransportError("topic types must be given (--type TOPIC:TYPE) on this "
                                 "transport")
        return {}
    from hmr_ros.transport.graph import GraphObserver

    observer = GraphObserver(participant)
    deadline = time.monotonic() + (timeout_s if wait_for else min(timeout_s, 0.5))
    while True:
        pubs = [p for p in observer.snapshot()["publications"] if p["topic"] in topics]
        seen = {p["topic"] for p in pubs}
        if (wait_for and seen >= set(wait_for)) or seen >= set(topics) or \
                time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    absent = [t for t in wait_for if t not in seen]
    if absent:
        raise TransportError(f"no publisher of {absent} found within {timeout_s:.1f} s; start "
                             "the publisher first, or give the types with --type TOPIC:TYPE")
    found: Dict[str, Any] = {}
    for topic in topics:
        mine = [p for p in pubs if p["topic"] == topic]
        if not mine:
            continue
        profile = QoSProfile(
            reliability="best_effort" if any(p["reliability"] == "best_effort" for p in mine)
            else "reliable",
            durability="transient_local" if all(p["durability"] == "transient_local"
                                                for p in mine) else "volatile",
            depth=max(10, max(p["depth"] for p in mine)))
        found[topic] = (mine[0]["type"], profile)
    return found
