"""Tests of the raw-data readers: small hand-written files per format, then the real datasets."""

import filecmp
import json
import os
import pickle
import time

import pytest

from tests.conftest import shared_dataset
from tfrs_selreg.data import readers
from tfrs_selreg.data.prepared import Item
from tfrs_selreg.data.readers import RawInteraction, Rejected

from . import tfds_fixture


def _write(directory, name, content, encoding="utf-8"):
    data = content if isinstance(content, bytes) else content.encode(encoding)
    (directory / name).write_bytes(data)


def _split(entries):
    entries = list(entries)
    good = [e for e in entries if not isinstance(e, Rejected)]
    bad = [(e.line, e.reason) for e in entries if isinstance(e, Rejected)]
    return good, bad


def _rows(interactions):
    return [(r.user_id, r.item_id, r.timestamp, r.rating, r.line) for r in interactions]


# ---------------------------------------------------------------------------------------------
# ml-latest-small


@pytest.fixture
def latest_small(tmp_path):
    _write(tmp_path, "ratings.csv",
           b"userId,movieId,rating,timestamp\n"
           b"1,1,4.0,964982703\n"
           b"1,3,4.5,964981247\n"
           b"2,1,5\n"
           b"2,3,four,964982224\n"
           b",3,3.0,964982224\n"
           b"\n"
           b"2,\xff\xfe,3.0,964982224\n"
           b"2,2,3.0,964983815\n")
    _write(tmp_path, "movies.csv",
           "movieId,title,genres\r\n"
           "1,Toy Story (1995),Adventure|Animation|Children\r\n"
           '2,"American President, The (1995)",Comedy|Drama|Romance\r\n'
           '3,"Amélie (Fabuleux destin d\'Amélie Poulain, Le) (2001)",Comedy|Romance\r\n'
           '4,"Quote ""this"" (2000)",(no genres listed)\r\n'
           "5,Broken (2000)\r\n")
    tags = ["userId,movieId,tag,timestamp",
            "1,1,pixar,1", "2,1,Pixar,2", "3,1,pixar,3",
            "1,1,funny,4", "2,1,Funny,5",
            "1,1,animation,6", "2,1,animation,7",
            "1,1,  ,8",
            '567,3,"""artsy""",9']
    tags += [f"1,2,tag {chr(ord('l') - i)},{10 + i}" for i in range(12)]
    _write(tmp_path, "tags.csv", "\n".join(tags) + "\n")
    return tmp_path


def test_latest_small_interactions_and_rejected_rows(latest_small):
    reader = readers.get_reader("ml-latest-small")
    reader.check(str(latest_small))
    good, bad = _split(reader.read_interactions(str(latest_small)))
    assert _rows(good) == [("1", "1", 964982703, 4.0, 2), ("1", "3", 964981247, 4.5, 3),
                           ("2", "2", 964983815, 3.0, 9)]
    assert bad == [(4, "wrong_column_count"), (5, "unparsable_number"), (6, "missing_field"),
                   (8, "bad_encoding")]
    assert all(r.source == os.path.join(str(latest_small), "ratings.csv") for r in good)
    assert reader.has_timestamps and reader.has_ratings


def test_latest_small_items_titles_genres_tags(latest_small):
    good, bad = _split(readers.get_reader("ml-latest-small").read_items(str(latest_small)))
    by_id = {item.item_id: item for item in good}
    assert list(by_id) == ["1", "2", "3", "4"]
    assert by_id["1"] == Item("1", title="Toy Story (1995)",
                              categories=("Adventure", "Animation", "Children"),
                              tags=("pixar", "animation", "funny"))
    assert by_id["2"].title == "American President, The (1995)"
    assert by_id["3"].title == "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)"
    assert by_id["3"].tags == ('"artsy"',)
    assert by_id["4"].title == 'Quote "this" (2000)' and by_id["4"].categories == ()
    # 12 tags used once each: the 10 first alphabetically.
    assert by_id["2"].tags == tuple(f"tag {c}" for c in "abcdefghij")
    assert all(i.popularity == 0 and not i.long_tail for i in good)
    # Rejected rows of tags.csv come first (line 9: blank tag), then movies.csv line 6.
    assert bad == [(9, "missing_field"), (6, "wrong_column_count")]


