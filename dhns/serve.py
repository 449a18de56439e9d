"""``dhns serve``: a small HTTP API over one resident model (standard library only).

Endpoints (JSON in and out):

- ``GET /health`` -> ``{"status": "ok", "dataset", "entities", "relations"}``;
- ``POST /predict`` with ``{"queries": [{"head": H, "relation": R, "k": 10}, ...]}`` (a query
  names ``head`` to ask for tails, or ``tail`` to ask for heads; entities and relations by
  name or key) -> ``{"results": [{"query": ..., "predictions": [{"rank", "entity", "score",
  "known"}]} or {"query": ..., "error": "..."}]}``.

The model is loaded once, so a query costs the scoring of one row of entities. A bad query
gets its own ``error`` entry; a malformed request body gets HTTP 400 with ``{"error": ...}``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from dhns.api import TrainedModel
from dhns.errors import UserError

#: Most queries one request may carry, and the largest k (keeps one request bounded).
MAX_QUERIES, MAX_K = 1024, 1000


def parse_query(model: TrainedModel, query: Any) -> tuple[str, int, int, int]:
    """``(side, anchor id, relation id, k)`` of one query; UserError saying what is wrong."""
    if not isinstance(query, dict):
        raise UserError("a query is an object with head or tail, relation and k")
    unknown = sorted(set(query) - {"head", "tail", "relation", "k"})
    if unknown:
        raise UserError(f"unknown field {unknown[0]!r} (known: head, tail, relation, k)")
    head, tail, relation = query.get("head"), query.get("tail"), query.get("relation")
    k = query.get("k", 10)
    if (head is None) == (tail is None):
        raise UserError("give exactly one of head (predict tails) or tail (predict heads)")
    if not isinstance(relation, str) or not isinstance(head if tail is None else tail, str):
        raise UserError("entities and relations are given by name or key")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise UserError(f"k must be an integer in [1, {MAX_K}]")
    side = "tail" if head is not None else "head"
    return side, model.entity_id(head if head is not None else tail), \
        model.relation_id(relation), k


def answer(model: TrainedModel, queries: list[Any]) -> list[dict[str, Any]]:
    """Every query's result (or its error), in order; the valid ones of each side are
    scored in one call."""
    results: list[dict[str, Any]] = [{"query": q} for q in queries]
    parsed: dict[str, list[tuple[int, int, int, int]]] = {"tail": [], "head": []}
    for i, query in enumerate(queries):
        try:
            side, anchor, relation, k = parse_query(model, query)
            parsed[side].append((i, anchor, relation, k))
        except UserError as exc:
            results[i]["error"] = str(exc)
    predictor = model.predictor  # the fused entity table, computed once at load
    for side, rows in parsed.items():
        if not rows:
            continue
        anchors = torch.tensor([a for _, a, _, _ in rows], device=predictor.device)
        relations = torch.tensor([r for _, _, r, _ in rows], device=predictor.device)
        with torch.inference_mode():
            scores = (predictor.score_tails(anchors, relations) if side == "tail"
                      else predictor.score_heads(relations, anchors)).float().cpu()
        for row, (i, anchor, relation, k) in zip(scores, rows, strict=True):
            results[i]["predictions"] = [dataclasses.asdict(p) for p in
                                         model.ranked(row, anchor, relation, side, k)]
    return results


def make_server(model: TrainedModel, host: str = "127.0.0.1", port: int = 8000,
                log: bool = False) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0: any free one) answering for ``model``."""
    lock = threading.Lock()  # one scoring at a time: torch already uses every core it has

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path != "/health":
                return self._send(404, {"error": f"no endpoint {self.path} (GET /health, "
                                                 "POST /predict)"})
            graph = model.graph
            self._send(200, {"status": "ok", "dataset": graph.name,
                             "entities": graph.num_entities, "relations": graph.num_relations})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/predict":
                return self._send(404, {"error": f"no endpoint {self.path} (POST /predict)"})
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                queries = body.get("queries") if isinstance(body, dict) else None
                if not isinstance(queries, list) or not 1 <= len(queries) <= MAX_QUERIES:
                    raise UserError(f"expected {{\"queries\": [...]}} with 1 to {MAX_QUERIES} "
                                    "queries")
            except (ValueError, UnicodeDecodeError) as exc:
                return self._send(400, {"error": str(exc)})
            with lock:
                results = answer(model, queries)
            self._send(200, {"results": results})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            if log:
                super().log_message(format, *args)

    return ThreadingHTTPServer((host, port), Handler)
