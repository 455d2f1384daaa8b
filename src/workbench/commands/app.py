"""Opening the app (the default when `workbench` gets no subcommand)."""

from __future__ import annotations

import argparse
import sys


def run_app(args: argparse.Namespace) -> int:
    try:
        from workbench.app.main import WorkbenchApp
    except ModuleNotFoundError as error:
        if error.name and error.name.startswith("workbench.app"):
            print("workbench: the app is not built yet; try `workbench --help`", file=sys.stderr)
            return 2
        raise
    app = WorkbenchApp(actor_specs=args.actor, sessions_dir=args.sessions, theme=args.theme)
    app.run()
    return app.return_code or 0
