"""``hmr-ros eval --ray ADDRESS``: the bag evaluation of `hmr_ros.eval.bag_eval` fanned out
over a Ray cluster, for bag sets too large for one machine's ``--workers``.

Usage: on a cluster's head node (or any machine that can reach it),
``hmr-ros eval BAGS --report DIR --ray auto`` (or ``--ray ray://HEAD:10001`` through Ray
Client, ``--ray HEAD:6379`` for the GCS address); on one machine ``hmr-ros eval BAGS
--report DIR --ray local`` starts a private single-node Ray for the run and stops it after.

One Ray actor per worker builds the node's pipeline once (`bag_eval.build_pipeline` on the
same ``-p`` parameters) and evaluates one bag at a time; a bag goes to whichever actor is free
next, and the per-bag results come back in the order the bags were given, so merging them
(`bag_eval.merge_results`) gives the metrics of one process. What every node needs, since
nothing is shipped: hmr_ros (same version, with its model folder at the same path) and the
bags, at the *same paths* (a shared filesystem). A bag a node cannot read comes back as a
``skipped`` result with the reason, as does a corrupt one; an actor that dies (out of memory,
node lost, a pipeline that cannot be built) costs the bag it was running, which is reported
as ``skipped`` with the reason, and the other actors carry on with the rest.

Ctrl-C in the driver stops handing out bags, keeps every finished result and returns
``interrupted=True``; bags in flight are dropped (Ray does not interrupt a running actor
task), their actors are killed. The driver disconnects at the end; only a Ray this call
started (``local``) is shut down.

Ray 2.60 no longer has ``ray.init(local_mode=True)`` (it raises), so ``local`` is a real
single-node cluster (``ray.init(address="local")``: a few seconds to start) with as many CPUs
as workers, no dashboard and worker logs kept off the driver's terminal.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from hmr_ros.eval.bag_eval import BagResult

__all__ = ["evaluate_on_ray", "MISSING_RAY"]

log = logging.getLogger(__name__)

MISSING_RAY = "--ray needs Ray: pip install 'hmr_ros[cluster]' (ray==2.60.0)"
_LOCAL = "local"
_WAIT_S = 0.5  # ray.wait slices: short so that Ctrl-C in the driver is seen at once
_OBJECT_STORE_BYTES = 128 * 1024 * 1024  # results are small; a local Ray needs no big store


class _BagEvaluator:
    """The body of one Ray actor: the node's pipeline, built once, evaluating bag after bag."""

    def __init__(self, overrides: Dict[str, Any]) -> None:
        import signal

        from hmr_ros.eval import bag_eval

        try:  # Ctrl-C is the driver's to handle (it may reach local workers too)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: nothing to do
            pass
        self._pipeline, _, self._backend, _ = bag_eval.build_pipeline(dict(overrides))

    def evaluate(self, path: str, topics: Dict[str, str], name: str, kwargs: Dict[str, Any]
                 ) -> Tuple["BagResult", str]:
        from hmr_ros.eval import bag_eval

        result = bag_eval._evaluate_one(path, self._pipeline, topics, name,
                                        **{**kwargs, "progress": False})
        return result, self._backend


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError(MISSING_RAY) from exc
    return ray


def _connect(ray: Any, address: str, cpus: int) -> bool:
    """Connect the driver; False when it was connected already (the caller's connection,
    used as it is and left open)."""
    if ray.is_initialized():
        return False
    try:
        _init(ray, address, cpus)
    except Exception as exc:  # noqa: BLE001 - e.g. no cluster at that address
        raise RuntimeError(f"--ray {address}: cannot connect to Ray: {exc}") from exc
    return True


def _init(ray: Any, address: str, cpus: int) -> None:
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == _LOCAL:
        ray.init(address=_LOCAL, num_cpus=cpus, include_dashboard=False,
                 object_store_memory=_OBJECT_STORE_BYTES, **quiet)
    elif address.startswith("ray://"):  # Ray Client takes no driver-side options
        ray.init(address=address)
    else:
        ray.init(address=address, **quiet)


