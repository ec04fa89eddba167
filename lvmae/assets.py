"""The package's static files (`lvmae/static/`): the style the report and the inspection page
inline, and the page, script and style `lvmae serve` sends. Only the names in `ASSETS` are read, so no
name from a request reaches the file system."""

from __future__ import annotations

import functools
from importlib import resources

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "lvmae.css": "text/css; charset=utf-8",
    "serve.css": "text/css; charset=utf-8",
}


@functools.cache
def asset(name: str) -> str:
    """The text of static file `name` (one of `ASSETS`)."""
    if name not in ASSETS:
        raise KeyError(f"no static file {name!r}; there are {', '.join(ASSETS)}")
    return resources.files("lvmae").joinpath("static", name).read_text(encoding="utf-8")
