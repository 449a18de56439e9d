"""Filtered link-prediction evaluation (docs/method.md, section 5).

Every test triple ``(h, r, t)`` is ranked twice, ``(h, r, ?)`` against all ``N`` entities as
tails and ``(?, r, t)`` against all entities as heads, after removing every other known true
answer (``FilterIndex`` over train + valid + test). The target itself is never filtered.

Ties. With ``s`` the target's score and only unfiltered candidates other than the target:

* optimistic rank  = 1 + #(scores >  s)   (what OpenKE-style evaluators report),
* pessimistic rank = 1 + #(scores >= s),
* realistic rank   = (optimistic + pessimistic) / 2   (the headline).

NaN. A NaN score never helps the target: a NaN candidate counts as strictly better than the
target (on both the optimistic and the pessimistic side), and a NaN target is ranked below every
unfiltered candidate (rank = 1 + number of unfiltered other candidates), so a model emitting
NaN cannot obtain rank 1 from comparisons that are all ``False``.

Hits@k uses ``rank <= k`` on the rank kind in question (realistic ranks may be x.5).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dhns.data.kg import CATEGORY_NAMES
from dhns.distributed import gather_shards, rank_and_world
from dhns.evaluation.filter import DIRECTIONS, FilterIndex

HITS_AT = (1, 3, 10)
METRIC_KEYS = ("mrr", "mr", "hits@1", "hits@3", "hits@10")


@runtime_checkable
class LinkPredictor(Protocol):
    """What the evaluator needs from a model. Higher scores = more plausible."""

    def score_tails(self, heads: Tensor, relations: Tensor) -> Tensor:
        """``(B,)``, ``(B,)`` int64 -> ``(B, N)`` scores of every entity as the tail."""
        ...

    def score_heads(self, relations: Tensor, tails: Tensor) -> Tensor:
        """``(B,)``, ``(B,)`` int64 -> ``(B, N)`` scores of every entity as the head."""
        ...


#: Default most scores held by one ranking call: 2**26 fp32 scores (256 MiB), so a batch of 256
#: queries is ranked whole up to 262,144 entities and in smaller batches beyond.
SCORE_BUDGET = 1 << 26


def rank_targets(
    scores: Tensor, targets: Tensor, filter_rows: Tensor, filter_cols: Tensor
) -> tuple[Tensor, Tensor]:
    """Filtered optimistic and pessimistic ranks of each row's target.

    ``scores`` is not modified: filtered entries are subtracted from the row counts instead of
    being overwritten, so a model may return a view of its own buffers.

    Args:
        scores: ``(B, N)`` float, higher = better.
        targets: ``(B,)`` int64 column of each row's true answer.
        filter_rows, filter_cols: ``(M,)`` int64 known true answers to drop (unique pairs, as
            :meth:`FilterIndex.answers` returns them); pairs equal to the target are ignored.

    Returns:
        ``(optimistic, pessimistic)``, both ``(B,)`` int64, 1-based.
    """
    b, n = scores.shape
    arange = torch.arange(b, device=scores.device)
    target_score = scores[arange, targets]  # (B,)
    ts = target_score[:, None]
    # Two passes over (B, N). NaN fails every comparison, so N - #(s <= t) counts
    # candidates that are > t *or NaN*, and N - #(s < t) those that are >= t or NaN:
    # NaN competitors beat the target strictly, with no separate isnan pass.
    better = n - (scores <= ts).sum(1)  # > target or NaN
    better_eq = n - (scores < ts).sum(1)  # >= target or NaN

    # Remove the contributions of filtered candidates (never the target itself).
    keep = filter_cols != targets[filter_rows]
    rows, cols = filter_rows[keep], filter_cols[keep]
    f_scores, f_target = scores[rows, cols], target_score[rows]
    zeros = torch.zeros(b, dtype=torch.int64, device=scores.device)
    better -= zeros.index_add(0, rows, (~(f_scores <= f_target)).long())
    better_eq -= zeros.index_add(0, rows, (~(f_scores < f_target)).long())
    n_filtered = zeros.index_add(0, rows, torch.ones_like(rows))

    target_nan = target_score.isnan()
    better_eq -= 1  # the target itself (t >= t; irrelevant when t is NaN, replaced below)
    # A NaN target loses to every unfiltered competitor.
    worst = n - n_filtered
    optimistic = torch.where(target_nan, worst, 1 + better)
    pessimistic = torch.where(target_nan, worst, 1 + better_eq)
    return optimistic, pessimistic


def metrics_from_ranks(ranks: Tensor) -> dict[str, float]:
    """MRR, MR and Hits@{1,3,10} of ``ranks`` ``(n,)`` (any real dtype), rounded to 6 places."""
    ranks = ranks.double()
    out = {"mrr": (1.0 / ranks).mean(), "mr": ranks.mean()}
    for k in HITS_AT:
        out[f"hits@{k}"] = (ranks <= k).double().mean()
    return {key: round(float(v), 6) for key, v in out.items()}


def _model_device(model: Any) -> torch.device:
    params = getattr(model, "parameters", None)
    if callable(params):
        try:
            return next(iter(params())).device
        except StopIteration:
            pass
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Put an ``nn.Module`` in eval mode for the duration, then restore its mode."""
    was_training = getattr(model, "training", None)
    if isinstance(was_training, bool) and callable(getattr(model, "train", None)):
        model.train(False)
        try:
            yield
        finally:
            model.train(was_training)
    else:
        yield


