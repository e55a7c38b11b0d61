"""The ``compare`` command: train every model once per seed with identical settings, score each run, report."""

from __future__ import annotations

from pathlib import Path

from ultra_fer_mamba.compare.args import RUNTIME, parse_seeds, settings_of, train_args
from ultra_fer_mamba.compare.entries import YoloEntry, parse_models
from ultra_fer_mamba.compare.report import check_docs, write_docs, write_report
from ultra_fer_mamba.compare.state import find_report_dir, load_state, save_state
from ultra_fer_mamba.compare.twostage import TwoStageEntry
from ultra_fer_mamba.io import from_json

ENTRY_TYPES = [TwoStageEntry, YoloEntry]  # tried in order; the first whose accepts(spec) is true makes the entry


def make_entries(models: str | list | tuple) -> list:
    """The entries of ``models=``, in order (the first is the one the others are compared with).

    Examples:
        >>> [(e.name, type(e).__name__) for e in make_entries("fer-yolo-mamba-n.yaml,yolov8n.yaml+lfnsb-cls.yaml")]
        [('fer-yolo-mamba-n', 'YoloEntry'), ('yolov8n+lfnsb-cls', 'TwoStageEntry')]
    """
    return [next(t for t in ENTRY_TYPES if t.accepts(spec))(name, spec) for name, spec in parse_models(models).items()]


def _measured(run: dict) -> bool:
    """Whether a run's row is recorded and the evaluation files it points to are still there."""
    row = run.get("row")
    return bool(row) and (not row.get("eval_dir") or (Path(row["eval_dir"]) / "metrics.json").is_file())