def _failure_reason(ray: Any, exc: BaseException) -> str:
    """A one-line reason for a bag whose Ray task failed."""
    import re

    from hmr_ros.eval.bag_eval import _skip_reason

    cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
    if isinstance(cause, BaseException):
        return _skip_reason(cause)
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Ray colours its tracebacks
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if getattr(exc, "actor_init_failed", False) and lines:
        # the message ends with the traceback of the actor's __init__: its last line is
        # the error itself ("ParameterError: ...")
        return f"Ray worker could not build the pipeline: {lines[-1]}"
    return f"Ray worker died ({type(exc).__name__}): " + " ".join(lines)[:400]


def evaluate_on_ray(address: str, bags: Sequence[str], names: Sequence[str],
                    topics: Dict[str, str], kwargs: Dict[str, Any], overrides: Dict[str, Any],
                    *, workers: int = 0, progress: bool = False
                    ) -> Tuple[List[Optional["BagResult"]], Optional[str], bool]:
    """-> (results aligned with bags, None where a bag was not run; backend name; interrupted)

    ``address``: ``"local"`` (a single-node Ray started for this call and shut down after) or
    an existing cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``; only
    disconnected from). ``workers``: actors, one CPU each; 0 = the cluster's CPUs. At most
    one actor per bag. ``kwargs``: `bag_eval.evaluate_bag`'s (``min_iou``, ``classes``,
    ``realtime``); ``overrides``: the node parameters each actor builds its pipeline from.
    A driver already connected to Ray (``ray.is_initialized()``) keeps its connection."""
    from hmr_ros.eval.bag_eval import BagResult

    ray = _import_ray()
    if len(names) != len(bags):
        raise ValueError(f"{len(bags)} bags but {len(names)} names")
    results: List[Optional[BagResult]] = [None] * len(bags)
    if not bags:
        return results, None, False
    wanted = max(0, int(workers or 0))
    local_cpus = max(1, min(wanted or os.cpu_count() or 1, len(bags)))
    connected_here = _connect(ray, address, local_cpus)
    backend: Optional[str] = None
    interrupted = False
    actors: List[Any] = []
    bar = None
    try:
        if not wanted:
            wanted = int(ray.cluster_resources().get("CPU", 1))
        count = max(1, min(wanted, len(bags)))
        remote_cls = ray.remote(num_cpus=1, max_restarts=0)(_BagEvaluator)
        actors = [remote_cls.remote(dict(overrides)) for _ in range(count)]
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(bags), desc="bags", unit="bag", leave=False)
        todo = list(range(len(bags)))[::-1]  # popped from the end: the bags in order
        free = list(actors)
        running: Dict[Any, Tuple[int, Any]] = {}  # object ref -> (bag index, actor)
        last_death = ""
        try:
            while todo or running:
                while todo and free:
                    i, actor = todo.pop(), free.pop(0)
                    ref = actor.evaluate.remote(str(bags[i]), dict(topics), names[i],
                                                dict(kwargs))
                    running[ref] = (i, actor)
                if not running:  # every actor is gone: nothing can run the rest
                    for i in todo:
                        results[i] = BagResult(str(bags[i]), names[i], status="skipped",
                                               reason=f"not run: no Ray worker left "
                                                      f"({last_death})")
                    todo = []
                    break
                done, _ = ray.wait(list(running), num_returns=1, timeout=_WAIT_S)
                for ref in done:
                    i, actor = running.pop(ref)
                    try:
                        results[i], name = ray.get(ref)
                        backend = backend or name
                        free.append(actor)
                    except ray.exceptions.RayActorError as exc:
                        last_death = _failure_reason(ray, exc)
                        results[i] = BagResult(str(bags[i]), names[i], status="skipped",
                                               reason=last_death)
                        log.warning("skipping %s: %s", bags[i], last_death)
                    except ray.exceptions.RayError as exc:  # the task failed, not the actor
                        results[i] = BagResult(str(bags[i]), names[i], status="skipped",
                                               reason=_failure_reason(ray, exc))
                        log.warning("skipping %s: %s", bags[i], results[i].reason)
                        free.append(actor)
                    log.debug("finished %s: %s", bags[i], results[i].status)
                    if bar is not None:
                        bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: keeping the %d bags finished so far",
                        sum(r is not None for r in results))
    finally:
        if bar is not None:
            bar.close()
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already dead or the connection is gone
                pass
        if connected_here:
            ray.shutdown()  # stops a Ray this call started (local); otherwise disconnects
    return results, backend, interrupted
