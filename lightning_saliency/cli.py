"""Command line: ``lightning-saliency report LOGDIR [-o report.html]``."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="lightning-saliency", description="Tools for SaliencyMonitor's records.")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report", help="write a self-contained HTML report of the saliency/epoch_*.json files under LOGDIR",
        description="Colored-token views per probe example, method and run, with drift and shortcut summaries. "
                    "The file needs no network: open it in any browser.",
    )
    report.add_argument("logdir", help="a run directory or a root holding several (e.g. runs/ or lightning_logs/)")
    report.add_argument("-o", "--output", default="report.html", help="where to write the HTML (default: report.html)")
    args = parser.parse_args(argv)

    from lightning_saliency.report import write_report

    try:
        path, runs = write_report(args.logdir, args.output)
    except FileNotFoundError as error:
        parser.error(str(error))
    records = sum(len(r.records) for r in runs)
    print(f"Wrote {path}: {len(runs)} run(s), {records} record(s).")
    for run in runs:
        for problem in run.problems:
            print(f"  {run.name}: {problem}", file=sys.stderr)
    if not runs:
        print(f"  no saliency/epoch_*.json under {args.logdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
