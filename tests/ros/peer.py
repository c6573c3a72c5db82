"""A second (or third) DDS process for the transport tests: ``python -m tests.ros.peer MODE``.

publish  -- a node publishing `example_message(type, 0)` of every node type, each on its topic
observe  -- prints, as JSON, what a ROS 2 tool would see of the graph (GraphObserver)
garbage  -- writes malformed samples on a topic, then good ones
Environment: CYCLONEDDS_URI (loopback config) and ROS_DOMAIN_ID come from the test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from hmr_ros.transport import cdr
from hmr_ros.transport.dds import DdsTransport
from tests.ros.messages import NODE_TYPES, example_message


def topic_of(type_name: str) -> str:
    pkg, _, name = type_name.split("/")
    return f"/t/{pkg}_{name}"


def publish(args) -> int:
    node = DdsTransport(args.name, args.namespace)
    pubs = [(node.create_publisher(topic_of(t), t), example_message(t, 0)) for t in NODE_TYPES]
    print("ready", flush=True)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        for pub, msg in pubs:
            pub.publish(msg)
        time.sleep(0.05)
    node.close()
    return 0


def observe(args) -> int:
    from cyclonedds.domain import DomainParticipant

    from hmr_ros.transport.graph import GraphObserver

    import os

    observer = GraphObserver(DomainParticipant(int(os.environ["ROS_DOMAIN_ID"])))
    end = time.monotonic() + args.seconds
    snap = observer.snapshot()
    while time.monotonic() < end:
        snap = observer.snapshot()
        names = {n["name"] for n in snap["nodes"]}
        topics = {p["topic"] for p in snap["publications"]}
        if args.expect_node in names and set(args.expect_topics) <= topics:
            break
        time.sleep(0.1)

    def hexify(value):
        if isinstance(value, bytes):
            return value.hex()
        if isinstance(value, dict):
            return {hexify(k) if isinstance(k, bytes) else k: hexify(v) for k, v in value.items()}
        if isinstance(value, list):
            return [hexify(v) for v in value]
        return value

    json.dump(hexify(snap), sys.stdout)
    return 0


def garbage(args) -> int:
    """Malformed samples on a topic. Cyclone itself refuses to write samples whose structure
    does not fit the type (lengths past the end, missing string terminators, ...): their
    return codes are reported. Samples that are structurally valid CDR but not valid messages
    (strings that are not UTF-8) do go out, and the receiver must drop them; then good ones."""
    import struct

    from cyclonedds._clayer import ddspy_write

    node = DdsTransport("hmr_garbage")
    pub = node.create_publisher(args.topic, args.type)
    end = time.monotonic() + 10
    while pub.subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.02)
    time.sleep(0.3)
    msg = example_message(args.type, 0)
    good = bytes(cdr.serialize(msg, args.type, pad=True))
    structural = [
        good[: (len(good) // 2) & -4],                      # truncated
        b"\x00\x01\x00\x00" + b"\xff" * 64,             # lengths that lie
        b"\x00\x01\x00\x00" + bytes(range(256)) * 4,     # random bytes
    ]
    refused = sum(ddspy_write(pub._writer._ref, blob) < 0 for blob in structural)
    # frame_id of the same length with bytes that are not UTF-8: right structure, wrong content
    frame = msg.header.frame_id.encode()
    at = 4 + 8 + 4  # header: stamp (8), then the frame_id length (4)
    assert struct.unpack_from("<I", good, at - 4)[0] == len(frame) + 1
    not_utf8 = bytearray(good)
    not_utf8[at:at + max(1, len(frame))] = b"\xff" * max(1, len(frame))
    if not frame:  # an empty frame_id has no byte to spoil: lengthen it by rebuilding
        raise SystemExit("example frame_id is empty")
    sent_bad = 0
    for _ in range(args.repeat):
        sent_bad += ddspy_write(pub._writer._ref, bytes(not_utf8)) == 0
        time.sleep(0.005)
    for _ in range(20):
        pub.publish(good)
        time.sleep(0.02)
    pub.wait_for_acks(2.0)
    print(json.dumps({"refused": refused, "structural": len(structural), "sent_bad": sent_bad}),
          flush=True)
    node.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("publish", "observe", "garbage"))
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--name", default="hmr_peer_pub")
    ap.add_argument("--namespace", default="")
    ap.add_argument("--expect-node", default="")
    ap.add_argument("--expect-topics", nargs="*", default=[])
    ap.add_argument("--topic", default="/img")
    ap.add_argument("--type", default="sensor_msgs/msg/Image")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    return {"publish": publish, "observe": observe, "garbage": garbage}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
