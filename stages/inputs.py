"""Inputs of the stages after ``prepare``: the prepared graph, its feature tables and filter."""

from __future__ import annotations

from dhns.config import Params
from dhns.data.kg import KnowledgeGraph
from dhns.evaluation.filter import FilterIndex
from dhns.features.table import FeatureTable, load_tables
from stages.common import IMAGE_FEATURES, PREPARED, TEXT_FEATURES

FEATURE_FILES = {"text": TEXT_FEATURES, "image": IMAGE_FEATURES}


def load_prepared() -> KnowledgeGraph:
    return KnowledgeGraph.load(PREPARED)


def load_features(params: Params, kg: KnowledgeGraph) -> dict[str, FeatureTable]:
    """The feature tables ``kge.modalities`` asks for, each checked to follow ``kg``'s ids."""
    return load_tables(FEATURE_FILES, params.kge.modalities, kg.vocabulary(), PREPARED)


def filter_index(kg: KnowledgeGraph) -> FilterIndex:
    return FilterIndex(kg.all_triples(), kg.num_relations)
