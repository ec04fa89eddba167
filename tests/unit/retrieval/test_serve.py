"""The pieces of `lvmae.web` that need no store: thumbnail names, the cache, the static files."""

import math

import pytest

from lvmae.assets import ASSETS, asset
from lvmae.web import _LRU, NotFound, _seconds_of, thumb_url


@pytest.mark.parametrize("name,seconds", [("12.5.jpg", 12.5), ("0.0.jpg", 0.0), ("7.jpg", 7.0), ("1e2.jpg", 100.0)])
def test_thumbnail_names_are_seconds(name, seconds):
    assert _seconds_of(name) == seconds


@pytest.mark.parametrize("name", ["12.5.png", "12.5", "later.jpg", "nan.jpg", "inf.jpg", ".jpg", "..%2F1.jpg"])
def test_other_thumbnail_names_are_not_found(name):
    with pytest.raises(NotFound, match="SECONDS.jpg"):
        _seconds_of(name)


def test_thumbnail_urls_quote_the_id_and_round_the_time():
    assert thumb_url("a b/c", 3.14159) == "/thumb/a%20b%2Fc/3.1.jpg"
    assert _seconds_of(thumb_url("v", 95.04).rsplit("/", 1)[1]) == 95.0
    assert not math.isnan(_seconds_of("0.1.jpg"))


def test_the_cache_keeps_the_most_recent_and_makes_each_value_once():
    made = []
    cache = _LRU(2)

    def make(key):
        made.append(key)
        return key * 10

    assert [cache.get(k, lambda k=k: make(k)) for k in (1, 2, 1, 3, 1, 2)] == [10, 20, 10, 30, 10, 20]
    assert made == [1, 2, 3, 2]  # 2 was the least recent when 3 came, so it is made again


def test_every_static_file_is_there_and_nothing_else_is_read():
    for name in ASSETS:
        assert asset(name).strip()
    assert "/static/app.js" in asset("index.html") and "/static/lvmae.css" in asset("index.html")
    with pytest.raises(KeyError):
        asset("../serve.py")