def test_latest_small_tags_are_optional(latest_small):
    os.remove(latest_small / "tags.csv")
    reader = readers.get_reader("ml-latest-small")
    reader.check(str(latest_small))
    good, _ = _split(reader.read_items(str(latest_small)))
    assert len(good) == 4 and all(i.tags == () for i in good)


def test_latest_small_wrong_header_is_a_clear_error(latest_small):
    _write(latest_small, "ratings.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(ValueError, match=r"ratings.csv has columns .* 'csv' format"):
        readers.get_reader("ml-latest-small").check(str(latest_small))


# ---------------------------------------------------------------------------------------------
# ml-1m


def test_ml_1m(tmp_path):
    _write(tmp_path, "ratings.dat",
           "1::1193::5::978300760\n"
           "1::661::3::978302109\n"
           "2::1193::x::978300760\n"
           "2::661::4\n"
           "2::3408::4::978298413\n")
    _write(tmp_path, "movies.dat",
           "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
           "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
           "3408::Misérables, Les (1995)::Drama|Musical\n"
           "3409::Next\x85Line (2000)::Drama\n"  # U+0085 is a line break only to str.splitlines.
           "9::Bad line\n", encoding="latin-1")
    reader = readers.get_reader("ml-1m")
    reader.check(str(tmp_path))
    good, bad = _split(reader.read_interactions(str(tmp_path)))
    assert _rows(good) == [("1", "1193", 978300760, 5.0, 1), ("1", "661", 978302109, 3.0, 2),
                           ("2", "3408", 978298413, 4.0, 5)]
    assert bad == [(3, "unparsable_number"), (4, "wrong_column_count")]
    items, bad = _split(reader.read_items(str(tmp_path)))
    assert [(i.item_id, i.title, i.categories) for i in items] == [
        ("1193", "One Flew Over the Cuckoo's Nest (1975)", ("Drama",)),
        ("661", "James and the Giant Peach (1996)", ("Animation", "Children's", "Musical")),
        ("3408", "Misérables, Les (1995)", ("Drama", "Musical")),
        ("3409", "Next\x85Line (2000)", ("Drama",)),
    ]
    assert bad == [(5, "wrong_column_count")]


# ---------------------------------------------------------------------------------------------
# ml-100k


def _ml_100k(directory):
    flags = ["0"] * 19
    drama = flags.copy()
    drama[8] = drama[14] = "1"  # Drama, Romance
    unknown = flags.copy()
    unknown[0] = "1"
    bad = flags.copy()
    bad[3] = "y"
    _write(directory, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\n"
                                "244\t51\t2.5x\t880606923\n")
    _write(directory, "u.item", "\n".join([
        "242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|" + "|".join(drama),
        "267|unknown||||" + "|".join(unknown),
        "302|Café Flor (1997)|01-Jan-1997||http://x|" + "|".join(bad),
        "303|Short|01-Jan-1997||http://x|0|1",
    ]) + "\n", encoding="latin-1")


def test_ml_100k_with_standard_genres(tmp_path):
    _ml_100k(tmp_path)
    reader = readers.get_reader("ml-100k")
    reader.check(str(tmp_path))
    good, bad = _split(reader.read_interactions(str(tmp_path)))
    assert _rows(good) == [("196", "242", 881250949, 3.0, 1), ("186", "302", 891717742, 3.0, 2)]
    assert bad == [(3, "wrong_column_count"), (4, "unparsable_number")]
    items, bad = _split(reader.read_items(str(tmp_path)))
    assert [(i.item_id, i.title, i.categories) for i in items] == [
        ("242", "Kolya (1996)", ("Drama", "Romance")), ("267", "unknown", ())]
    assert bad == [(3, "unparsable_number"), (4, "wrong_column_count")]


def test_ml_100k_genre_names_come_from_u_genre(tmp_path):
    _ml_100k(tmp_path)
    names = [f"G{i}" for i in range(19)]
    _write(tmp_path, "u.genre", "".join(f"{n}|{i}\n" for i, n in enumerate(names)) + "\n")
    items, _ = _split(readers.get_reader("ml-100k").read_items(str(tmp_path)))
    assert items[0].categories == ("G8", "G14")
    _write(tmp_path, "u.genre", "Drama|0\nComedy\n")
    with pytest.raises(ValueError, match=r"u.genre:2: expected 'name\|index'"):
        readers.get_reader("ml-100k").check(str(tmp_path))


# ---------------------------------------------------------------------------------------------
# amazon-json


@pytest.fixture
def amazon(tmp_path):
    inter = {"0": [0, 1, 2], "1": [2, None, 0], "2": "oops", "3": []}
    _write(tmp_path, "Tools.inter.json", json.dumps(inter))
    _write(tmp_path, "Tools.item.json", json.dumps({
        "0": {"title": "  Kit &amp; <b>Caboodle</b> ", "description": ["Line one.", "Line\n\t two"],
              "brand": "ACME", "categories": "Industrial & Scientific,Tools, Tools"},
        "1": {"title": "Other", "categories": [["A", "B"], "B"]},
        "2": "not an object",
    }, indent=2))
    return tmp_path


def test_amazon_positions_and_wrong_types(amazon):
    reader = readers.get_reader("amazon-json")
    reader.check(str(amazon))
    assert not reader.has_timestamps and not reader.has_ratings
    good, bad = _split(reader.read_interactions(str(amazon)))
    assert _rows(good) == [("0", "0", 0, None, 1), ("0", "1", 1, None, 1), ("0", "2", 2, None, 1),
                           ("1", "2", 0, None, 2), ("1", "0", 2, None, 2)]
    assert bad == [(2, "wrong_type"), (3, "wrong_type")]
    assert good[0].source == os.path.join(str(amazon), "Tools.inter.json")


def test_amazon_items_are_normalized(amazon):
    good, bad = _split(readers.get_reader("amazon-json").read_items(str(amazon)))
    assert good == [
        Item("0", title="Kit & Caboodle", categories=("Industrial & Scientific", "Tools"),
             description="Line one. Line two", brand="ACME"),
        Item("1", title="Other", categories=("A", "B")),
    ]
    assert bad == [(3, "wrong_type")]


def test_amazon_bad_encoding_rejects_one_record(amazon):
    _write(amazon, "Tools.item.json", b'{"0": {"title": "ok"}, "1": {"title": "caf\xe9"}}')
    good, bad = _split(readers.get_reader("amazon-json").read_items(str(amazon)))
    assert [i.title for i in good] == ["ok"] and bad == [(2, "bad_encoding")]


def test_amazon_repeated_user_key_rejects_the_earlier_records(amazon):
    _write(amazon, "Tools.inter.json", '{"0": [0, 1], "1": [2], "0": [2]}')
    good, bad = _split(readers.get_reader("amazon-json").read_interactions(str(amazon)))
    assert _rows(good) == [("1", "2", 0, None, 2), ("0", "2", 0, None, 3)]
    assert bad == [(1, "duplicate_key")]


def test_amazon_bad_json(amazon):
    _write(amazon, "Tools.inter.json", '{"0": [1, 2],\n "1": [3,, 4]}')
    reader = readers.get_reader("amazon-json")
    with pytest.raises(ValueError, match=r"Tools.inter.json:2: Expecting value"):
        reader.check(str(amazon))
    good, bad = _split(reader.read_interactions(str(amazon)))
    assert good == [] and bad == [(2, "bad_json")]


def test_amazon_needs_exactly_one_file_of_each_kind(amazon):
    _write(amazon, "Other.inter.json", "{}")
    with pytest.raises(FileNotFoundError, match=r"\*.inter.json: expected exactly one file, found .*Other"):
        readers.get_reader("amazon-json").check(str(amazon))
    os.remove(amazon / "Other.inter.json")
    os.remove(amazon / "Tools.item.json")
    with pytest.raises(FileNotFoundError, match=r"\*.item.json: expected exactly one file, found none"):
        readers.get_reader("amazon-json").check(str(amazon))


# ---------------------------------------------------------------------------------------------
# csv


def test_csv_without_timestamps_uses_line_numbers(tmp_path):
    _write(tmp_path, "interactions.csv",
           "\ufeffnote,Item_ID,user_id\n"
           "x,a,u1\n"
           "y,b,u2\n"
           '"z, quoted",c,u1\n'
           "w,d\n"
           "v,,u2\n")
    _write(tmp_path, "items.csv",
           "item_id,categories,title,description,brand,tags\n"
           'a,Tools|Kits|Tools,"Kit, large",A big kit.,ACME,handy|red\n'
           "b,,B,,,\n"
           ",,C,,,\n")
    reader = readers.get_reader("csv")
    with pytest.raises(RuntimeError, match="check"):
        _ = reader.has_timestamps
    reader.check(str(tmp_path))
    assert not reader.has_timestamps and not reader.has_ratings
    good, bad = _split(reader.read_interactions(str(tmp_path)))
    assert _rows(good) == [("u1", "a", 2, None, 2), ("u2", "b", 3, None, 3), ("u1", "c", 4, None, 4)]
    assert bad == [(5, "wrong_column_count"), (6, "missing_field")]
    items, bad = _split(reader.read_items(str(tmp_path)))
    assert items == [Item("a", title="Kit, large", categories=("Tools", "Kits"), description="A big kit.",
                          brand="ACME", tags=("handy", "red")),
                     Item("b", title="B")]
    assert bad == [(4, "missing_field")]


def test_csv_with_timestamps_and_ratings(tmp_path):
    _write(tmp_path, "interactions.csv",
           "rating,timestamp,item_id,user_id\n"
           "4.5,1600000000,a,u1\n"
           "3,1.6e9,b,u1\n"
           "nan,1600000001,a,u2\n"
           "2,,a,u2\n")
    _write(tmp_path, "items.csv", "item_id,title\na,A\nb,B\n")
    reader = readers.get_reader("csv")
    reader.check(str(tmp_path))
    assert reader.has_timestamps and reader.has_ratings
    good, bad = _split(reader.read_interactions(str(tmp_path)))
    assert _rows(good) == [("u1", "a", 1600000000, 4.5, 2), ("u1", "b", 1600000000, 3.0, 3)]
    assert bad == [(4, "unparsable_number"), (5, "missing_field")]


def test_numbers_a_tfrecord_cannot_hold_are_rejected_with_their_line(tmp_path):
    """int64 timestamps and float32 ratings: 2**63 would wrap, 1e39 would overflow the feature."""
    _write(tmp_path, "interactions.csv",
           "user_id,item_id,timestamp,rating\n"
           f"u1,a,{2**63 - 1},4\n"
           f"u1,b,{2**63},4\n"
           f"u1,a,{-2**63 - 1},4\n"
           "u1,b,1e30,4\n"
           "u2,a,5,1e39\n"
           "u2,b,5,-3e38\n")
    _write(tmp_path, "items.csv", "item_id,title\na,A\nb,B\n")
    reader = readers.get_reader("csv")
    reader.check(str(tmp_path))
    good, bad = _split(reader.read_interactions(str(tmp_path)))
    assert _rows(good) == [("u1", "a", 2**63 - 1, 4.0, 2), ("u2", "b", 5, -3e38, 7)]
    assert bad == [(3, "number_out_of_range"), (4, "number_out_of_range"), (5, "number_out_of_range"),
                   (6, "number_out_of_range")]


@pytest.mark.parametrize("content, message", [
    ("user_id,rating\nu1,3\n", r"lacks \['item_id'\]"),
    ("user_id,item_id\n", "has a header but no rows"),
    ("", "is empty"),
    ("user_id,item_id,user_id\nu,i,u\n", r"columns \['user_id'\] appear more than once"),
])
def test_csv_bad_interactions_file_is_a_clear_error(tmp_path, content, message):
    _write(tmp_path, "interactions.csv", content)
    _write(tmp_path, "items.csv", "item_id,title\na,A\n")
    with pytest.raises(ValueError, match=message):
        readers.get_reader("csv").check(str(tmp_path))


# ---------------------------------------------------------------------------------------------
# Errors and registry


@pytest.mark.parametrize("name, files, missing", [
    ("ml-latest-small", {"movies.csv": "movieId,title,genres\n1,A,B\n"}, "ratings.csv"),
    ("ml-1m", {"ratings.dat": "1::2::3::4\n"}, "movies.dat"),
    ("ml-100k", {"u.item": "x\n"}, "u.data"),
    ("csv", {"interactions.csv": "user_id,item_id\nu,i\n"}, "items.csv"),
])
def test_missing_file_names_it_and_says_what_to_pass(tmp_path, name, files, missing):
    for file_name, content in files.items():
        _write(tmp_path, file_name, content)
    with pytest.raises(FileNotFoundError, match=rf"{missing} not found: .* Pass the folder that holds"):
        readers.get_reader(name).check(str(tmp_path))


@pytest.mark.parametrize("name, files, empty", [
    ("ml-latest-small", {"ratings.csv": "", "movies.csv": "movieId,title,genres\n1,A,B\n"}, "ratings.csv"),
    ("ml-1m", {"ratings.dat": "1::2::3::4\n", "movies.dat": "\n \n"}, "movies.dat"),
    ("ml-100k", {"u.data": "", "u.item": "x\n"}, "u.data"),
    ("amazon-json", {"a.inter.json": "", "a.item.json": "{}"}, "a.inter.json"),
])
def test_empty_file_is_a_clear_error(tmp_path, name, files, empty):
    for file_name, content in files.items():
        _write(tmp_path, file_name, content)
    with pytest.raises(ValueError, match=rf"{empty} is empty"):
        readers.get_reader(name).check(str(tmp_path))


def test_get_reader_lists_valid_names_and_options():
    assert set(readers.READERS) == {"ml-latest-small", "ml-1m", "ml-100k", "amazon-json", "csv", "tfds"}
    valid = "valid formats: ml-latest-small, ml-1m, ml-100k, amazon-json, csv, tfds"
    with pytest.raises(ValueError, match=valid):
        readers.get_reader("ml-20m")
    with pytest.raises(ValueError, match=r"format 'csv' takes options \[\], got \['tfds_name'\]"):
        readers.get_reader("csv", tfds_name="x")
    with pytest.raises(ValueError, match="tfds_name 'movielens/25m-ratings' is not supported"):
        readers.get_reader("tfds", tfds_name="movielens/25m-ratings")


def test_readers_and_rows_pickle_for_beam_workers(latest_small):
    reader = pickle.loads(pickle.dumps(readers.get_reader("ml-latest-small")))
    rows = list(reader.read_interactions(str(latest_small)))
    assert pickle.loads(pickle.dumps(rows)) == rows


def test_raw_text_of_a_rejected_row_is_truncated(tmp_path):
    _write(tmp_path, "ratings.dat", "1::2::" + "9" * 1000 + "x::4\n")
    [row] = readers.get_reader("ml-1m").read_interactions(str(tmp_path))
    assert row.reason == "unparsable_number" and len(row.raw) == readers.MAX_RAW_CHARS


# ---------------------------------------------------------------------------------------------
# tfds (a tiny movielens/100k-ratings prepared offline by the test)


def test_tfds_round_trip_matches_the_raw_files(tmp_path):
    flags = ["0"] * 19
    comedy = flags.copy()
    comedy[4] = comedy[5] = "1"  # Children's, Comedy
    source = tfds_fixture.write_ml_100k(
        str(tmp_path / "raw"),
        ratings=["1\t10\t4\t881250949", "2\t11\t3\t891717742", "1\t11\t5\t878887116"],
        items=["10|Café (1995)|01-Jan-1995||http://x|" + "|".join(comedy),
               "11|Other (1996)|01-Jan-1996||http://y|" + "|".join(["1"] + flags[1:])],
        users=["1|24|M|technician|85711", "2|53|F|other|94043"])
    tfds_dir = str(tmp_path / "tfds")
    tfds_fixture.build_100k_ratings(source, tfds_dir)

    reader = readers.get_reader("tfds", tfds_name="movielens/100k-ratings")
    reader.check(tfds_dir)
    good, bad = _split(reader.read_interactions(tfds_dir))
    assert bad == []
    # TFDS stores records in its own (hashed) order: compare as sets, and against the raw files.
    raw, _ = _split(readers.get_reader("ml-100k").read_interactions(source))
    expected = {(r.user_id, r.item_id, r.timestamp, r.rating) for r in raw}
    assert {(r.user_id, r.item_id, r.timestamp, r.rating) for r in good} == expected
    assert sorted(r.line for r in good) == [1, 2, 3]
    assert {r.source for r in good} == {"movielens/100k-ratings"}
    items, bad = _split(reader.read_items(tfds_dir))
    assert bad == []
    assert sorted(items, key=lambda i: i.item_id) == [
        Item("10", title="Café (1995)", categories=("Children", "Comedy")),
        Item("11", title="Other (1996)"),
    ]

    # tfds_data_dir given as an option wins over the data_dir argument.
    explicit = readers.get_reader("tfds", tfds_name="movielens/100k-ratings", tfds_data_dir=tfds_dir)
    explicit.check(str(tmp_path / "elsewhere"))
    assert len(list(explicit.read_interactions(str(tmp_path / "elsewhere")))) == 3


def test_tfds_missing_dataset_is_a_clear_error_and_never_downloads(tmp_path):
    reader = readers.get_reader("tfds", tfds_name="movielens/1m-ratings")
    start = time.perf_counter()
    message = r"movielens/1m-ratings holds no prepared version.*never downloads"
    with pytest.raises(FileNotFoundError, match=message):
        reader.check(str(tmp_path))
    assert time.perf_counter() - start < 5
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="needs tfds_data_dir"):
        reader.check("")


