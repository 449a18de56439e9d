"""Data layer: loading, validating, importing, downloading and generating KGs."""

from dhns.data.errors import DataError
from dhns.data.kg import CATEGORY_NAMES, KnowledgeGraph
from dhns.data.registry import (
    MANIFESTS,
    ManifestEntry,
    download_dataset,
    import_dataset,
    load_dataset,
)

__all__ = [
    "CATEGORY_NAMES",
    "MANIFESTS",
    "DataError",
    "KnowledgeGraph",
    "ManifestEntry",
    "download_dataset",
    "generate_synthetic",
    "import_dataset",
    "load_dataset",
]


def __getattr__(name: str):
    # generate_synthetic pulls in PIL; import it only when asked for.
    if name == "generate_synthetic":
        from dhns.data.synthetic import generate_synthetic

        return generate_synthetic
    raise AttributeError(name)
