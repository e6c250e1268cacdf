"""Issue 27's figure: what the gateway costs. The zero-compute model (what a request costs
without the network's work) through nginx (a bearer token, least_conn, one replica), with
TLS and without, against the same replica reached directly, with the native engine's
closed loop at each concurrency, both protocols; the three alternate, trial by trial.

    .venv/bin/python bench/gateway_cost.py [--seconds 3] [--trials 3] [--concurrency 1,2,4,8]
"""

from __future__ import annotations

import argparse
import time
from statistics import median

from common import ROOT, Figures

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint, TlsOptions
from sonic_bench.engine.loop import ClosedLoop
from sonic_bench.measure.records import Clock
from sonic_bench.model.repository import MODEL_CALIBRATION, export_onnx
from sonic_bench.process import free_port
from sonic_bench.triton.deployment import Deployment, GatewayOptions
from sonic_bench.triton.gateway import Gateway, GatewayConfig
from sonic_bench.triton.server import ServerConfig
from sonic_bench.workload.batching import SMALL_BATCH_SETTING
from sonic_bench.workload.pool import simulated_pool


def loop_rate(endpoint: Endpoint, batches: EncodedBatches, concurrency: int, seconds: float):
    """Inferences per second a closed loop of `concurrency` sustains, the first half
    second left out (connections, TLS handshakes)."""
    make = lambda: InferClient(endpoint, MODEL_CALIBRATION, batches)  # noqa: E731
    loop = ClosedLoop(make, concurrency, Clock())
    loop.start()
    began = time.time()
    time.sleep(0.5 + seconds)
    loop.stop()
    records = [r for r in loop.log.records() if r.t_send >= began + 0.5]
    if loop.failure or any(not r.ok for r in records):
        raise SystemExit(f"requests failed: {loop.failure or loop.log.last_error()}")
    return sum(r.batch_size for r in records) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--concurrency", default="1,2,4,8")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    figures = Figures()
    export_onnx(ROOT / "model_repository")
    config = ServerConfig(
        repository=ROOT / "model_repository" / "embedded",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        models=(MODEL_CALIBRATION,),
    )
    patches = [b.patches for b in simulated_pool(SMALL_BATCH_SETTING).sample(8)]
    batches = EncodedBatches(patches)
    average = sum(map(len, patches)) / len(patches)
    print(f"zero-compute model, batch ~{average:.0f}, gateway: nginx, TLS, token, 1 replica")
    with Deployment(config, 1, GatewayOptions()).start() as deployment:
        (replica,) = deployment.reached_replicas()
        plain = GatewayConfig(
            replicas=((replica.grpc_url, replica.http_url),),
            grpc_port=free_port(),
            http_port=free_port(),
            token=deployment.token,
            tls=False,
        )
        tls = TlsOptions(ca=str(deployment.gateway.certificate))
        with Gateway(plain).start() as second:
            for protocol in ("grpc", "http"):

                def door(gateway_url: str, ssl: bool, protocol: str = protocol) -> Endpoint:
                    options = tls if ssl else TlsOptions()
                    return Endpoint(gateway_url, protocol, ssl, deployment.headers, tls=options)

                doors = {
                    "gateway, TLS": door(
                        deployment.grpc_url if protocol == "grpc" else deployment.http_url, True
                    ),
                    "gateway, plain": door(
                        second.grpc_url if protocol == "grpc" else second.http_url, False
                    ),
                    "direct": Endpoint(replica.url(protocol), protocol),
                }
                for c in levels:
                    rates: dict[str, list[float]] = {name: [] for name in doors}
                    for _ in range(args.trials):
                        for name, endpoint in doors.items():
                            rates[name].append(loop_rate(endpoint, batches, c, args.seconds))
                    label = f"{protocol} c{c}"
                    for name, values in rates.items():
                        figures.value(f"{label}: {name} inf/s", median(values))
                    for name in ("gateway, TLS", "gateway, plain"):
                        figures.ratio(f"{label}: {name} / direct", rates[name], rates["direct"])
    figures.exit()


if __name__ == "__main__":
    main()
