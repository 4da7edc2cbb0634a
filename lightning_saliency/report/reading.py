"""Finding runs under a log directory and reading their ``saliency/epoch_*.json`` records.

Records are read and validated by :func:`lightning_saliency.schema.files.read_record`, the one reader of
these files. A record that cannot be read (a run still writing, a crash mid-write, hand edits, another
schema version) is reported and skipped: a report over a live or broken run never fails because of one file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


from lightning_saliency.schema.files import read_record
from lightning_saliency.schema.records import RecordError, RunRecord

_STAGE_ORDER = {"fit": 0, "validate": 1}


@dataclass
class Run:
    """One training run's records (typed, as the reader checked them), in the order they were
    made, and the files that were skipped."""

    name: str
    directory: Path
    records: list[RunRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        """Every method seen in any record, first-seen order."""
        return list(dict.fromkeys(m for r in self.records for m in r.methods))


def find_runs(logdir: Path) -> list[Path]:
    """Directories under ``logdir`` (itself included) that hold ``saliency/epoch_*.json``."""
    logdir = Path(logdir)
    found = {p.parent.parent for p in logdir.rglob("saliency/epoch_*.json")}
    return sorted(found)


def _order(record: RunRecord) -> tuple:
    label = str(record.label)
    first = 0 if label == "start" else 1
    return (_STAGE_ORDER.get(record.stage, 2), first, record.global_step or 0, label)


def run_name(directory: Path, logdir: Path) -> str:
    """A run's name: its path below ``logdir``, or the logdir's own name when it is the run."""
    relative = Path(directory).relative_to(logdir).as_posix()
    return relative if relative != "." else Path(logdir).resolve().name


def read_run(directory: Path, logdir: Path) -> Run:
    """The readable records of one run directory, ordered start, epochs, then validate runs."""
    directory = Path(directory)
    run = Run(name=run_name(directory, logdir), directory=directory)
    for path in sorted((directory / "saliency").glob("epoch_*.json")):
        try:
            run.records.append(read_record(path))
        except RecordError as error:
            run.problems.append(f"{path.name}: {error}; skipped")
    run.records.sort(key=_order)
    return run


def read_runs(logdir: Path) -> list[Run]:
    """Every training run under ``logdir``. Directories whose records share a ``run_id`` (a fit
    resumed from a checkpoint into a new logger version) are one training: they are joined into
    one run, named after its directories."""
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise FileNotFoundError(f"{logdir} is not a directory.")
    joined: dict[str, Run] = {}
    runs: list[Run] = []
    for directory in find_runs(logdir):
        run = read_run(directory, logdir)
        run_id = next((r.run_id for r in run.records if r.run_id), None)
        earlier = joined.get(run_id) if run_id else None
        if earlier is None:
            runs.append(run)
            if run_id:
                joined[run_id] = run
            continue
        earlier.name = f"{earlier.name} + {run.name}"
        earlier.problems += run.problems
        labels = {(r.stage, r.label) for r in earlier.records}
        earlier.records += [r for r in run.records if (r.stage, r.label) not in labels]
        earlier.records.sort(key=_order)
    return runs
