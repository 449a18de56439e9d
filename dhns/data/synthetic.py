"""The embedded default dataset: a small typed, multimodal KG with planted structure.

Each entity has a type and a few categorical attributes (colour, shape, size, texture,
material). Each relation has a ``(head type, tail type)`` signature, so a uniformly drawn
negative tail is usually of the wrong type (an easy negative) while a same-type one is hard.

Tails are not random:

- *cluster* relations: the entities of each type are split into latent groups, and relation
  ``r`` links an entity in group ``g`` to entities in group ``pi_r(g)`` of its tail type;
- *attribute* relations (``same_colour_as`` ...): the tail shares the head's attribute value;
- a few percent of tails are uniform noise within the tail type.

A translational/rotational KGE can learn the group structure from triples alone; text
(descriptions reveal type and some attributes) and images (fill colour = colour, drawn
shape = shape, drawn size = size, pattern = texture, background = material) carry the
attributes. Output is the TSV layout read by :mod:`dhns.data.tsv`, plus ``generator.json``.
Everything is drawn from one ``numpy.random.Generator(cfg.seed)``: same seed, same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dhns.config import SyntheticConfig

TYPE_NAMES = (
    "tool", "animal", "plant", "vehicle", "building", "food", "mineral", "instrument",
    "garment", "toy",
)
COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (235, 200, 30), "purple": (140, 60, 190), "orange": (240, 130, 30),
}
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": ("cube", "sphere", "cone", "ring", "star", "cross"),
    "size": ("small", "medium", "large"),
    "texture": ("plain", "striped", "dotted"),
    "material": ("wooden", "metal", "glass", "stone"),
}
ATTR_ORDER = tuple(ATTRIBUTES)
DEFAULTS = {"colour": "grey", "shape": "sphere", "size": "medium", "texture": "plain",
            "material": ""}
BACKGROUNDS = {"wooden": (205, 175, 135), "metal": (175, 182, 195), "glass": (214, 236, 242),
               "stone": (150, 148, 140), "": (236, 236, 236)}
SIZE_RADIUS = {"small": 0.2, "medium": 0.3, "large": 0.42}
VERBS = (
    "part_of", "located_near", "feeds_on", "used_by", "made_from", "stored_in", "guards",
    "carries", "repairs", "grows_on", "pulls", "decorates", "competes_with", "hides_in",
    "powers", "follows", "imitates", "contains",
)
NOISE = 0.05  # fraction of tails drawn uniformly from the tail type
RING_FILL = 0.7  # ring structure: share of a relation's distinct true triples that are drawn


def _unique(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    taken.add(out)
    return out


def _plan(cfg: SyntheticConfig, rng: np.random.Generator) -> dict:
    """Entities (type, group, attributes, name) and relations (kind, signature, mapping)."""
    n, t = cfg.num_entities, max(1, cfg.num_types)
    attrs = ATTR_ORDER[: max(0, min(cfg.attributes_per_entity, len(ATTR_ORDER)))]
    types = rng.permutation(np.arange(n) % t)
    values = {a: rng.integers(len(ATTRIBUTES[a]), size=n) for a in attrs}
    # Latent groups: ~20 entities each, 2..5 per type, balanced within a type.
    per_type = [np.flatnonzero(types == k) for k in range(t)]
    n_groups = max(2, min(5, n // (t * 20)))
    groups = np.zeros(n, dtype=np.int64)
    for members in per_type:
        groups[members] = rng.permutation(np.arange(len(members)) % n_groups)
    # Ring positions: the entities of each type evenly spaced on [0, 1) in random order (drawn
    # only for the ring structure, so the groups structure's draws stay what they were).
    ring = cfg.structure == "ring"
    positions = np.zeros(n)
    for members in per_type if ring else []:
        positions[members] = rng.permutation(len(members)) / max(1, len(members))
    type_names = [TYPE_NAMES[k] if k < len(TYPE_NAMES) else f"type{k}" for k in range(t)]
    names = []
    for i in range(n):
        # Readable, unique: up to two attribute values then the index ("red_cube_17").
        parts = [ATTRIBUTES[a][values[a][i]] for a in attrs[:2]] or [type_names[types[i]]]
        names.append("_".join([*parts, str(i)]))

    visible = [a for a in attrs if a in ("colour", "shape", "size")]
    relations, taken = [], set()
    verb_i = 0
    for r in range(cfg.num_relations):
        head_t = r % t
        tail_t = int(rng.integers(t))
        if visible and r % 4 == 3:
            attr = visible[(r // 4) % len(visible)]
            relations.append({"name": _unique(f"same_{attr}_as", taken), "kind": "attribute",
                              "attribute": attr, "head_type": head_t, "tail_type": tail_t})
        else:
            verb = VERBS[verb_i % len(VERBS)]
            verb_i += 1
            relations.append({"name": _unique(verb, taken), "kind": "cluster",
                              "head_type": head_t, "tail_type": tail_t,
                              "mapping": rng.permutation(n_groups).tolist(),
                              # ring: tail position = scale * head position + shift (mod 1)
                              **({"scale": int(rng.choice([-2, -1, 1, 2])),
                                  "shift": float(rng.random())} if ring else {})})
    return {"types": types, "type_names": type_names, "attrs": attrs, "values": values,
            "groups": groups, "n_groups": n_groups, "per_type": per_type, "names": names,
            "relations": relations, "positions": positions, "structure": cfg.structure,
            "spread": cfg.ring_spread}


def _tail_pool(plan: dict, rel: dict, h: int) -> np.ndarray:
    """Entities that are correct tails for head ``h`` under relation ``rel``."""
    cands = plan["per_type"][rel["tail_type"]]
    if rel["kind"] == "cluster" and plan["structure"] == "ring":
        target = (rel["scale"] * plan["positions"][h] + rel["shift"]) % 1.0
        gap = np.abs(plan["positions"][cands] - target)
        return cands[np.argsort(np.minimum(gap, 1.0 - gap), kind="stable")[:plan["spread"]]]
    if rel["kind"] == "cluster":
        want = rel["mapping"][plan["groups"][h]]
        return cands[plan["groups"][cands] == want]
    vals = plan["values"][rel["attribute"]]
    return cands[vals[cands] == vals[h]]


def _sample_triples(cfg: SyntheticConfig, plan: dict, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` unique ``(h, r, t)`` generator-index triples, every entity used if possible."""
    triples: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int, int]] = set()

    def draw(r: int, h: int, u_noise: float, u_tail: float) -> bool:
        rel = plan["relations"][r]
        pool = plan["per_type"][rel["tail_type"]] if u_noise < NOISE else _tail_pool(plan, rel, h)
        pool = pool[pool != h]
        if not len(pool):
            return False
        tr = (h, r, int(pool[int(u_tail * len(pool))]))
        if tr in seen:
            return False
        seen.add(tr)
        triples.append(tr)
        return True

    for r, rel in enumerate(plan["relations"]):
        heads = plan["per_type"][rel["head_type"]]
        if not len(heads):
            continue
        made, tries = 0, 0
        wanted = cfg.triples_per_relation
        if rel["kind"] == "cluster" and plan["structure"] == "ring":
            # A ring relation has len(heads) * spread distinct true triples; asking for more
            # would fill the rest with noise (retries keep drawing it), so stop at 70%.
            wanted = min(wanted, int(RING_FILL * len(heads) * plan["spread"]))
        # Bounded retries: small or dense configs may admit fewer distinct triples.
        while made < wanted and tries < 20 * cfg.triples_per_relation:
            u = rng.random(3)
            made += draw(r, int(heads[int(u[0] * len(heads))]), u[1], u[2])
            tries += 1

    # Give every entity at least one triple (as head if its type heads a relation).
    used = np.zeros(cfg.num_entities, dtype=bool)
    for h, _, t in triples:
        used[h] = used[t] = True
    for e in np.flatnonzero(~used):
        e = int(e)
        as_head = [r for r, rel in enumerate(plan["relations"])
                   if rel["head_type"] == plan["types"][e]]
        for _ in range(10):
            if not as_head:
                break
            u = rng.random(3)
            if draw(as_head[int(u[0] * len(as_head))], e, 1.0, u[2]):
                break
    return np.array(triples, dtype=np.int64).reshape(-1, 3)


