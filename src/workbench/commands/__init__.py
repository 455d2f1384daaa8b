"""One module per `workbench` subcommand; each defines `add_parser(subparsers)`."""
