import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from extract.inputs import InputError, list_inputs, normalise_uri, video_id_for


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