# ---------------------------------------------------------------------------------------------
# The real datasets and the bundled copy


def _counts(reader, data_dir):
    interactions, bad_interactions = _split(reader.read_interactions(data_dir))
    items, bad_items = _split(reader.read_items(data_dir))
    return interactions, items, bad_interactions + bad_items


def test_ml_latest_small_counts():
    data_dir = str(shared_dataset("ml-latest-small"))
    reader = readers.get_reader("ml-latest-small")
    reader.check(data_dir)
    interactions, items, bad = _counts(reader, data_dir)
    assert (len(interactions), len(items), bad) == (100_836, 9_742, [])
    by_id = {i.item_id: i for i in items}
    assert by_id["1"].title == "Toy Story (1995)"
    assert by_id["11"].title == "American President, The (1995)"
    assert len(by_id["296"].tags) == readers.MAX_TAGS  # Pulp Fiction has 181 tag applications.
    assert sum(1 for i in items if not i.categories) == 34  # "(no genres listed)"


def test_ml_1m_counts_and_speed():
    data_dir = str(shared_dataset("ml-1m"))
    reader = readers.get_reader("ml-1m")
    reader.check(data_dir)
    # Streamed, as in the pipeline: keeping a million rows in a list would time the garbage collector.
    start = time.process_time()
    first, count, users, bad = None, 0, set(), []
    for row in reader.read_interactions(data_dir):
        if isinstance(row, Rejected):
            bad.append(row)
            continue
        first = first or row
        count += 1
        users.add(row.user_id)
    seconds = time.process_time() - start
    items, bad_items = _split(reader.read_items(data_dir))
    assert (count, len(users), len(items), bad + bad_items) == (1_000_209, 6_040, 3_883, [])
    assert first == RawInteraction("1", "1193", 978300760, 5.0, os.path.join(data_dir, "ratings.dat"), 1)
    assert any("é" in i.title for i in items)  # latin-1 decoded
    print(f"ml-1m: read {count} ratings in {seconds:.2f} s of CPU")
    assert seconds < 20, f"reading 1M ratings took {seconds:.1f} s of CPU"


