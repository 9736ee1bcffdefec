"""`bert14 serve ARTIFACT --replicas N`: the same server as N Ray Serve replicas behind one HTTP port.

    Ray Serve's HTTP proxy (host:port)  ->  replica 1: Classifier + the server of runtime/server.py
                                        ->  replica 2: ...            (each its own micro-batcher)
    metrics board (a named Ray actor)   <-  every replica's counters, pushed once a second

Every replica runs `create_app` unchanged: the /v1 and /v2 routes, limits, API key and
micro-batching are the single server's. A replica reserves `threads_per_replica` CPUs and gives
ONNX Runtime that many threads. Overload is Ray Serve's: past `max_queued_requests` waiting
requests the proxy answers 503 at once. GET /metrics, answered by any replica, holds every
replica's series with a `replica` label (up to a second old): sum over it for the deployment.

For your own Ray cluster or KubeRay, `build` is an application builder:

    serve run bert14.scale.replicas:build artifact=/models/bert14 replicas=4 threads_per_replica=2

The HTTP proxy's own settings (timeouts, connection limits) are Ray Serve's, not `bert14 serve`'s
--header-timeout, --body-timeout and --max-connections, which apply to one process only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import serve

from bert14.errors import InputError, ServeError
from bert14.runtime import Classifier, LoadOptions
from bert14.runtime.classifier import positive_int
from bert14.runtime.listener import api_key_from, auth_note, bind
from bert14.runtime.metrics import Metric, render_all
from bert14.runtime.server import Hooks, ServerOptions, create_app
from bert14.scale.cluster import join

log = logging.getLogger("bert14.scale")

APP = "bert14"  # the Serve application and deployment name
BOARD = "bert14-metrics"  # the metrics board's actor name (namespace "bert14")
NAMESPACE = "bert14"


@dataclass(frozen=True)
class ReplicaOptions:
    replicas: int = 2
    threads_per_replica: int = 1
    max_ongoing_requests: int = 128  # per replica: room for the micro-batcher to gather requests
    max_queued_requests: int = 512  # waiting in the proxy for a replica; beyond it 503 at once
    address: str | None = None  # None: a local Ray on this machine

    def __post_init__(self) -> None:
        positive_int("replicas", self.replicas, 10_000)
        positive_int("threads_per_replica", self.threads_per_replica, 1024)
        positive_int("max_ongoing_requests", self.max_ongoing_requests, 1 << 20)
        positive_int("max_queued_requests", self.max_queued_requests, 1 << 20)


@ray.remote(num_cpus=0)
class MetricsBoard:
    """The last counters each replica published; renders them all, one `replica` label each."""

    def __init__(self) -> None:
        self.parts: dict[str, list[Metric]] = {}

    def put(self, replica: str, snapshot: list[Metric]) -> None:
        self.parts[replica] = snapshot

    def text(self) -> str:
        return render_all(self.parts, "replica")


def _board() -> ray.actor.ActorHandle:
    return MetricsBoard.options(name=BOARD, namespace=NAMESPACE, get_if_exists=True, lifetime="detached").remote()  # type: ignore[attr-defined]


@serve.ingress()
class Replica:
    """One replica: the artifact loaded once, served by runtime/server.py's app."""

    def __init__(self, artifact: str, load: dict, server: dict) -> None:
        self.clf = Classifier.load(artifact, LoadOptions.from_dict(load))
        self.options = ServerOptions(**server)
        self.name = serve.get_replica_context().replica_id.unique_id
        self.board = _board()

    def __serve_build_asgi_app__(self) -> object:
        async def publish(snapshot: list[Metric]) -> None:
            await self.board.put.remote(self.name, snapshot)

        async def text() -> str:
            return await self.board.text.remote()

        return create_app(self.clf, self.options, Hooks(publish=publish, metrics_text=text))


def application(artifact: Path, load: LoadOptions, server: ServerOptions, options: ReplicaOptions) -> object:
    """The Serve application: `options.replicas` replicas of the server on `artifact`."""
    Classifier.files(artifact, load.precision, "cpu" if load.provider == "auto" else load.provider, load.engine)
    # Several processes share the cores: a thread spinning while it waits would take them from the others.
    load = dataclasses.replace(load, threads=options.threads_per_replica, spinning=options.replicas == 1)
    deployment = serve.deployment(Replica).options(
        name=APP,
        num_replicas=options.replicas,
        ray_actor_options={"num_cpus": options.threads_per_replica},
        max_ongoing_requests=options.max_ongoing_requests,
        max_queued_requests=options.max_queued_requests,
    )
    return deployment.bind(str(Path(artifact).resolve()), dataclasses.asdict(load), dataclasses.asdict(server))


def build(args: dict[str, str]) -> object:
    """Application builder for `serve run bert14.scale.replicas:build artifact=DIR [replicas=N]
    [threads_per_replica=T] [precision=int8] [engine=openvino] [model_name=bert14]`; the API key comes from
    BERT14_API_KEY, as for `bert14 serve`."""
    known = {"artifact", "replicas", "threads_per_replica", "precision", "engine", "model_name"}
    unknown = sorted(set(args) - known)
    if unknown or "artifact" not in args:
        raise InputError(
            f"serve run bert14.scale.replicas:build: expected artifact=DIR and {sorted(known)}, got {args}"
        )
    options = ReplicaOptions(int(args.get("replicas", 2)), int(args.get("threads_per_replica", 1)))
    engine = args.get("engine", LoadOptions.engine)
    load = LoadOptions(precision=args.get("precision", "auto"), provider="cpu", engine=engine)
    server = ServerOptions(model_name=args.get("model_name", "bert14"), api_key=api_key_from(None))
    return application(Path(args["artifact"]), load, server, options)


def _replica_count() -> int:
    status = serve.status().applications.get(APP)
    if status is None:
        return 0
    return sum(d.replica_states.get("RUNNING", 0) for d in status.deployments.values())


def serve_replicas(
    artifact: Path,
    load: LoadOptions,
    server: ServerOptions,
    options: ReplicaOptions,
    announce: Callable[[str], None] = print,
) -> None:
    """Start Ray (or join `options.address`), run the application on server.host:server.port until
    interrupted (Ctrl-C, SIGTERM), then take it down."""
    started = time.perf_counter()
    app = application(artifact, load, server, options)
    cpus = os.cpu_count() or 1
    if options.address is None and options.replicas * options.threads_per_replica > cpus:  # checked before Ray starts
        raise InputError(
            f"--replicas {options.replicas} x --threads-per-replica {options.threads_per_replica} need "
            f"{options.replicas * options.threads_per_replica} CPUs; this machine has {cpus}"
        )
    bind(server.host, server.port).close()  # an address in use is one line before Ray starts, not after
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    join(options.address, ServeError, NAMESPACE)
    try:
        try:
            serve.start(http_options={"host": server.host, "port": server.port})
        except Exception as exc:  # Serve's proxy could not bind: one line, as for one process
            cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ServeError(f"could not serve on {server.host}:{server.port}: {cause}") from exc
        serve.run(app, name=APP, route_prefix="/", blocking=False)
        announce(
            f"serving {artifact} at http://{server.host}:{server.port} with {_replica_count()} replicas x "
            f"{options.threads_per_replica} thread(s) on Ray Serve (ready in {time.perf_counter() - started:.1f} s), "
            f"{auth_note(server)}"
        )
        while True:
            time.sleep(1.0)
    finally:
        serve.shutdown()
        try:
            ray.kill(ray.get_actor(BOARD, namespace=NAMESPACE))
        except ValueError:
            pass  # never created
        ray.shutdown()
