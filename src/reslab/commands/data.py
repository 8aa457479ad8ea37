"""``reslab data list|get|verify|show``: list, fetch, check and look at the data sets."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from reslab.data import DATASETS, download, imagenet, imagenet_archives, verify
from reslab.data.grid import preview, render_grid, save_png
from reslab.data.datasets import locate
from reslab.data.registry import DATA_DIR_HELP, DatasetInfo, data_root
from reslab.errors import ReslabError

DATA_COMMAND_DIR_HELP = f"{DATA_DIR_HELP}; for 'folder': the tree"


def _add_action(
    actions: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    summary: str,
    description: str,
) -> argparse.ArgumentParser:
    """One ``reslab data`` action taking NAME and --data-dir."""
    parser = actions.add_parser(name, help=summary, description=description)
    parser.add_argument("name", choices=sorted(DATASETS), metavar="NAME",
                        help="data set: " + ", ".join(sorted(DATASETS)))  # fmt: skip
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_COMMAND_DIR_HELP)
    parser.set_defaults(func=func)
    return parser


def configure(parser: argparse.ArgumentParser) -> None:
    """Describe ``reslab data`` and add its sub-commands."""
    parser.description = "The paper's data sets in their official formats."
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                    parser_class=type(parser))  # fmt: skip
    listing = actions.add_parser(
        "list", help="the data sets: classes, image size, splits, and where their files are",
        description="One line per data set reslab reads: its classes, its images as the "
        "network takes them, its splits with their sizes, and the folder its files were found "
        "in (the search of every other command: --data-dir, else $RESLAB_DATA_DIR, else "
        "./data, else a system-wide copy).",
    )  # fmt: skip
    listing.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    listing.set_defaults(func=run_list)
    get = _add_action(
        actions, "get", run_get,
        summary="download a data set (MD5 checked) unless it is already there",
        description="Download CIFAR-10/100 or (Fashion-)MNIST with the official checksums. "
        "ImageNet needs an account to download: fetch its official archives yourself and "
        "`reslab data get imagenet --archives FOLDER` checks their MD5s and unpacks them into "
        "DIR/imagenet/train/<wnid>/ and val/<wnid>/ (sorted by the devkit's ground truth; "
        "an interrupted run goes on from the last whole class). Or place the folders by hand: "
        "a flat val/ is labelled by DIR/imagenet/LOC_val_solution.csv or the devkit archive "
        "there. Folder trees are placed by hand.",
    )  # fmt: skip
    get.add_argument("--mirror", action="append", metavar="URL",
                     help="base URL to download from instead of the official ones (repeatable)")
    get.add_argument("--archives", metavar="FOLDER",
                     help="imagenet: the folder holding ILSVRC2012_img_train.tar and/or "
                     "ILSVRC2012_img_val.tar with ILSVRC2012_devkit_t12.tar.gz")
    get.add_argument("--skip-md5", action="store_true",
                     help="with --archives: unpack without comparing the archives' MD5s with "
                     "the official ones (the check reads every archive once: 145 GB for both)")
    _add_action(
        actions, "verify", run_verify,
        summary="read every file; counts, checksums and per-class counts",
        description="Decode the whole data set, compare its counts with the official release "
        "and its content by MD5: every (Fashion-)MNIST file's decoded content; for CIFAR the "
        "archive, if it is kept in the data dir (no official per-file checksums exist; "
        "without it only the records' structure and counts are checked); image trees: every "
        "image decoded, and a file named as an image that is not a readable one is corrupt. "
        "Exit status 2 with one line on the first problem.",
    )  # fmt: skip
    show = _add_action(
        actions, "show", run_show, summary="write a labelled grid of samples as a PNG",
        description="Samples spread over a split, with their class names; with --augmented "
        "as the training augmentation makes them.",
    )  # fmt: skip
    show.add_argument("--split", default="train", help="split (default: train)")
    show.add_argument("--augmented", action="store_true", help="apply the training augmentation")
    show.add_argument("--erase", type=float, default=0.0, metavar="P",
                      help="with --augmented: random erasing with probability P, as "
                      "`reslab train --erase` (default 0)")
    show.add_argument("-n", type=int, default=64, dest="count", metavar="N",
                      help="number of samples (default 64)")
    show.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    show.add_argument("-o", "--output", required=True, metavar="PNG", help="the PNG to write")


def run_list(args: argparse.Namespace) -> int:
    """Run ``reslab data list``.

    Args:
        args: The parsed command line (``data_dir``).

    Returns:
        The exit status, 0.
    """
    data_root(args.data_dir)  # a data dir the user named must exist
    header = ("data set", "classes", "input", "splits (images)", "files")
    rows = [header]
    for name in sorted(DATASETS):
        info = DATASETS[name]
        splits = ", ".join(f"{split} ({info.counts[split]:,})" if split in info.counts else split
                           for split in info.splits)
        size = "x".join(map(str, (info.channels, *info.image_size)))
        rows.append((name, str(info.num_classes or "folders"), size, splits,
                     found_at(info, args.data_dir)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def found_at(info: DatasetInfo, data_dir: str | None) -> str:
    """Where ``info``'s files are, as every command would find them ("-" when not found).

    Args:
        info: The data set.
        data_dir: The data dir the user named, or None.

    Returns:
        The folder, "-", or for ``folder`` a reminder that its tree is named by --data-dir.
    """
    if info.small:
        return str(locate(info, data_dir) or "-")
    if info.name == "imagenet":
        return str(imagenet.find(info, data_root(data_dir)) or "-")
    return "(the tree --data-dir names, for each command)"


def run_get(args: argparse.Namespace) -> int:
    """Run ``reslab data get``.

    Args:
        args: The parsed command line (``name``, ``data_dir``, ``mirror``, ``archives``,
            ``skip_md5``).

    Returns:
        The exit status, 0.

    Raises:
        ReslabError: ``--archives`` for another data set than ImageNet, ``--mirror`` for
            ImageNet, or ``--skip-md5`` without ``--archives``.
    """
    if args.archives is not None or args.name == "imagenet":
        if args.name != "imagenet":
            raise ReslabError(f"--archives is for imagenet; {args.name} is downloaded")
        if args.mirror:
            raise ReslabError("imagenet has no mirrors: download its archives yourself and "
                              "name their folder with --archives")  # fmt: skip
        if args.archives is None:
            raise ReslabError("imagenet needs an account to download: fetch the official "
                              "archives and name their folder with --archives")  # fmt: skip
        folder, done = imagenet_archives.prepare(args.archives, args.data_dir,
                                                 check_md5=not args.skip_md5)  # fmt: skip
        print("\n".join(done))
        print(f"{args.name}: {folder}")
        return 0
    if args.skip_md5:
        raise ReslabError("--skip-md5 is for --archives (imagenet)")
    folder = download(args.name, args.data_dir, mirrors=tuple(args.mirror or ()) or None)
    print(f"{args.name}: {folder}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Run ``reslab data verify``.

    Args:
        args: The parsed command line (``name``, ``data_dir``).

    Returns:
        The exit status, 0.
    """
    for line in verify(args.name, args.data_dir):
        print(line)
    print("ok")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Run ``reslab data show``.

    Args:
        args: The parsed command line (``name``, ``data_dir``, ``split``, ``augmented``,
            ``erase``, ``count``, ``seed``, ``output``).

    Returns:
        The exit status, 0.

    Raises:
        ReslabError: ``-n`` is below 1, ``--erase`` is not a probability or is given
            without ``--augmented``.
    """
    from reslab.io import check_output_path

    check_output_path(args.output, suffix=".png")
    if args.count < 1:
        raise ReslabError(f"-n must be at least 1, got {args.count}")
    if not 0 <= args.erase <= 1:
        raise ReslabError(f"--erase must be a probability in [0, 1], got {args.erase}")
    if args.erase and not args.augmented:
        raise ReslabError("--erase is part of the training augmentation: add --augmented")
    images, names = preview(
        args.name, args.data_dir, args.split, count=args.count, augmented=args.augmented,
        erase=args.erase, seed=args.seed,
    )  # fmt: skip
    save_png(render_grid(images, names), args.output)
    print(f"wrote {args.output} ({len(names)} {args.split} samples"
          f"{', augmented' if args.augmented else ''}"
          f"{f', erase {args.erase:g}' if args.erase else ''})")  # fmt: skip
    return 0