def _split(triples: np.ndarray, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """~80/10/10, holding out only triples whose entities and relation stay in train."""
    order = rng.permutation(len(triples))
    deg = np.bincount(triples[:, [0, 2]].ravel(), minlength=n)
    rel_count = np.bincount(triples[:, 1])
    n_valid = int(round(0.1 * len(triples)))
    n_hold = 2 * n_valid
    held, kept = [], []
    for i in order:
        h, r, t = triples[i]
        if len(held) < n_hold and deg[h] > 1 and deg[t] > 1 and rel_count[r] > 1:
            deg[h] -= 1
            deg[t] -= 1
            rel_count[r] -= 1
            held.append(i)
        else:
            kept.append(i)
    return {"train": triples[kept], "valid": triples[held[:n_valid]],
            "test": triples[held[n_valid:]]}


def _description(plan: dict, i: int, rng: np.random.Generator) -> str:
    """A sentence revealing the type and a random non-empty subset of the attributes."""
    attrs = plan["attrs"]
    shown = [a for a in attrs if rng.random() < 0.6]
    if attrs and not shown:
        shown = [attrs[int(rng.integers(len(attrs)))]]
    val = {a: ATTRIBUTES[a][plan["values"][a][i]] for a in shown}
    adjectives = [val[a] for a in ("size", "colour", "texture", "material") if a in val]
    noun = val.get("shape", "object")
    article = "An" if (adjectives or [noun])[0][0] in "aeiou" else "A"
    kind = plan["type_names"][plan["types"][i]]
    return f"{article} {' '.join([*adjectives, noun])}. It is a kind of {kind}."


def _star(cx: float, cy: float, rad: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        a = -np.pi / 2 + k * np.pi / 5
        rr = rad if k % 2 == 0 else rad * 0.45
        pts.append((cx + rr * np.cos(a), cy + rr * np.sin(a)))
    return pts


def _image(plan: dict, i: int, size: int, rng: np.random.Generator) -> Image.Image:
    """A ``size x size`` RGB picture of entity ``i``'s visible attributes."""
    val = dict(DEFAULTS)
    for a in plan["attrs"]:
        val[a] = ATTRIBUTES[a][plan["values"][a][i]]
    fill = np.array(COLOURS.get(val["colour"], (128, 128, 128)), dtype=np.int16)
    bg = np.array(BACKGROUNDS[val["material"]], dtype=np.int16)
    # Mild pixel noise so images of equal attributes are not identical.
    arr = bg + rng.integers(-10, 11, size=(size, size, 3), dtype=np.int16)

    mask_img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask_img)
    rad = SIZE_RADIUS[val["size"]] * size
    jitter = 0.08 * size
    cx = size / 2 + float(rng.uniform(-jitter, jitter))
    cy = size / 2 + float(rng.uniform(-jitter, jitter))
    box = (cx - rad, cy - rad, cx + rad, cy + rad)
    shape = val["shape"]
    if shape == "cube":
        draw.rectangle(box, fill=255)
    elif shape == "sphere":
        draw.ellipse(box, fill=255)
    elif shape == "cone":
        draw.polygon([(cx, cy - rad), (cx - rad, cy + rad), (cx + rad, cy + rad)], fill=255)
    elif shape == "ring":
        draw.ellipse(box, outline=255, width=max(2, int(rad / 2.5)))
    elif shape == "star":
        draw.polygon(_star(cx, cy, rad * 1.1), fill=255)
    else:  # cross
        w = rad / 2.5
        draw.rectangle((cx - w, cy - rad, cx + w, cy + rad), fill=255)
        draw.rectangle((cx - rad, cy - w, cx + rad, cy + w), fill=255)
    mask = np.asarray(mask_img) > 127

    yy, xx = np.mgrid[0:size, 0:size]
    step = max(2, size // 10)
    if val["texture"] == "striped":
        dark = (yy // step) % 2 == 0
    elif val["texture"] == "dotted":
        dark = (yy % (2 * step) < step // 2 + 1) & (xx % (2 * step) < step // 2 + 1)
    else:
        dark = np.zeros((size, size), dtype=bool)
    arr[mask] = fill
    arr[mask & dark] = fill * 3 // 5
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _write_lines(path: Path, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(line + "\n" for line in lines)


def generate_synthetic(cfg: SyntheticConfig, out_dir: str | Path) -> None:
    """Write the synthetic dataset (TSV layout) to ``out_dir``, replacing it atomically.

    Files: ``train.tsv`` / ``valid.tsv`` / ``test.tsv`` (``head<TAB>relation<TAB>tail`` by
    name), ``entities.tsv`` (``name<TAB>description``), ``images/<name>/0.png`` and
    ``generator.json`` (the config, relation signatures, entity types and latent groups).
    """
    # Local import: registry imports the loaders, which do not need this module.
    from dhns.data.registry import _replace_dir

    out_dir = Path(out_dir)
    rng = np.random.default_rng(cfg.seed)
    plan = _plan(cfg, rng)
    triples = _sample_triples(cfg, plan, rng)
    splits = _split(triples, cfg.num_entities, rng)
    n = cfg.num_entities
    names = plan["names"]
    rel_names = [rel["name"] for rel in plan["relations"]]
    no_text = set(rng.permutation(n)[: int(round(cfg.missing_text * n))].tolist())
    no_image = set(rng.permutation(n)[: int(round(cfg.missing_image * n))].tolist())

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.gen-"))
    try:
        root = staging / out_dir.name
        (root / "images").mkdir(parents=True)
        for split, arr in splits.items():
            _write_lines(root / f"{split}.tsv",
                         [f"{names[h]}\t{rel_names[r]}\t{names[t]}" for h, r, t in arr.tolist()])
        rows = ["name\tdescription"]
        for i in range(n):
            # Draw the description even when it is dropped, so missing_text does not
            # shift every later random draw.
            desc = _description(plan, i, rng)
            rows.append(f"{names[i]}\t{'' if i in no_text else desc}")
        _write_lines(root / "entities.tsv", rows)
        for i in range(n):
            img = _image(plan, i, cfg.image_size, rng)
            if i not in no_image:
                (root / "images" / names[i]).mkdir()
                img.save(root / "images" / names[i] / "0.png", format="PNG", optimize=False)
        meta = {
            "generator": "dhns.data.synthetic",
            "version": 1,
            "config": dataclasses.asdict(cfg),
            "types": plan["type_names"],
            "attributes": list(plan["attrs"]),
            "relations": [
                {**rel, "head_type": plan["type_names"][rel["head_type"]],
                 "tail_type": plan["type_names"][rel["tail_type"]]}
                for rel in plan["relations"]
            ],
            "entities": {
                names[i]: {"type": plan["type_names"][plan["types"][i]],
                           "group": int(plan["groups"][i]),
                           **({"position": round(float(plan["positions"][i]), 6)}
                              if plan["structure"] == "ring" else {}),
                           **{a: ATTRIBUTES[a][plan["values"][a][i]] for a in plan["attrs"]}}
                for i in range(n)
            },
            "counts": {s: len(a) for s, a in splits.items()},
        }
        (root / "generator.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        _replace_dir(root, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
