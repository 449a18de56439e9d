"""Inputs of the stages after ``prepare``: the prepared graph, its feature tables and filter."""

from __future__ import annotations

from dhns.config import Params
from dhns.data.kg import KnowledgeGraph
from dhns.evaluation.filter import FilterIndex
from dhns.features.table import FeatureTable
from stages.common import IMAGE_FEATURES, PREPARED, TEXT_FEATURES


def load_prepared() -> KnowledgeGraph:
    if not (PREPARED / "triples.pt").exists():
        raise FileNotFoundError(f"{PREPARED}: not prepared yet (run `dhns prepare`)")
    return KnowledgeGraph.load(PREPARED)


def load_features(params: Params, kg: KnowledgeGraph) -> dict[str, FeatureTable]:
    """The feature tables ``kge.modalities`` asks for, each checked to follow ``kg``'s ids."""
    tables = {}
    vocabulary = kg.vocabulary()
    for name, path in (("text", TEXT_FEATURES), ("image", IMAGE_FEATURES)):
        if name in params.kge.modalities and path.exists():
            tables[name] = FeatureTable.load(path, vocabulary, PREPARED)
    return tables


def filter_index(kg: KnowledgeGraph) -> FilterIndex:
    return FilterIndex(kg.all_triples(), kg.num_relations)
