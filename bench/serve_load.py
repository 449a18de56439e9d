"""Load figures of ``dhns serve``: latency of one query and throughput of batched queries.

    python -m bench.serve_load --checkpoint ../base-mkgy0/artifacts/pretrain/model.pt \\
        --dataset ../base-mkgy0/artifacts/prepared [--requests 200] [--batch 64]

The server runs in this process (a thread), the client sends sequential HTTP requests on
127.0.0.1 with random training heads and relations, so the figures include HTTP and JSON
but no network. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
import urllib.request
from pathlib import Path

import torch

import dhns
from dhns.serve import make_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    start = time.perf_counter()
    model = dhns.load(args.checkpoint, args.dataset, fused=True)
    load_seconds = time.perf_counter() - start
    server = make_server(model, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/predict"
    kg, rng = model.graph, random.Random(0)

    def queries(n: int) -> list[dict]:
        rows = [kg.train[rng.randrange(len(kg.train))].tolist() for _ in range(n)]
        return [{"head": kg.entity_keys[h], "relation": kg.relation_keys[r], "k": args.k}
                for h, r, _ in rows]

    def post(body: dict) -> float:
        data = json.dumps(body).encode()
        began = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as r:
            r.read()
        return time.perf_counter() - began

    post({"queries": queries(1)})  # warm-up
    single = [post({"queries": queries(1)}) for _ in range(args.requests)]
    batches = [post({"queries": queries(args.batch)}) for _ in range(max(1, args.requests // 10))]
    server.shutdown()
    median = statistics.median(single) * 1000
    p95 = sorted(single)[int(0.95 * len(single)) - 1] * 1000
    batch_qps = args.batch / statistics.median(batches)
    print(f"| model | entities | load s | 1 query: median ms | p95 ms | batch of {args.batch}: "
          "queries/s | torch threads |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {model.kge.config.model} d={model.kge.config.dim} | {kg.num_entities} | "
          f"{load_seconds:.1f} | {median:.1f} | {p95:.1f} | {batch_qps:.0f} | "
          f"{torch.get_num_threads()} |")


if __name__ == "__main__":
    main()
