"""``reslab eval``: top-1/top-5 error, per-class accuracy and the confusion matrix of a
checkpoint on a data set, with the paper's test protocols (Sec. 3.4, 4.2)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from reslab.commands.predict import add_checkpoint_arguments

if TYPE_CHECKING:
    from reslab.eval.runner import Evaluation

MAX_LISTED_CLASSES = 20  # more classes: per-class accuracy only in the JSON file


def configure(parser: argparse.ArgumentParser) -> None:
    """Describe ``reslab eval`` and add its arguments."""
    from reslab.eval.runner import DEFAULT_WORKERS, EVAL_BATCH, PROTOCOLS

    parser.description = (
        "Measure top-1/top-5 error and per-class accuracy, and draw the confusion "
        "matrix. Small data sets are tested on the single original view (Sec. 4.2); image "
        "folders with center, 10crop or multiscale (Sec. 3.4). Writes "
        "eval-<data>-<split>-<protocol>.json and confusion-<data>-<split>-<protocol>.png to "
        "OUT_DIR (default: the checkpoint's folder)."
    )
    add_checkpoint_arguments(parser)
    parser.add_argument("--data", metavar="NAME",
                        help="data set (see `reslab data list`; default: the one the checkpoint "
                        "was trained on)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder holding the data set (default: $RESLAB_DATA_DIR, else the "
                        "run's own --data-dir when RUN_DIR|CKPT is in a run folder trained on "
                        "this data set with one, else ./data, else a system-wide copy such as "
                        "Debian's Fashion-MNIST; a folder you name is used alone)")
    parser.add_argument("--split", help="split to evaluate (default: test, else val; for a "
                        "folder tree, the first of them it has)")
    parser.add_argument("--protocol", default="center", choices=PROTOCOLS,
                        help="test views (default: center)")
    parser.add_argument("--precise-bn", type=int, default=0, metavar="N",
                        help="first re-estimate BN statistics on N augmented training batches")
    parser.add_argument("--batch-size", type=int, default=EVAL_BATCH, metavar="B",
                        help=f"images per batch (default {EVAL_BATCH})")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="DataLoader workers for image folders, at most the CPU cores "
                        f"(default: {DEFAULT_WORKERS}, or the cores if fewer)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("-o", "--out", metavar="OUT_DIR",
                        help="folder for the JSON and the figure (created if missing; its "
                        "parent must exist)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when on a terminal)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``reslab eval``."""
    from reslab.eval.report import dumps, save_confusion_matrix, save_json
    from reslab.eval.runner import run_evaluation
    from reslab.io import check_output_path
    from reslab.train.checkpoint import checkpoint_file

    checkpoint = checkpoint_file(args.checkpoint)
    out = check_output_path(args.out or checkpoint.parent, folder=True)
    evaluation = run_evaluation(
        checkpoint, data=args.data, data_dir=args.data_dir, split=args.split,
        protocol=args.protocol, precise_bn=args.precise_bn, batch_size=args.batch_size,
        device=args.device, model=args.model, workers=args.workers, progress=args.progress,
    )  # fmt: skip
    result, classes = evaluation.result, evaluation.classes
    stem = f"{evaluation.data}-{evaluation.split}-{evaluation.protocol}"
    files = {"metrics": out / f"eval-{stem}.json",
             "confusion_matrix": out / f"confusion-{stem}.png"}
    report = {**evaluation.to_dict(), "precise_bn": args.precise_bn,
              "files": {k: str(v) for k, v in files.items()}}
    out.mkdir(exist_ok=True)
    title = (f"{evaluation.predictor.model_name} on {evaluation.data} {evaluation.split} "
             f"({evaluation.protocol}): top-1 error {100 * result.top1_error:.2f}%")
    save_confusion_matrix(files["confusion_matrix"], result.confusion, classes, title=title)
    save_json(files["metrics"], report)  # last: a report on disk has its figure
    if args.json:
        print(dumps(report), end="")
        return 0
    print_summary(evaluation, files)
    return 0


def print_summary(evaluation: Evaluation, files: dict[str, Path]) -> None:
    """The results as text: errors, per-class accuracy (up to 20 classes), written files.

    Args:
        evaluation: The finished evaluation.
        files: The written files: ``metrics`` (JSON) and ``confusion_matrix`` (PNG).
    """
    result = evaluation.result
    print(f"{evaluation.predictor.model_name} ({evaluation.predictor.source}) on "
          f"{evaluation.data} {evaluation.split} ({evaluation.protocol}), {result.count} images")
    print(f"  top-1 error  {100 * result.top1_error:6.2f}%")
    print(f"  top-5 error  {100 * result.top5_error:6.2f}%")
    print(f"  loss         {result.loss:.4f}")
    if len(evaluation.classes) <= MAX_LISTED_CLASSES:
        print("per-class accuracy:")
        width = max(map(len, evaluation.classes))
        totals = result.confusion.sum(1).tolist()
        for name, accuracy, total in zip(evaluation.classes, result.per_class_accuracy, totals):
            shown = f"{100 * accuracy:6.2f}%" if total else "     -"
            print(f"  {name:<{width}}  {shown}  ({total} images)")
    print(f"confusion matrix: {files['confusion_matrix']}")
    print(f"metrics: {files['metrics']}")
