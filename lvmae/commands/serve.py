"""`lvmae serve`: the search and inspection page over an index, its store and (optionally) a checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lvmae.commands.command import Command, CommandFailed, add_caption_options
from lvmae.foundation.progress import Summary
from lvmae.foundation.schema import Config

LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")  # binding to these serves this machine only


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--demo",
        metavar="DIR",
        type=Path,
        help="serve what `lvmae demo --out DIR` made: DIR/index, DIR/store, DIR/pretrain/model.pt, the corpus' captions",
    )
    parser.add_argument("--index", metavar="DIR", type=Path, help="index folder (default: retrieval.index_dir)")
    parser.add_argument("--store", metavar="URI", help="the index's store (default: the one the index was built from)")
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        type=Path,
        help="model.pt of a pretraining run: the video view then shows a seeded reconstruction (default: none)",
    )
    add_caption_options(parser)
    parser.add_argument("--device", help="torch device of the checkpoint (default: pretrain.device)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to NAME (the Host a proxy or a LAN name uses; repeatable; * for any). "
        "Served by default: localhost, 127.0.0.1, [::1] and the --host address",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: a query is one short text, which one thread encodes fastest; more "
        "threads help batches, not a server answering one query at a time)",
    )


def served_hosts(host: str, allowed: list[str]) -> list[str]:
    """The Host headers the server answers: this machine's names, the address it is bound to (unless
    it is a wildcard) and the names the user allows."""
    from lvmae.web import LOCAL_HOSTS

    bound = [] if host in ("0.0.0.0", "::", "") else [f"[{host}]" if ":" in host else host]
    return list(dict.fromkeys([*LOCAL_HOSTS, *bound, *allowed]))


def _run(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.api import create_app
    from lvmae.web import Server

    if not 0 <= args.port <= 65535:
        raise CommandFailed(f"--port {args.port}: 0 to 65535", status=2)
    if args.threads < 1:
        raise CommandFailed(f"--threads {args.threads}: 1 or more", status=2)
    import torch

    torch.set_num_threads(args.threads)
    app = create_app(
        cfg,
        index=args.index,
        store=args.store,
        checkpoint=args.checkpoint,
        captions=args.captions,
        truth=args.truth,
        device=args.device,
        demo=args.demo,
        hosts=served_hosts(args.host, args.allow_host),
    )
    server = Server(app, args.host, args.port)
    info = app.state.service.info()
    summary = Summary("lvmae serve")
    summary.add("store", f"{info['store']}: {info['videos']:,} videos")
    summary.add("index", info["index"])
    summary.add("checkpoint", info["checkpoint"] or "none: the video view shows no reconstruction")
    summary.add("truth", info["truth"] or "none")
    if args.host not in LOCAL_ADDRESSES:
        summary.add(
            "warning", f"bound to {args.host}: anyone who can reach this machine can search and play the videos"
        )
    summary.add("open", f"{server.url}/  (Ctrl-C stops)")
    summary.timed = False
    server.start()  # the address is printed once the server accepts connections on it
    try:
        summary.print()
        sys.stdout.flush()  # the address, now, also when stdout is a pipe
        server.wait()
    except KeyboardInterrupt:
        print("lvmae serve: stopped", file=sys.stderr)
    finally:
        server.stop()
    return 0


COMMAND = Command(
    "lvmae serve",
    "Serve the search and inspection page: type a query and see the moments (times, frames, score, caption) "
    "as cards that play the video from the moment's start; open a video's timeline (truth steps, importance, "
    "the hidden segments and what the decoder put there) and click it to seek. A JSON API under /api answers "
    "the page. Binds to 127.0.0.1 unless --host says otherwise; serves only the videos the store's manifest names.",
    run=_run,
    arguments=_arguments,
)
