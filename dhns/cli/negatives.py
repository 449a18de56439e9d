"""``dhns negatives``: the hard negatives DHNS generates for one query, level by level."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dhns.cli.common import ParamsOption, app, report_user_errors, table, warn
from dhns.errors import UserError

if TYPE_CHECKING:
    from dhns.data.kg import KnowledgeGraph


def _load_graph(dataset: Path) -> KnowledgeGraph:
    """A prepared folder (``KnowledgeGraph.save``: has triples.pt) or a raw dataset folder."""
    if (dataset / "triples.pt").is_file():
        from dhns.data.kg import KnowledgeGraph as Graph

        return Graph.load(dataset)
    from dhns.data import load_dataset

    kg, warnings = load_dataset(dataset)
    warn(warnings)
    return kg


@app.command("negatives")
@report_user_errors
def negatives_command(
    checkpoint: Annotated[Path, typer.Option(help="The KGE checkpoint the diffusion model was "
                                             "trained on (e.g. artifacts/pretrain/model.pt).")],
    diffusion_checkpoint: Annotated[Path, typer.Option(
        "--diffusion", help="The diffusion model checkpoint (e.g. artifacts/diffusion/model.pt).")],
    dataset: Annotated[Path, typer.Option(help="artifacts/prepared or a dataset folder "
                                          "(names and known triples).")],
    relation: Annotated[str, typer.Option(help="Relation name or key.")],
    head: Annotated[str | None, typer.Option(help="Head entity: generate tails.")] = None,
    tail: Annotated[str | None, typer.Option(help="Tail entity: generate heads.")] = None,
    k: Annotated[int, typer.Option("-k", "--top",
                                   help="Nearest real entities shown per level.")] = 5,
    params: ParamsOption = Path("params.yaml"),
    seed: Annotated[int, typer.Option(help="Seed of the reverse chain's noise.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "cpu",
) -> None:
    """Show the hard negatives DHNS generates for one query, level by level.

    Generates the missing tail of (HEAD, RELATION, ?) (or head of (?, RELATION, TAIL)) at every
    hardness level t_k of model.levels, with model.sampling_steps strided reverse steps (>= T:
    the full ancestral chain), and fuses the generated modality embeddings with the KGE's
    attention as NTAT does (the generated entity has exactly the modalities generated for it).
    Per level it prints the score of the generated triple, its rank among the real wrong
    answers (1 + how many entities that are not known answers score higher), the real entity
    nearest to it by Euclidean distance in the fused space and whether that one is a known
    answer (a likely false negative), then the k real entities nearest to the generated
    entity: their distance to it, the score of the triple with them instead, and a * for
    answers known to be true (train, valid or test).

    Distance: for RotatE and TransE the score function's own distance, gamma - match(g, e)
    (RotatE: sum of the complex moduli |g_i - e_i|; TransE: L1), so an entity at distance d
    scores within d of the generated triple; for DistMult and ComplEx the Euclidean distance.
    The dataset may be artifacts/prepared or a raw dataset folder. Writes nothing.
    """
    import torch

    from dhns.config import load_params
    from dhns.device import resolve_device
    from dhns.evaluation.filter import FilterIndex
    from dhns.negatives import HierarchicalLevels, fuse_generated
    from dhns.negatives.diagnostics import generated_ranks, nearest_real_entity
    from dhns.training.checkpoint import load_diffusion, load_kge

    if (head is None) == (tail is None):
        raise UserError("give exactly one of --head (generate tails) or --tail (generate heads)")
    if k < 1:
        raise UserError("-k must be >= 1")
    cfg = load_params(params).model
    dev = resolve_device(device)
    kg = _load_graph(dataset)
    vocabulary = kg.vocabulary()
    model, _ = load_kge(checkpoint, dev, vocabulary, dataset)
    diffusion, _ = load_diffusion(diffusion_checkpoint, dev, vocabulary, dataset)
    width = model.scorer.entity_width
    if diffusion.dim != width:
        raise UserError(f"{diffusion_checkpoint}: the model generates {diffusion.dim}-wide "
                        "embeddings but "
                        f"{checkpoint} has {width}-wide entities (not trained on this KGE)")
    unknown = sorted({s.split(":")[0] for s in diffusion.modalities} - set(model.modalities))
    if unknown:
        raise UserError(f"{diffusion_checkpoint}: generates modalities {unknown} that "
                        f"{checkpoint} lacks")
    anchor_name = head if head is not None else tail
    assert anchor_name is not None
    from dhns.api import resolve_name

    anchor = resolve_name(anchor_name, kg.entity_names, kg.entity_keys, "entity")
    r = resolve_name(relation, kg.relation_names, kg.relation_keys, "relation")
    direction = "tail" if head is not None else "head"
    hier = HierarchicalLevels(diffusion, cfg.levels, cfg.sampling_steps)

    with torch.no_grad():
        # The unknown side of the triple is a placeholder: only `direction`'s chain is used,
        # and it is conditioned on the anchor and the relation only.
        batch = torch.tensor([[anchor, r, anchor]], device=dev)
        out = hier.generate(model, batch, torch.Generator().manual_seed(seed))
        generated, generated_mask = ((out.tails, out.tail_generated) if direction == "tail"
                                     else (out.heads, out.head_generated))
        if not bool(generated_mask.any()):
            raise UserError(f"{kg.entity_names[anchor]!r} has none of the modalities the "
                            f"diffusion model generates {direction}s from ({diffusion.modalities})")
        fused = fuse_generated(model, generated, generated_mask)[:, 0]  # (L, D)
        entities = model.all_entity_embeddings()  # (N, D)
        rel = model.relation[r]
        scorer = model.scorer
        if direction == "tail":
            real_scores = scorer.score(entities[anchor], rel, entities)  # (N,)
            generated_scores = scorer.score(entities[anchor], rel, fused)  # (L,)
        else:
            real_scores = scorer.score(entities, rel, entities[anchor])
            generated_scores = scorer.score(fused, rel, entities[anchor])
        if scorer.distance_based:
            distance = scorer.gamma - scorer.match(fused[:, None], entities[None])  # (L, N)
        else:
            distance = torch.cdist(fused, entities)
        nearest = torch.topk(distance.float().cpu(), min(k, kg.num_entities), dim=1,
                             largest=False)
        known_index = FilterIndex(kg.all_triples(), kg.num_relations)
        query_args = (model, batch[:, 0 if direction == "tail" else 2], batch[:, 1],
                      fused[:, None], direction, known_index)
        ranks, wrong = generated_ranks(*query_args)  # (L, 1), (1,)
        closest, closest_known = nearest_real_entity(*query_args)

    triples = kg.all_triples()
    anchor_col, answer_col = (0, 2) if direction == "tail" else (2, 0)
    hit = (triples[:, anchor_col] == anchor) & (triples[:, 1] == r)
    known = set(triples[hit, answer_col].tolist())
    h_name = kg.entity_names[anchor] if direction == "tail" else "?"
    t_name = kg.entity_names[anchor] if direction == "head" else "?"
    chain = (f"{hier.sampling_steps} strided reverse steps"
             if hier.sampling_steps is not None and hier.sampling_steps < diffusion.num_steps
             else "full ancestral chain")
    metric = {"rotate": "RotatE distance, sum of complex moduli",
              "transe": "TransE distance, L1"}.get(scorer.name, "Euclidean distance")
    typer.echo(f"({h_name}, {kg.relation_names[r]}, {t_name}): generated {direction}s at "
               f"t = {', '.join(map(str, hier.levels))} of T = {diffusion.num_steps} ({chain}, "
               f"seed {seed})")
    typer.echo(f"{len(nearest.indices[0])} nearest real entities by {metric}; score = KGE "
               f"score with that entity; * = known true ({len(known)} in the dataset)")
    real_scores = real_scores.float().cpu()
    for level, t in enumerate(hier.levels):
        typer.echo("")
        answer = "a known answer" if bool(closest_known[level, 0]) else "not a known answer"
        typer.echo(f"level {level + 1}: t={t}  generated triple score "
                   f"{float(generated_scores[level]):.4f}  rank {int(ranks[level, 0])} among "
                   f"{int(wrong[0])} real wrong answers  nearest real entity (Euclidean) "
                   f"{kg.entity_names[int(closest[level, 0])]}: {answer}")
        rows = [(f"{rank}{'*' if int(i) in known else ''}", kg.entity_names[int(i)],
                 f"{float(d):.4f}", f"{float(real_scores[int(i)]):.4f}")
                for rank, (d, i) in enumerate(zip(nearest.values[level], nearest.indices[level],
                                                  strict=True), 1)]
        typer.echo(table(["rank", "entity", "distance", "score"], rows, align="rlrr"))
