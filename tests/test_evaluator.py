"""Tests of dhns.evaluation: filter index, ranking with ties / filtering / NaN, categories."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from dhns.data.kg import CATEGORY_NAMES
from dhns.evaluation import (
    FilterIndex,
    LinkPredictor,
    evaluate,
    metrics_from_ranks,
    rank_targets,
    relation_categories,
    triple_categories,
)

NAN = float("nan")


class TableModel:
    """Scores looked up in fixed tables: row ``h * R + r`` (tails) and ``t * R + r`` (heads)."""

    def __init__(self, tail_table: Tensor, head_table: Tensor, num_relations: int) -> None:
        self.tail_table, self.head_table, self.num_relations = tail_table, head_table, num_relations

    def score_tails(self, heads: Tensor, relations: Tensor) -> Tensor:
        return self.tail_table[heads * self.num_relations + relations]

    def score_heads(self, relations: Tensor, tails: Tensor) -> Tensor:
        return self.head_table[tails * self.num_relations + relations]


# --- A hand-built problem: N = 6 entities, R = 2 relations. --------------------------------
N, R = 6, 2
TEST = torch.tensor([[0, 0, 1], [2, 1, 3], [3, 0, 4]])
KNOWN = torch.tensor([[0, 0, 0], [4, 1, 3]])  # train/valid triples used by the filter


def _hand_model() -> TableModel:
    tails = torch.zeros(N * R, N)
    heads = torch.zeros(N * R, N)
    # (0, 0, ?) target 1 (score 3). Entity 0 (5 > 3) is a known tail -> filtered; 2, 3 tie.
    tails[0 * R + 0] = torch.tensor([5.0, 3, 3, 3, 1, 0])
    # (?, 0, 1) target 0 (score 2). Entity 1 scores 4: unfiltered, strictly better.
    heads[1 * R + 0] = torch.tensor([2.0, 4, 1, 0, 0, 0])
    # (2, 1, ?) target 3, alone at the top.
    tails[2 * R + 1] = torch.tensor([0.0, 0, 0, 9, 0, 0])
    # (?, 1, 3) target 2: all six tie, head 4 is known -> filtered.
    heads[3 * R + 1] = torch.zeros(N)
    # (3, 0, ?) target 4 has a NaN score -> worst rank.
    tails[3 * R + 0] = torch.tensor([0.0, 1, 2, 3, NAN, 5])
    # (?, 0, 4) target 3 (score 1); entity 0 is NaN -> counts as better.
    heads[4 * R + 0] = torch.tensor([NAN, 0, 0, 1, 0, 0])
    return TableModel(tails, heads, R)


# Hand-computed (optimistic, pessimistic) per side, in TEST order.
EXPECTED = {
    "tail": ([1, 1, 6], [3, 1, 6]),
    "head": ([2, 1, 2], [2, 5, 2]),
}


def _hand_filter() -> FilterIndex:
    return FilterIndex(torch.cat([KNOWN, TEST]), num_relations=R)


def _five(ranks: list[float]) -> dict[str, float]:
    out = {
        "mrr": sum(1 / x for x in ranks) / len(ranks),
        "mr": sum(ranks) / len(ranks),
        **{f"hits@{k}": sum(x <= k for x in ranks) / len(ranks) for k in (1, 3, 10)},
    }
    return {k: round(v, 6) for k, v in out.items()}


def test_protocol() -> None:
    assert isinstance(_hand_model(), LinkPredictor)


def test_rank_targets_ties_filter_nan_by_hand() -> None:
    model, fi = _hand_model(), _hand_filter()
    h, r, t = TEST.unbind(1)
    for side, (opt_exp, pes_exp) in EXPECTED.items():
        scores = model.score_tails(h, r) if side == "tail" else model.score_heads(r, t)
        before = scores.clone()
        anchors, targets = (h, t) if side == "tail" else (t, h)
        rows, cols = fi.answers(anchors, r, side)
        opt, pes = rank_targets(scores, targets, rows, cols)
        assert opt.tolist() == opt_exp, side
        assert pes.tolist() == pes_exp, side
        assert torch.equal(scores.isnan(), before.isnan())  # not modified
        assert torch.equal(scores.nan_to_num(), before.nan_to_num())


def test_evaluate_by_hand() -> None:
    model, fi = _hand_model(), _hand_filter()
    cats = torch.tensor([0, 0, 3])
    res = evaluate(model, TEST, fi, N, categories=cats, batch_size=2, progress=False)

    real = {s: [(o + p) / 2 for o, p in zip(*EXPECTED[s], strict=True)] for s in EXPECTED}
    opt = {s: EXPECTED[s][0] for s in EXPECTED}
    # realistic ranks: tail [2, 1, 6], head [2, 3, 2]
    assert real == {"tail": [2, 1, 6], "head": [2, 3, 2]}
    assert res["count"] == 3
    assert res["mrr"] == pytest.approx(0.5)
    assert res["mr"] == pytest.approx(16 / 6, abs=1e-6)
    assert res["hits@1"] == pytest.approx(1 / 6, abs=1e-6)
    assert res["hits@3"] == pytest.approx(5 / 6, abs=1e-6)
    assert res["hits@10"] == 1.0
    for key, value in _five(real["head"] + real["tail"]).items():
        assert res[key] == value
    assert res["optimistic"] == _five(opt["head"] + opt["tail"])
    assert res["optimistic"]["mrr"] == pytest.approx(25 / 36, abs=1e-6)
    assert res["by_side"] == {"head": _five(real["head"]), "tail": _five(real["tail"])}
    assert set(res["by_category"]) == {"1-1", "n-n"}
    assert res["by_category"]["1-1"] == {
        **_five(real["head"][:2] + real["tail"][:2]), "count": 2}
    assert res["by_category"]["n-n"] == {**_five([real["head"][2], real["tail"][2]]), "count": 1}
    # Plain Python floats, rounded.
    assert all(type(v) is float for v in res["optimistic"].values())
    assert type(res["mrr"]) is float


def test_evaluate_single_side_and_no_categories() -> None:
    res = evaluate(_hand_model(), TEST, _hand_filter(), N, sides=("tail",), progress=False)
    assert "by_category" not in res
    assert set(res["by_side"]) == {"tail"}
    assert res["mr"] == pytest.approx(3.0)


def test_target_never_filtered_and_unfiltered_worse() -> None:
    # Without any filter entity 0 (score 5) beats the target of (0, 0, 1).
    model = _hand_model()
    res = evaluate(model, TEST[:1], FilterIndex(TEST[:1], R), N, sides=("tail",), progress=False)
    assert res["optimistic"]["mr"] == 2.0  # entity 0 now counts
    assert res["mr"] == 3.0  # (2 + 4) / 2
    # Filter contains the target: still ranked.
    res = evaluate(model, TEST[:1], _hand_filter(), N, sides=("tail",), progress=False)
    assert res["optimistic"]["mr"] == 1.0


def test_all_nan_model_is_worst() -> None:
    nan_table = torch.full((N * R, N), NAN)
    model = TableModel(nan_table, nan_table, R)
    res = evaluate(model, TEST, FilterIndex(TEST, R), N, progress=False)
    assert res["mr"] == N and res["optimistic"]["mr"] == N
    assert res["hits@10"] == 1.0 and res["hits@1"] == 0.0


def test_nan_candidate_beats_infinite_target() -> None:
    scores = torch.tensor([[math.inf, NAN, 0.0, math.inf]])
    empty = torch.zeros(0, dtype=torch.int64)
    opt, pes = rank_targets(scores, torch.tensor([0]), empty, empty)
    # NaN strictly better, the other +inf ties.
    assert (opt.item(), pes.item()) == (2, 3)


def _brute_ranks(
    model: TableModel, triples: Tensor, known: Tensor, side: str
) -> tuple[list[int], list[int]]:
    """Per-query reference with Python sets and scalar comparisons."""
    known_set = {tuple(x) for x in known.tolist()}
    opt, pes = [], []
    for h, r, t in triples.tolist():
        if side == "tail":
            row = model.score_tails(torch.tensor([h]), torch.tensor([r]))[0].tolist()
            target, candidates = t, [(h, r, e) for e in range(len(row))]
        else:
            row = model.score_heads(torch.tensor([r]), torch.tensor([t]))[0].tolist()
            target, candidates = h, [(e, r, t) for e in range(len(row))]
        s = row[target]
        others = [row[e] for e, c in enumerate(candidates) if e != target and c not in known_set]
        if math.isnan(s):
            opt.append(1 + len(others))
            pes.append(1 + len(others))
            continue
        gt = sum(math.isnan(x) or x > s for x in others)
        ge = sum(math.isnan(x) or x >= s for x in others)
        opt.append(1 + gt)
        pes.append(1 + ge)
    return opt, pes


def _random_problem(seed: int, n_ent: int = 15, n_rel: int = 3, n_known: int = 120):
    g = torch.Generator().manual_seed(seed)
    known = torch.stack(
        [
            torch.randint(0, n_ent, (n_known,), generator=g),
            torch.randint(0, n_rel, (n_known,), generator=g),
            torch.randint(0, n_ent, (n_known,), generator=g),
        ],
        1,
    )
    test = known[torch.randperm(n_known, generator=g)[:40]]
    # Small integer scores: many ties; sprinkle NaNs.
    tables = [
        torch.randint(0, 4, (n_ent * n_rel, n_ent), generator=g).float() for _ in range(2)
    ]
    for tab in tables:
        tab[torch.rand(tab.shape, generator=g) < 0.03] = NAN
    return TableModel(tables[0], tables[1], n_rel), known, test, n_ent


def test_against_brute_force_and_batch_invariance() -> None:
    model, known, test, n_ent = _random_problem(0)
    fi = FilterIndex(known)
    results = [
        evaluate(model, test, fi, n_ent, categories=test[:, 1] % 4, batch_size=b, progress=False)
        for b in (1, 7, 256)
    ]
    assert results[0] == results[1] == results[2]
    calls: list[int] = []
    score_tails = model.score_tails
    model.score_tails = lambda h, r: (calls.append(len(h)), score_tails(h, r))[1]
    # A budget of 3 rows of N scores: batches of 3 whatever batch_size asks for.
    budgeted = evaluate(model, test, fi, n_ent, categories=test[:, 1] % 4, batch_size=256,
                        progress=False, score_budget=3 * n_ent + 1)
    assert budgeted == results[0] and max(calls) == 3
    del model.score_tails

    h, r, t = test.unbind(1)
    for side in ("head", "tail"):
        exp_opt, exp_pes = _brute_ranks(model, test, known, side)
        scores = model.score_tails(h, r) if side == "tail" else model.score_heads(r, t)
        anchors, targets = (h, t) if side == "tail" else (t, h)
        opt, pes = rank_targets(scores, targets, *fi.answers(anchors, r, side))
        assert opt.tolist() == exp_opt
        assert pes.tolist() == exp_pes
        real = [(a + b) / 2 for a, b in zip(exp_opt, exp_pes, strict=True)]
        assert results[0]["by_side"][side] == metrics_from_ranks(torch.tensor(real))


def test_filter_index_matches_set_reference() -> None:
    g = torch.Generator().manual_seed(1)
    n_ent, n_rel, n = 40, 5, 600
    triples = torch.stack(
        [
            torch.randint(0, n_ent, (n,), generator=g),
            torch.randint(0, n_rel, (n,), generator=g),
            torch.randint(0, n_ent, (n,), generator=g),
        ],
        1,
    )
    triples = torch.cat([triples, triples[:50]])  # duplicates
    fi = FilterIndex(triples, num_relations=n_rel)
    ref: dict[str, dict[tuple[int, int], set[int]]] = {"head": {}, "tail": {}}
    for h, r, t in triples.tolist():
        ref["tail"].setdefault((h, r), set()).add(t)
        ref["head"].setdefault((t, r), set()).add(h)
    anchors = torch.randint(0, n_ent + 3, (300,), generator=g)  # includes unseen entities
    rels = torch.randint(0, n_rel, (300,), generator=g)
    for side in ("head", "tail"):
        rows, cols = fi.answers(anchors, rels, side)
        assert bool((rows[1:] >= rows[:-1]).all())
        got: dict[int, set[int]] = {}
        for i, c in zip(rows.tolist(), cols.tolist(), strict=True):
            got.setdefault(i, set()).add(c)
        assert len(rows) == sum(len(s) for s in got.values())  # no duplicate pairs
        for i, (a, rel) in enumerate(zip(anchors.tolist(), rels.tolist(), strict=True)):
            assert got.get(i, set()) == ref[side].get((a, rel), set())
    empty = torch.zeros(0, dtype=torch.int64)
    assert fi.answers(empty, empty, "tail")[0].numel() == 0
    with pytest.raises(ValueError):
        fi.answers(anchors, rels, "sideways")


def test_relation_categories() -> None:
    train = torch.tensor(
        [
            [0, 0, 1], [2, 0, 3], [0, 0, 1], [0, 0, 1],  # r0 1-1 (duplicates ignored)
            [0, 1, 1], [0, 1, 2], [0, 1, 3],  # r1 1-n: one head, many tails
            [1, 2, 0], [2, 2, 0], [3, 2, 0],  # r2 n-1
            [0, 3, 1], [0, 3, 2], [1, 3, 1], [1, 3, 2],  # r3 n-n: tph = hpt = 2
        ]
    )
    cats = relation_categories(train, num_relations=5)  # r4 absent -> 1-1
    assert [CATEGORY_NAMES[c] for c in cats.tolist()] == ["1-1", "1-n", "n-1", "n-n", "1-1"]
    triples = torch.tensor([[5, 3, 6], [7, 1, 8], [0, 4, 0]])
    assert triple_categories(triples, cats).tolist() == [3, 1, 0]


class _DotModel(nn.Module):
    def __init__(self, n_ent: int, n_rel: int, dim: int = 8) -> None:
        super().__init__()
        self.ent = nn.Embedding(n_ent, dim)
        self.rel = nn.Embedding(n_rel, dim)

    def score_tails(self, heads: Tensor, relations: Tensor) -> Tensor:
        return (self.ent(heads) * self.rel(relations)) @ self.ent.weight.T

    def score_heads(self, relations: Tensor, tails: Tensor) -> Tensor:
        return (self.ent(tails) * self.rel(relations)) @ self.ent.weight.T


def test_module_mode_restored() -> None:
    model, known, test, n_ent = _random_problem(2)
    dot = _DotModel(n_ent, 3).train()
    res = evaluate(dot, test, FilterIndex(known), n_ent, progress=False)
    assert dot.training
    assert 0 < res["mrr"] <= 1 and res["optimistic"]["mrr"] >= res["mrr"]
    with pytest.raises(ValueError):
        evaluate(dot, test, FilterIndex(known), n_ent + 1, progress=False)
