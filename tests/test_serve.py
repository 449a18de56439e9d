"""``dhns serve``: health, batches of queries by name, per-query errors, bad requests."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
import torch

import dhns
from dhns.config import KGEConfig, SyntheticConfig
from dhns.data import generate_synthetic, load_dataset
from dhns.kge.build import build_kge
from dhns.serve import make_server
from dhns.training.checkpoint import save_kge


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("serve")
    dataset = root / "toy"
    generate_synthetic(SyntheticConfig(num_entities=40, num_types=2, num_relations=2,
                                       triples_per_relation=40, image_size=8), dataset)
    kg, _ = load_dataset(dataset)
    kge, _ = build_kge(KGEConfig(dim=8, modalities=["structure"]), kg, {},
                       torch.Generator().manual_seed(0))
    save_kge(root / "model.pt", kge, vocabulary=kg.vocabulary())
    model = dhns.load(root / "model.pt", dataset)
    server = make_server(model, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield model, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _call(url: str, body: object | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health(served) -> None:
    model, url = served
    status, body = _call(f"{url}/health")
    assert status == 200 and body["status"] == "ok"
    assert body["entities"] == model.graph.num_entities


def test_a_batch_of_queries_by_name(served) -> None:
    model, url = served
    kg = model.graph
    head, relation = kg.entity_names[0], kg.relation_names[1]
    status, body = _call(f"{url}/predict", {"queries": [
        {"head": head, "relation": relation, "k": 3},
        {"tail": kg.entity_keys[2], "relation": relation.upper()},
        {"head": "nobody", "relation": relation},
        {"head": head, "tail": head, "relation": relation}]})
    assert status == 200
    first, second, unknown, both = body["results"]
    expected = model.predict_tails(head, relation, 3)
    assert [p["entity"] for p in first["predictions"]] == [p.entity for p in expected]
    assert first["predictions"][0]["score"] == pytest.approx(expected[0].score)
    assert len(second["predictions"]) == 10  # the default k
    assert "unknown entity 'nobody'" in unknown["error"]
    assert "exactly one of head" in both["error"]


def test_bad_requests(served) -> None:
    _, url = served
    assert _call(f"{url}/predict", {"query": []})[0] == 400
    assert _call(f"{url}/predict", {"queries": []})[0] == 400
    assert _call(f"{url}/nothing")[0] == 404
    status, body = _call(f"{url}/predict", {"queries": [{"head": "x", "relation": "r",
                                                          "k": 0}]})
    assert status == 200 and "k must be an integer" in body["results"][0]["error"]