def _score(model: LinkPredictor, side: str, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
    if side == "tail":
        return model.score_tails(h, r)
    return model.score_heads(r, t)


def evaluate(
    model: LinkPredictor,
    triples: Tensor,
    filter_index: FilterIndex,
    num_entities: int,
    categories: Tensor | None = None,
    batch_size: int = 256,
    sides: Sequence[str] = ("head", "tail"),
    progress: bool = True,
    score_budget: int = SCORE_BUDGET,
) -> dict[str, Any]:
    """Filtered ranking metrics of ``model`` on ``triples``.

    Args:
        model: a :class:`LinkPredictor`; queries are sent to its device (that of its first
            parameter, CPU if it has none). Scores are cast to fp32.
        triples: ``(n, 3)`` int64 ``(head, relation, tail)`` to rank, ``n >= 1``.
        filter_index: known true triples (train + valid + test).
        num_entities: ``N``; every score row must be ``(N,)``.
        categories: ``(n,)`` int64 in 0..3 (``CATEGORY_NAMES``) or ``None`` to omit
            ``by_category`` (see :func:`dhns.evaluation.categories.kg_test_categories`).
        batch_size: queries per model call; peak extra memory is a few ``(B, N)`` tensors.
        score_budget: the most scores one call may return: ``B`` is lowered to
            ``score_budget // N`` (at least 1) on graphs so large that ``(batch_size, N)``
            would exceed it.
        sides: which sides to predict, a subset of ``("head", "tail")``.
        progress: show a tqdm bar.

    Returns:
        ``{"mrr", "mr", "hits@1", "hits@3", "hits@10"}`` over all ``len(sides) * n`` realistic
        ranks, plus ``"count"`` (``n``, the number of triples), ``"optimistic"`` (the same five
        from optimistic ranks), ``"by_side"`` (``{side: five}``, realistic) and, with
        ``categories``, ``"by_category"`` (``{name: five + "count"}`` for each non-empty
        category, realistic, both sides pooled). Floats are rounded to 6 places.
    """
    triples = torch.as_tensor(triples, dtype=torch.int64).cpu()
    if triples.ndim != 2 or triples.shape[1] != 3 or len(triples) == 0:
        raise ValueError(f"triples must be a non-empty (n, 3) tensor, got {tuple(triples.shape)}")
    sides = tuple(sides)
    if not sides or any(s not in DIRECTIONS for s in sides) or len(set(sides)) != len(sides):
        raise ValueError(f"sides must be distinct values from {DIRECTIONS}, got {sides}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    batch_size = max(1, min(batch_size, score_budget // max(1, num_entities)))
    n = len(triples)
    if categories is not None:
        categories = torch.as_tensor(categories, dtype=torch.int64).cpu().reshape(-1)
        if len(categories) != n:
            raise ValueError(f"categories has {len(categories)} entries for {n} triples")

    device = _model_device(model)
    # Under torch.distributed each rank ranks one contiguous shard of the triples; the ranks
    # are integers, gathered back in order, so every rank ends with the single-process result.
    rank, world = rank_and_world()
    shard = slice(rank * -(-n // world), min(n, (rank + 1) * -(-n // world)))
    triples = triples[shard]
    n_local = len(triples)
    n_batches = -(-n_local // batch_size)
    optimistic: dict[str, Tensor] = {}
    pessimistic: dict[str, Tensor] = {}
    bar = tqdm(total=n_batches * len(sides), desc="evaluate", disable=not progress, leave=False)
    with torch.inference_mode(), _eval_mode(model), bar:
        for side in sides:
            opt_parts, pes_parts = [], []
            for start in range(0, n_local, batch_size):
                batch = triples[start : start + batch_size]
                h, r, t = batch.unbind(1)
                anchors, targets = (h, t) if side == "tail" else (t, h)
                scores = _score(model, side, h.to(device), r.to(device), t.to(device))
                if scores.shape != (len(batch), num_entities):
                    raise ValueError(
                        f"score_{side}s returned {tuple(scores.shape)}, "
                        f"expected {(len(batch), num_entities)}"
                    )
                scores = scores.float()
                rows, cols = filter_index.answers(anchors, r, side)
                dev = scores.device
                o, p = rank_targets(scores, targets.to(dev), rows.to(dev), cols.to(dev))
                opt_parts.append(o.cpu())
                pes_parts.append(p.cpu())
                bar.update(1)
            empty = torch.zeros(0, dtype=torch.int64)
            optimistic[side] = gather_shards(torch.cat(opt_parts) if opt_parts else empty, n)
            pessimistic[side] = gather_shards(torch.cat(pes_parts) if pes_parts else empty, n)

    realistic = {s: (optimistic[s] + pessimistic[s]).double() / 2 for s in sides}
    all_real = torch.cat([realistic[s] for s in sides])
    all_opt = torch.cat([optimistic[s] for s in sides])
    result: dict[str, Any] = {**metrics_from_ranks(all_real), "count": n}
    result["optimistic"] = metrics_from_ranks(all_opt)
    result["by_side"] = {s: metrics_from_ranks(realistic[s]) for s in sides}
    if categories is not None:
        by_cat: dict[str, dict[str, Any]] = {}
        for c, name in enumerate(CATEGORY_NAMES):
            mask = categories == c
            count = int(mask.sum())
            if count:
                ranks = torch.cat([realistic[s][mask] for s in sides])
                by_cat[name] = {**metrics_from_ranks(ranks), "count": count}
        result["by_category"] = by_cat
    return result