def compare(
    data: str | None = None,
    models: str | list = "fer-yolo-mamba-s.yaml,yolov8s.yaml",
    seeds: str | list | int | None = None,
    split: str = "val",
    project: str | None = None,
    name: str | None = None,
    latency_runs: int = 30,
    docs: str | None = None,
    **train,
) -> dict:
    """Train each model once per seed with identical settings, score every run two ways, and write one report.

    Any other keyword is an Ultralytics train argument (``epochs``, ``imgsz``, ``batch``, ``lr0``, ``optimizer``,
    ``mosaic``, ``device``, ...), given to every run alike and checked by Ultralytics' config check before anything
    is trained: an unknown name or a bad value fails at once, naming it. compare's defaults differ from Ultralytics'
    in ``epochs=300 imgsz=320 batch=16 pretrained=False workers=8`` (the paper's size and batch, from scratch).

    Report folder (``runs/fer/compare``; a re-run with the same data, split and trainer arguments resumes in it, with
    other settings it starts ``compare-2``, ...)::

        state.json                 settings, per model its cost and per seed its progress; rewritten after every step
        runs/<model>/seed<k>/      each training run (weights/, results.csv, args.yaml, Ultralytics' plots)
        eval/<model>/seed<k>/      the paper-protocol evaluation (metrics.json, table.md, pr_curves.png, ...)
        val/<model>/seed<k>/       Ultralytics' val output
        report.md, report.json     models (mean ± sd over seeds), paired differences to the first, per class, runs
        learning_curve.png         mAP50-95 against epoch, mean over seeds with a ± 1 sd band
        ap50_per_class.png, pr_curves.png, training_curves.png

    Resuming: a finished run is not trained again; an unfinished one continues from its ``last.pt`` (Ultralytics'
    ``resume=True``); measurements in ``state.json`` are reused. Adding a model or a seed trains only the new runs.

    Args:
        data (str): Data YAML (Ultralytics format).
        models (str | list): Comma-separated model YAMLs or weights; the first is the one the others are compared with.
        seeds (str | list | int | None): Seeds, e.g. ``0,1,2``: every model is trained once per seed (default ``0``;
            ``seed=`` works too, for one).
        split (str): Split that is scored.
        project (str | None): Parent folder (default ``runs/fer``).
        name (str | None): Report folder name (default ``compare``).
        latency_runs (int): Timed forward passes for each model's latency median (measured once per model).
        docs (str | None): A Markdown file whose ``<!-- compare-NAME:begin -->`` ... ``<!-- compare-NAME:end -->``
            block (NAME = ``name``, default ``compare``) receives the settings, tables and plots once all runs are done.
        **train: Ultralytics train arguments for every run.

    Returns:
        (dict): The report (what report.json holds): ``settings``, ``seeds``, ``names``, ``entries`` (per model its
            cost and per seed its row), ``summary`` (means, sds, paired differences).

    Examples:
        $ fer-yolo-mamba compare data=datasets/rafdb/data.yaml models=fer-yolo-mamba-s.yaml,yolov8s.yaml seeds=0,1,2
        $ fer-yolo-mamba compare data=d.yaml models=a.yaml,b.yaml epochs=30 optimizer=AdamW lr0=0.003 mosaic=0
        >>> compare(data="synth/data.yaml", models="yolov8n.yaml,yolov8s.yaml", seeds="0,1", epochs=1)  # doctest: +SKIP
    """
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import LOGGER

    if not data:
        raise ValueError("compare needs data=path/to/data.yaml")
    seed_list = parse_seeds(seeds, train.pop("seed", None))
    args = train_args(train, data)  # unknown or bad trainer arguments fail here, before anything else
    entries = make_entries(models)
    names = list(check_det_dataset(data, autodownload=False)["names"].values())
    key = name or "compare"
    if docs:
        check_docs(docs, key)
    data_key = str(Path(data).resolve()) if Path(data).exists() else str(data)
    settings = settings_of(data_key, split, args)
    report_dir = find_report_dir(project, name, settings)
    state = load_state(report_dir) or {"settings": settings, "entries": {}}
    save_state(report_dir, state)  # before any training, so an interrupted comparison is found and resumed

    runtime = {k: args[k] for k in RUNTIME if k in args}
    for i, seed in enumerate(seed_list):
        LOGGER.info(f"compare: seed {seed} ({i + 1}/{len(seed_list)})")
        worked = [_run(e, seed, state, report_dir, data, split, args, latency_runs) for e in entries]
        seeds_done = seed_list[: i + 1]
        report = {"settings": settings, "runtime": runtime, "seeds": seeds_done, "names": names,
                  "latency_runs": latency_runs,
                  "entries": {e.name: _finished(state["entries"][e.name], seeds_done) for e in entries}}  # fmt: skip
        if any(worked) or i + 1 == len(seed_list):  # after every seed, so a long comparison can be read as it goes
            report = write_report(report_dir, report)

    if docs:
        write_docs(docs, key, report, report_dir)
        LOGGER.info(f"compare: wrote the compare-{key} block of {docs}")
    LOGGER.info(f"\n{(report_dir / 'report.md').read_text()}\ncompare: report saved to {report_dir}")
    return report


def _run(entry, seed: int, state: dict, report_dir: Path, data: str, split: str, args: dict, latency_runs: int) -> bool:
    """Train and measure one seed of an entry (and its cost, once), saving state after each step.

    Returns:
        (bool): Whether anything was trained or measured (False when all of it was already done).
    """
    record = state["entries"].setdefault(entry.name, {"model": entry.spec, "runs": {}})
    run = record["runs"].setdefault(str(seed), {"trained": False})
    save_state(report_dir, state)
    run_dir = (report_dir / "runs" / entry.name / f"seed{seed}").resolve()
    done = run["trained"] and _measured(run) and record.get("cost")
    entry.train(run_dir, {**args, "seed": seed}, data, run["trained"])
    run["trained"] = True
    save_state(report_dir, state)
    if not _measured(run):
        run["row"] = entry.measure(run_dir, report_dir, data, split, args)
        save_state(report_dir, state)
    if not record.get("cost"):
        record["cost"] = entry.cost(run_dir, args["imgsz"], latency_runs)
        save_state(report_dir, state)
    return not done


def _finished(record: dict, seeds: list[int]) -> dict:
    """An entry's record restricted to the given seeds (numbers restored from JSON), in seed order."""
    runs = {str(s): from_json(record["runs"][str(s)]["row"]) for s in seeds}
    return {"model": record["model"], "cost": record.get("cost"), "runs": runs}