def test_amazon_scientific_counts():
    data_dir = shared_dataset("amazon-scientific-2018")
    with open(data_dir / "Scientific.inter.json", encoding="utf-8") as f:
        inter = json.load(f)
    with open(data_dir / "Scientific.item.json", encoding="utf-8") as f:
        expected_items = len(json.load(f))
    reader = readers.get_reader("amazon-json")
    reader.check(str(data_dir))
    interactions, items, bad = _counts(reader, str(data_dir))
    assert (len(interactions), len(items), bad) == (sum(len(v) for v in inter.values()), expected_items, [])
    assert len(interactions) == 58_492 and len({r.user_id for r in interactions}) == 8_317
    assert [r.item_id for r in interactions if r.user_id == "1"] == [str(i) for i in inter["1"]]
    assert all(isinstance(i.description, str) and isinstance(i.categories, tuple) for i in items)


def test_bundled_copy_equals_the_shared_dataset():
    shared = shared_dataset("ml-latest-small")
    bundled = readers.bundled_data_dir()
    assert os.path.isabs(bundled)
    assert sorted(os.listdir(bundled)) == ["README.txt", "movies.csv", "ratings.csv", "tags.csv"]
    for name in os.listdir(bundled):
        assert filecmp.cmp(os.path.join(bundled, name), shared / name, shallow=False), name
    readers.get_reader("ml-latest-small").check(bundled)


