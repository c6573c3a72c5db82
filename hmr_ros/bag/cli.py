"""Command-line front-ends: ``hmr-ros play``, ``hmr-ros record``, ``hmr-ros bag make-sample``,
``hmr-ros bag info``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from hmr_ros.transport.cli import add_transport_arguments, open_cli_transport

__all__ = ["add_transport_arguments", "open_cli_transport"]


def _progress(total_hint: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total_hint, desc=desc, unit="msg", file=sys.stderr,
               disable=not sys.stderr.isatty())

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update


# -- play ------------------------------------------------------------------------------------------

def add_play_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 folder or file (.mcap, .db3), or a ROS 1 .bag")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    pace.add_argument("--as-fast-as-consumed", action="store_true",
                      help="publish each sample once every matched reliable reader acknowledged "
                           "the previous one")
    parser.add_argument("--loop", action="store_true", help="start over at the end")
    parser.add_argument("--topics", nargs="+", default=None, help="only these topics")
    parser.add_argument("--wait-for-subscribers", type=float, default=2.0, metavar="S",
                        help="wait up to S seconds for every topic to have a reader (default 2)")
    add_transport_arguments(parser)


def run_play(args: argparse.Namespace) -> int:
    from .replay import play_bag

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    transport = open_cli_transport(args, "hmr_ros_player")
    bar, update = _progress(0, "play")
    try:
        stats = play_bag(args.bag, transport, rate=args.rate,
                         as_fast_as_consumed=args.as_fast_as_consumed, loop=args.loop,
                         topics=args.topics, wait_for_subscribers_s=args.wait_for_subscribers,
                         progress=update)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bar.close()
        transport.close()
    for topic, n in sorted(stats.published.items()):
        print(f"{topic}: {n} messages")
    extra = f", {stats.unacknowledged} not acknowledged" if stats.unacknowledged else ""
    print(f"published {sum(stats.published.values())} messages in {stats.wall_s:.1f} s{extra}")
    return 0


# -- record ----------------------------------------------------------------------------------------

def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="new bag folder (must not exist)")
    parser.add_argument("--topics", nargs="+", required=True, help="topics to record")
    parser.add_argument("--type", action="append", default=[], metavar="TOPIC:TYPE",
                        help="a topic's type (default: learnt from discovery)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: until Ctrl-C)")
    parser.add_argument("--max-messages", type=int, default=None, help="stop after N messages")
    parser.add_argument("--qos", default="auto",
                        help="subscription QoS: auto (per topic, adapted to its publishers, "
                             "like ros2 bag record), or for every topic default, sensor_data, "
                             "transient_local, or e.g. best_effort,keep_last,5 (default: auto)")
    add_transport_arguments(parser)


def run_record(args: argparse.Namespace) -> int:
    from hmr_ros.transport import qos_from_string

    from .replay import record_topics

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    types_by_topic = {}
    for item in args.type:
        topic, sep, type_name = item.partition(":")
        if not sep or not topic or not type_name:
            raise ValueError(f"--type expects TOPIC:TYPE, got {item!r}")
        types_by_topic[topic] = type_name
    transport = open_cli_transport(args, "hmr_ros_recorder")
    stop = threading.Event()

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        stop.set()

    # SIGINT (Ctrl-C) and SIGTERM (ros2 launch, docker stop, timeout) end the recording between
    # two writes, so the bag is always closed with its index and metadata
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = record_topics(args.out, transport, args.topics, types_by_topic=types_by_topic,
                              storage=args.storage, duration_s=args.duration,
                              max_messages=args.max_messages,
                              qos=None if args.qos == "auto" else qos_from_string(args.qos),
                              stop=stop.is_set)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        transport.close()
    for topic in args.topics:
        print(f"{topic} [{stats.types[topic]}, {stats.qos[topic]}]: "
              f"{stats.received.get(topic, 0)} messages")
    reason = " (stopped by signal)" if stop.is_set() else ""
    print(f"wrote {args.out} ({args.storage}) in {stats.wall_s:.1f} s{reason}")
    return 0


# -- bag make-sample / info ------------------------------------------------------------------------

def add_make_sample_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="new bag folder (must not exist)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length (default 10)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate (default 30)")
    parser.add_argument("--people", type=int, default=3, help="walkers, 1-4 (default 3)")
    parser.add_argument("--size", type=int, default=320, help="square image side (default 320)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--compressed", choices=("jpeg", "png"), default=None,
                        help="write CompressedImage on /camera/image_raw/compressed instead of "
                             "raw rgb8 (a 10 s raw bag is ~140 MB)")


def run_make_sample(args: argparse.Namespace) -> int:
    from .reader import BagReader
    from .sample import make_sample_bag

    frames = int(round(args.seconds * args.fps))
    bar, update = _progress(frames, "render")
    start = time.monotonic()
    try:
        path = make_sample_bag(args.out, seconds=args.seconds, fps=args.fps, people=args.people,
                               size=args.size, seed=args.seed, storage=args.storage,
                               compressed=args.compressed, progress=update)
    finally:
        bar.close()
    print(f"wrote {path} ({args.storage}): {frames} frames at {args.fps:g} Hz, "
          f"{args.people} people, in {time.monotonic() - start:.1f} s")
    with BagReader(path) as bag:
        for t in bag.topics():
            print(f"  {t.topic} [{t.type_name}] {t.count} msgs")
    return 0


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 folder or file, or a ROS 1 .bag")


def run_info(args: argparse.Namespace) -> int:
    from .reader import BagReader

    with BagReader(args.bag) as bag:
        print(f"bag:      {bag.path}")
        print(f"duration: {bag.duration_ns / 1e9:.2f} s")
        for t in bag.topics():
            print(f"  {t.topic}  [{t.type_name}]  {t.count} msgs  {t.reliability}/{t.durability}")
    return 0
