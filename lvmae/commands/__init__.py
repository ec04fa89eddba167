"""One module per `lvmae` subcommand; each has `build_parser()` and `main(argv=None) -> int`."""
