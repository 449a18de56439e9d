"""Filtered link-prediction evaluation: filter index, ranking, relation categories."""

from dhns.evaluation.categories import (
    kg_test_categories,
    relation_categories,
    triple_categories,
)
from dhns.evaluation.evaluator import (
    LinkPredictor,
    evaluate,
    metrics_from_ranks,
    rank_targets,
)
from dhns.evaluation.filter import FilterIndex

__all__ = [
    "FilterIndex",
    "LinkPredictor",
    "evaluate",
    "kg_test_categories",
    "metrics_from_ranks",
    "rank_targets",
    "relation_categories",
    "triple_categories",
]