@pytest.mark.parametrize("final_newline", [False, True])
@pytest.mark.parametrize("range_bytes", [1, 7, 64, 10_000])
def test_byte_ranges_give_the_lines_of_the_whole_file_each_once(tmp_path, range_bytes, final_newline):
    """Whatever the range size, the ranges' lines (numbered from the first pass's counts) are text_lines'."""
    from tfrs_selreg.data.readers import base, lines

    body = ("\ufeffuser_id,item_id\r\n" + "".join(f"u{k % 7},i{k}\r\n" if k % 5 else "\n" for k in range(60))
            ).encode("utf-8") + b"u9,\xff\xfe\n  \nu1,i99" + b"\n" * final_newline  # undecodable, blank
    path = tmp_path / "interactions.csv"
    path.write_bytes(body)
    file = base.LineFile(str(path), "utf-8-sig", header_line=base.header_line(body[:100]))
    parts = lines.ranges(file, range_bytes)
    assert len(parts) == -(-len(body) // range_bytes)
    counts = {(file.path, r.index): lines.count_lines(r) for r in parts}
    assert list(counts.values()) == [sum(1 for _ in lines._owned(r)) for r in parts]  # the block count is the lines'
    first = lines.first_line_numbers(counts)
    got = [entry for r in parts for entry in lines.range_lines(r, first[(file.path, r.index)])]
    assert got == [e for e in base.text_lines(str(path), "utf-8-sig") if isinstance(e, Rejected) or e[0] > 1]
    assert any(isinstance(e, Rejected) for e in got) and got[-1] == (64, "u1,i99")


def test_a_reader_reads_its_interactions_one_way_checked_when_defined():
    from tfrs_selreg.data.readers import base

    with pytest.raises(TypeError, match="override interaction_lines and parse_interaction_line"):
        class _LinesWithoutParser(base.DatasetReader):  # noqa: F841
            def interaction_lines(self, data_dir):
                return base.LineFile("x", "utf-8")
    with pytest.raises(TypeError, match="not both"):
        class _Neither(base.DatasetReader):  # noqa: F841
            pass
