"""HTML report of a run's saliency records (``lightning-saliency report LOGDIR``)."""
from lightning_saliency.report.html import build_report
from lightning_saliency.report.reading import Run, find_runs, read_run, read_runs

__all__ = ["Run", "build_report", "find_runs", "read_run", "read_runs", "write_report"]


def write_report(logdir, output) -> "tuple[str, list[Run]]":
    """Read every run under ``logdir`` and write the report to ``output``; returns the path and the runs."""
    from pathlib import Path

    runs = read_runs(Path(logdir))
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(build_report(runs, title=f"lightning_saliency report: {Path(logdir).resolve().name}"),
                      encoding="utf-8")
    return str(target), runs
