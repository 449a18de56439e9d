"""Loaders: both layouts, exact error messages, warnings, valid cleaning, shared benchmarks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from dhns.data import DataError, load_dataset
from dhns.data.validate import top_up_valid


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def openke(root: Path, **override: str) -> Path:
    """A tiny OpenKE folder: 4 entities, 2 relations; files overridable by stem."""
    files = {
        "entity2id": "4\n<http://x.org/resource/Ada_Lovelace> 0\n<http://x.org/resource/B> 1\n"
        "<http://x.org/resource/C> 2\n<http://x.org/resource/D> 3\n",
        "relation2id": "2\n<http://x.org/ontology/bornIn> 0\n<http://x.org/ontology/knows> 1\n",
        # OpenKE order: h t r
        "train2id": "4\n0 1 0\n1 2 1\n2 3 0\n3 0 1\n",
        "valid2id": "2\n0 2 1\n1 3 0\n",
        "test2id": "2\n0 3 0\n2 1 1\n",
    }
    files.update(override)
    for stem, text in files.items():
        write(root / f"{stem}.txt", text)
    return root


def tsv(root: Path) -> Path:
    write(root / "train.tsv", "alice\tknows\tbob\nbob\tlikes\tcarol\ncarol\tknows\talice\n")
    write(root / "valid.tsv", "alice\tlikes\tcarol\n")
    write(root / "test.tsv", "bob\tknows\tcarol\n")
    return root


# ----------------------------------------------------------------- good files


def test_openke_layout(tmp_path: Path) -> None:
    root = openke(tmp_path / "toy")
    write(root / "test2id_all.txt", "2\n0\t0 3 0\n3\t2 1 1\n")
    (root / "images" / "1").mkdir(parents=True)
    (root / "images" / "1" / "a.jpg").write_bytes(b"x")
    (root / "images" / "2").mkdir()  # empty folder -> no images
    write(root / "descriptions.tsv", "<http://x.org/resource/C>\tThe third.\nB\tSecond one.\n")
    kg, warnings = load_dataset(root)
    assert kg.name == "toy"
    assert kg.num_entities == 4 and kg.num_relations == 2
    assert kg.train.dtype == torch.int64 and kg.train.shape == (4, 3)
    # h t r in the file -> (h, r, t) in memory
    assert kg.train[1].tolist() == [1, 1, 2]
    assert kg.test.tolist() == [[0, 0, 3], [2, 1, 1]]
    assert kg.test_categories.tolist() == [0, 3]
    assert kg.entity_names[0] == "Ada Lovelace"
    assert kg.relation_names == ["born in", "knows"]
    assert kg.descriptions == [None, "Second one.", "The third.", None]
    assert kg.image_dirs[1] == str((root / "images" / "1").resolve())
    assert kg.image_dirs[0] is None and kg.image_dirs[2] is None
    assert warnings == []


def test_openke_names_file_and_bad_categories(tmp_path: Path) -> None:
    root = openke(tmp_path / "toy")
    write(root / "entity_names.tsv", "id\tqid\tdbpedia\tname\n0\tQ1\thttp://d/A\tAda\n")
    write(root / "test2id_all.txt", "2\n0\t2 1 1\n3\t0 3 0\n")  # wrong order
    kg, warnings = load_dataset(root, name="renamed")
    assert kg.name == "renamed"
    assert kg.entity_names[:2] == ["Ada", "B"]
    assert kg.test_categories is None
    assert any("test2id_all.txt does not list the test triples" in w for w in warnings)


def test_tsv_layout(tmp_path: Path) -> None:
    root = tsv(tmp_path / "mine")
    write(root / "entities.tsv", "name\tdescription\nalice\tA person.\nbob\t\nzed\tunused\n")
    write(root / "descriptions.tsv", "carol\tOverrides.\nnobody\tx\n")
    (root / "images" / "bob").mkdir(parents=True)
    (root / "images" / "bob" / "0.png").write_bytes(b"x")
    kg, warnings = load_dataset(root)
    # ids by first appearance over train, valid, test (head before tail)
    assert kg.entity_keys == ["alice", "bob", "carol"]
    assert kg.relation_keys == ["knows", "likes"]
    assert kg.train.tolist() == [[0, 0, 1], [1, 1, 2], [2, 0, 0]]
    assert kg.valid.tolist() == [[0, 1, 2]] and kg.test.tolist() == [[1, 0, 2]]
    assert kg.descriptions == ["A person.", None, "Overrides."]
    assert kg.image_dirs[1] is not None and kg.image_dirs[0] is None
    assert "entities.tsv: 1 entities that occur in no triple ignored" in warnings
    assert "descriptions.tsv: 1 descriptions for unknown entities ignored" in warnings


def test_tsv_new_names_in_test_get_ids_and_warn(tmp_path: Path) -> None:
    root = tsv(tmp_path / "mine")
    write(root / "test.tsv", "dave\tknows\terin\nbob\tknows\tcarol\n")
    kg, warnings = load_dataset(root)
    assert kg.entity_keys[-2:] == ["dave", "erin"]
    assert "test: 2 entities never seen in train (1 triples involve them): 'dave', 'erin'" in (
        warnings)


# ----------------------------------------------------------------- warnings and cleaning


def test_duplicates_overlap_and_clean_valid(tmp_path: Path) -> None:
    # valid: a duplicate row, one triple also in test, one also in train
    root = openke(
        tmp_path / "toy",
        valid2id="4\n0 2 1\n0 2 1\n0 3 0\n0 1 0\n",
        test2id="2\n0 3 0\n2 1 1\n",
    )
    kg, warnings = load_dataset(root, clean_valid=False)
    assert len(kg.valid) == 4
    assert "valid: 1 duplicate rows (4 rows, 3 unique triples)" in warnings
    assert "train/valid: 1 unique triples occur in both splits" in warnings
    assert "valid/test: 1 unique triples occur in both splits" in warnings

    kg, warnings = load_dataset(root)
    # order kept, first occurrence; (0, 0, 1) is a training triple, (0, 0, 3) a test triple
    assert kg.valid.tolist() == [[0, 1, 2]]
    assert (
        "valid cleaned: 4 rows -> 3 unique triples -> 1 after dropping 1 that are also in test "
        "and 1 that are also in train (clean_valid=True)" in warnings
    )


def test_top_up_valid_moves_training_triples_keeping_every_entity() -> None:
    # entity 4 has one training triple only: that triple must stay in train
    train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3],
                          [3, 1, 4]])
    valid = torch.tensor([[0, 1, 1]])
    new_train, new_valid, msg = top_up_valid(train, valid, 4, torch.Generator().manual_seed(0))
    assert len(new_valid) == 4 and len(new_train) == 4
    assert new_valid[0].tolist() == [0, 1, 1]
    assert [3, 1, 4] in new_train.tolist()
    together = sorted(new_train.tolist() + new_valid[1:].tolist())
    assert together == sorted(train.tolist())  # moved, not copied or lost
    seen = set(new_train[:, 0].tolist()) | set(new_train[:, 2].tolist())
    assert seen == {0, 1, 2, 3, 4}
    assert msg == ("valid topped up from 1 to 4 triples with 3 held out of train "
                   "(data.min_valid=4); train 7 -> 4")
    again = top_up_valid(train, valid, 4, torch.Generator().manual_seed(0))
    assert torch.equal(again[1], new_valid)  # deterministic
    assert top_up_valid(train, valid, 1, torch.Generator())[2] is None


def test_clean_valid_is_noop_on_clean_data(tmp_path: Path) -> None:
    kg, warnings = load_dataset(openke(tmp_path / "toy"))
    assert len(kg.valid) == 2 and not any("cleaned" in w for w in warnings)


def test_unseen_entities_warning(tmp_path: Path) -> None:
    root = openke(tmp_path / "toy", entity2id="5\na 0\nb 1\nc 2\nd 3\ne 4\n",
                  test2id="2\n0 4 0\n4 1 1\n")
    _, warnings = load_dataset(root)
    assert "test: 1 entities never seen in train (2 triples involve them): 'e'" in warnings


# ----------------------------------------------------------------- broken files


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"train2id": "4\n0 1 0\n1 2\n2 3 0\n3 0 1\n"},
         "train2id.txt:3: expected 3 fields (head tail relation), got 2"),
        ({"train2id": "4\n0 1 0\n1 2 1\n2 x 0\n3 0 1\n"}, "train2id.txt:4: not an integer id: 'x'"),
        ({"train2id": "5\n0 1 0\n1 2 1\n2 3 0\n3 0 1\n"},
         "train2id.txt:1: header says 5 records but the file has 4"),
        ({"valid2id": "2\n0 2 1\n1 4 0\n"},
         "valid2id.txt:3: tail entity id 4 out of range (valid ids are 0..3)"),
        ({"test2id": "2\n-1 3 0\n2 1 1\n"},
         "test2id.txt:2: head entity id -1 out of range (valid ids are 0..3)"),
        ({"test2id": "2\n0 3 0\n2 1 2\n"},
         "test2id.txt:3: relation id 2 out of range (valid ids are 0..1)"),
        ({"entity2id": "4\na 0\nb 1\na 2\nd 3\n"},
         "entity2id.txt:4: duplicate key 'a' (first on line 2)"),
        ({"entity2id": "4\na 0\nb 1\nc 1\nd 3\n"}, "entity2id.txt:4: duplicate entity id 1"),
        ({"relation2id": "two\nr 0\ns 1\n"},
         "relation2id.txt:1: record count is not an integer: 'two'"),
        ({"train2id": "4\n0 1 0\n1 99999999999999999999 1\n2 3 0\n3 0 1\n"},
         "train2id.txt:3: id 99999999999999999999 out of range (does not fit in a 64-bit "
         "integer)"),
        ({"test2id": "2\n0 3 0\n2 1 -9223372036854775809\n"},
         "test2id.txt:3: id -9223372036854775809 out of range (does not fit in a 64-bit "
         "integer)"),
        ({"entity2id": "4\na 0\nb 1\nc 99999999999999999999\nd 3\n"},
         "entity2id.txt:4: entity id 99999999999999999999 out of range (valid ids are 0..3)"),
    ],
)
def test_openke_errors(tmp_path: Path, override: dict[str, str], expected: str) -> None:
    root = openke(tmp_path / "toy", **override)
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert str(info.value) == f"{root}/{expected}"
    assert info.value.line == int(expected.split(":")[1])


def test_missing_file(tmp_path: Path) -> None:
    root = openke(tmp_path / "toy")
    (root / "test2id.txt").unlink()
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert str(info.value) == f"{root / 'test2id.txt'}: required file is missing"
    assert info.value.line is None


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no dataset found: expected train2id.txt"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="no such dataset folder"):
        load_dataset(tmp_path / "nope")


def test_tsv_errors(tmp_path: Path) -> None:
    root = tsv(tmp_path / "mine")
    write(root / "valid.tsv", "alice\tlikes\tcarol\n\nalice likes bob\n")
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert str(info.value) == (
        f"{root / 'valid.tsv'}:3: expected 3 tab-separated fields (head relation tail), got 1"
    )
    write(root / "valid.tsv", "alice\t\tcarol\n")
    with pytest.raises(DataError, match=r"valid.tsv:1: empty field"):
        load_dataset(root)


# ----------------------------------------------------------------- data that loaded wrong

BOM = "\ufeff"


@pytest.mark.parametrize("layout", ["tsv", "openke"])
def test_utf8_bom_is_stripped_from_every_text_file(tmp_path: Path, layout: str) -> None:
    """Excel / Notepad write a BOM; it must not become part of the first key or header."""
    root = tsv(tmp_path / "mine") if layout == "tsv" else openke(tmp_path / "toy")
    if layout == "tsv":
        write(root / "entities.tsv", "name\tdescription\nalice\tA person.\n")
        names = ["train.tsv", "valid.tsv", "test.tsv", "entities.tsv", "descriptions.tsv"]
    else:
        write(root / "entity_names.tsv", "id\tname\n0\tAda\n")
        names = ["entity2id.txt", "relation2id.txt", "train2id.txt", "valid2id.txt",
                 "test2id.txt", "entity_names.tsv", "descriptions.tsv"]
    write(root / "descriptions.tsv", "bob\tSecond.\n<http://x.org/resource/B>\tSecond.\n")
    clean, clean_warnings = load_dataset(root)
    for name in names:
        (root / name).write_bytes(b"\xef\xbb\xbf" + (root / name).read_bytes())
    kg, warnings = load_dataset(root)
    assert not any(BOM in k for k in kg.entity_keys + kg.relation_keys)
    assert kg.entity_keys == clean.entity_keys and kg.relation_keys == clean.relation_keys
    assert kg.entity_names == clean.entity_names and kg.descriptions == clean.descriptions
    assert torch.equal(kg.train, clean.train) and warnings == clean_warnings


def test_relations_and_entities_only_in_test_are_named(tmp_path: Path) -> None:
    root = tsv(tmp_path / "mine")
    write(root / "valid.tsv", "alice\thates\tcarol\n")
    write(root / "test.tsv", "".join(f"n{i}\tfears\tbob\n" for i in range(7)))
    _, warnings = load_dataset(root, clean_valid=False)
    assert "valid: 1 relations never seen in train (1 triples use them): 'hates'" in warnings
    assert "test: 1 relations never seen in train (7 triples use them): 'fears'" in warnings
    assert ("test: 7 entities never seen in train (7 triples involve them): "
            "'n0', 'n1', 'n2', 'n3', 'n4' and 2 more") in warnings


def test_openke_relation_only_in_test_warns(tmp_path: Path) -> None:
    root = openke(tmp_path / "toy", relation2id="3\nr0 0\nr1 1\nbornAt 2\n",
                  test2id="2\n0 3 2\n2 1 1\n")
    _, warnings = load_dataset(root)
    assert "test: 1 relations never seen in train (1 triples use them): 'bornAt'" in warnings


@pytest.mark.parametrize("layout", ["tsv", "openke"])
def test_empty_test_split_is_an_error(tmp_path: Path, layout: str) -> None:
    if layout == "tsv":
        root = tsv(tmp_path / "mine")
        path = write(root / "test.tsv", "\n")
    else:
        root = openke(tmp_path / "toy", test2id="0\n")
        path = root / "test2id.txt"
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert str(info.value) == f"{path}: no test triples: nothing to evaluate on"


@pytest.mark.parametrize("layout", ["tsv", "openke"])
def test_empty_valid_split_warns_then_top_up_fills_it_or_fails(tmp_path: Path,
                                                               layout: str) -> None:
    if layout == "tsv":
        root = tsv(tmp_path / "mine")
        write(root / "valid.tsv", "")
        file = "valid.tsv"
    else:
        root = openke(tmp_path / "toy", valid2id="0\n")
        file = "valid2id.txt"
    kg, warnings = load_dataset(root)
    assert len(kg.valid) == 0
    assert (f"{file} has no triples: the prepare stage holds out data.min_valid training "
            "triples for validation instead (an error when data.min_valid is 0)") in warnings
    with pytest.raises(ValueError, match=r"^the valid split is empty and data.min_valid is 0: "
                       "nothing to select a checkpoint on"):
        top_up_valid(kg.train, kg.valid, 0, torch.Generator().manual_seed(0))


def test_top_up_valid_fails_when_nothing_can_be_moved() -> None:
    train = torch.tensor([[0, 0, 1], [2, 0, 3]])  # every entity has a single training triple
    with pytest.raises(ValueError, match="no training triple can be held out"):
        top_up_valid(train, torch.zeros(0, 3, dtype=torch.long), 5, torch.Generator())
    ring = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 0], [0, 1, 2]])
    _, valid, _ = top_up_valid(ring, torch.zeros(0, 3, dtype=torch.long), 1, torch.Generator())
    assert len(valid) == 1


def test_duplicate_name_in_entities_tsv_is_an_error(tmp_path: Path) -> None:
    root = tsv(tmp_path / "mine")
    path = write(root / "entities.tsv", "name\tdescription\nalice\tOne.\nbob\tB.\n"
                 " alice \tTwo.\n")
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert str(info.value) == f"{path}:4: entity 'alice' already defined at line 2"
    assert info.value.line == 4


def test_duplicate_id_in_names_file_is_an_error(tmp_path: Path) -> None:
    root = openke(tmp_path / "toy")
    path = write(root / "entity_names.tsv", "id\tname\n1\tBee\n0\tAda\n1\tBea\n")
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert str(info.value) == f"{path}:4: id 1 already named at line 2"


def test_error_str_without_line() -> None:
    err = DataError("a/b.txt", "boom")
    assert str(err) == "a/b.txt: boom" and err.line is None and isinstance(err, ValueError)
    assert str(DataError("a", "boom", line=3)) == "a:3: boom"


# ----------------------------------------------------------------- shared benchmarks

EXPECTED = {
    # entities, relations, train, valid (raw), test, valid after cleaning
    "DB15K": (12842, 279, 79222, 9904, 9902, 73),
    "MKG-W": (15000, 169, 34196, 4276, 4274, 4276),
    "MKG-Y": (15000, 28, 21310, 2665, 2663, 2665),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_benchmark_counts(shared_data: Path, name: str) -> None:
    n, r, n_train, n_valid, n_test, n_clean = EXPECTED[name]
    start = time.perf_counter()
    kg, _ = load_dataset(shared_data / name, clean_valid=False)
    assert time.perf_counter() - start < 5.0
    assert (kg.num_entities, kg.num_relations) == (n, r)
    assert (len(kg.train), len(kg.valid), len(kg.test)) == (n_train, n_valid, n_test)
    assert kg.test_categories is not None and len(kg.test_categories) == n_test
    kg, warnings = load_dataset(shared_data / name)
    assert len(kg.valid) == n_clean
    if name == "DB15K":
        assert kg.entity_names[0] == "Anarchism" and kg.relation_names[0] == "see also"
        assert any("9904 rows -> 7481 unique triples -> 73 after dropping 824 that are also "
                   "in test and 6584 that are also in train" in w for w in warnings)
        assert any(w.startswith("test: 57 entities never seen in train (77 triples involve "
                                "them): ") for w in warnings)
        assert torch.bincount(kg.test_categories).tolist() == [385, 195, 3887, 5435]
    if name == "MKG-W":
        assert kg.entity_names[0] == "My Darling Clementine"
        assert kg.relation_names[0] == "cast member"
