import hashlib
import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lvmae.extract.inputs import InputError, list_inputs, normalise_uri, scan_inputs, video_id_for


def touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_directory_is_searched_recursively_by_extension(tmp_path):
    a = touch(tmp_path / "b" / "clip.MP4")
    b = touch(tmp_path / "a.mkv")
    touch(tmp_path / "notes.txt")
    got = list_inputs(tmp_path)
    assert [v.uri for v in got] == sorted([str(a), str(b)])
    assert got[0].video_id == video_id_for(got[0].uri)


def test_list_file_resolves_relative_to_itself(tmp_path):
    touch(tmp_path / "v" / "x.mp4")
    lst = tmp_path / "list.txt"
    lst.write_text("# my videos\nv/x.mp4\n\ns3://bucket/y.mp4\n")
    got = list_inputs(lst)
    assert [v.uri for v in got] == [str(tmp_path / "v" / "x.mp4"), "s3://bucket/y.mp4"]


def test_table_with_ids_and_labels(tmp_path):
    pq.write_table(
        pa.table({"uri": ["a.mp4", "/abs/b.mp4"], "id": ["one", None], "label": ["p1", "p2"]}), tmp_path / "in.parquet"
    )
    got = list_inputs(tmp_path / "in.parquet")
    assert got[0].video_id == "one" and got[0].uri == str(tmp_path / "a.mp4") and got[0].extra == {"label": "p1"}
    assert got[1].video_id == video_id_for("/abs/b.mp4")
    (tmp_path / "in.csv").write_text("uri,label\nc.mp4,p3\n")
    assert list_inputs(tmp_path / "in.csv")[0].extra == {"label": "p3"}


def test_ids_are_stable_and_normalised(tmp_path):
    assert normalise_uri("file://" + str(tmp_path / "a" / ".." / "x.mp4")) == str(tmp_path / "x.mp4")
    assert normalise_uri("S3://b/k") == "s3://b/k"
    assert video_id_for("s3://b/k") == video_id_for("s3://b/k")


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list_inputs(tmp_path / "nope")
    pq.write_table(pa.table({"path": ["a.mp4"]}), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="no 'uri' column"):
        list_inputs(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"uri": ["a.mp4", "b.mp4"], "id": ["same", "same"]}), tmp_path / "dup.parquet")
    with pytest.raises(InputError, match="used twice"):
        list_inputs(tmp_path / "dup.parquet")


def test_a_name_that_is_not_utf8_is_listed_with_a_stable_id(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.mp4")  # Latin-1 é: not valid UTF-8
    try:
        with open(raw, "wb") as f:
            f.write(b"x")
    except OSError:
        pytest.skip("this filesystem refuses names that are not UTF-8")
    got = list_inputs(tmp_path)
    assert [os.fsencode(v.uri) for v in got] == [raw]
    assert got[0].video_id == hashlib.sha256(raw).hexdigest()[:16] == list_inputs(tmp_path)[0].video_id
    folder = os.path.join(os.fsencode(tmp_path), b"d\xe9j\xe0")
    os.mkdir(folder)
    with pytest.raises(InputError) as e:  # a message shows such a name with repr, never half-decoded
        list_inputs(os.fsdecode(folder))
    assert repr(os.fsdecode(folder)) in str(e.value)


def test_ids_of_utf8_names_are_unchanged():
    # The ids stores already hold: sha256 of the UTF-8 text.
    for uri in ("/videos/café.mp4", "s3://b/k"):
        assert video_id_for(uri) == hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]


def test_a_list_file_that_is_not_utf8_names_the_file_and_line(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"a.mp4\ncaf\xe9.mp4\n")
    with pytest.raises(InputError, match=r"list\.txt: line 2 is not UTF-8 \(byte 0xe9"):
        list_inputs(lst)


def test_a_list_file_may_start_with_a_byte_order_mark(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_bytes("\ufeffa.mp4\n".encode())
    assert [v.uri for v in list_inputs(lst)] == [str(tmp_path / "a.mp4")]


def test_an_input_with_no_video_is_an_error_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=f"no video in {re.escape(str(empty))}: the folder holds no files") as e:
        list_inputs(empty)
    assert ".mp4" in str(e.value)
    odd = tmp_path / "odd"
    touch(odd / "a.m2ts")
    touch(odd / "sub" / "b.M2TS")
    touch(odd / "c.mxf")
    with pytest.raises(InputError, match=f"no video in {re.escape(str(odd))}: found only 2 .m2ts, 1 .mxf") as e:
        list_inputs(odd)
    assert "searched for" in str(e.value) and ".mkv" in str(e.value)
    (tmp_path / "list.txt").write_text("# nothing yet\n\n")
    with pytest.raises(InputError, match="names no video"):
        list_inputs(tmp_path / "list.txt")
    (tmp_path / "in.csv").write_text("uri\n")
    with pytest.raises(InputError, match="no rows"):
        list_inputs(tmp_path / "in.csv")


def test_scan_counts_the_files_skipped_for_their_extension(tmp_path):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "b.m2ts")
    touch(tmp_path / "sub" / "c.M2TS")
    touch(tmp_path / "sub" / "notes.txt")
    touch(tmp_path / "README")
    listing = scan_inputs(tmp_path)
    assert [v.uri for v in listing.videos] == [str(tmp_path / "a.mp4")]
    assert listing.skipped == {"": 1, ".m2ts": 2, ".txt": 1}
    assert list_inputs(tmp_path) == listing.videos
    assert scan_inputs(tmp_path / "a.mp4").skipped == {}


def test_file_uris_are_the_local_paths_they_spell(tmp_path):
    spaced = touch(tmp_path / "a b.mp4")
    assert normalise_uri("file://" + str(tmp_path / "a%20b.mp4")) == str(spaced)
    assert normalise_uri("file://localhost" + str(spaced).replace(" ", "%20")) == str(spaced)
    with pytest.raises(InputError, match="host 'server'"):
        normalise_uri("file://server/share/x.mp4")


def test_a_name_starting_with_a_hash_is_a_file_and_a_hash_with_a_space_a_comment(tmp_path):
    take = touch(tmp_path / "#take1.mp4")
    lst = tmp_path / "list.txt"
    lst.write_text("# takes of the day\n#\n#take1.mp4\n#\tanother comment\n")
    assert [v.uri for v in list_inputs(lst)] == [str(take)]


def test_a_video_listed_twice_is_named_once_and_two_videos_with_one_id_are_both_named(tmp_path):
    touch(tmp_path / "x.mp4")
    lst = tmp_path / "list.txt"
    lst.write_text("x.mp4\n./x.mp4\n")
    with pytest.raises(InputError, match="x.mp4 is listed twice") as e:
        list_inputs(lst)
    assert str(e.value).count(str(tmp_path / "x.mp4")) == 1
    pq.write_table(pa.table({"uri": ["a.mp4", "b.mp4"], "id": ["same", "same"]}), tmp_path / "dup.parquet")
    with pytest.raises(InputError, match="used twice") as e:
        list_inputs(tmp_path / "dup.parquet")
    assert str(tmp_path / "a.mp4") in str(e.value) and str(tmp_path / "b.mp4") in str(e.value)


@pytest.mark.parametrize("uri", ["s3://bucket/list.csv", "https://example.org/videos.txt"])
def test_a_remote_input_list_is_refused_by_its_uri_not_mangled(uri):
    with pytest.raises(InputError, match=re.escape(repr(uri)) + ".*local folder, list or table"):
        list_inputs(uri)
