"""``reslab predict``: class names and probabilities for image files (or folders of them)."""

from __future__ import annotations

import argparse

from reslab.errors import ReslabError


def add_checkpoint_arguments(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """Add the checkpoint argument and :func:`reslab.load`'s ``--model`` (and ``--device``).

    Args:
        parser: The sub-command's parser.
        device: Also add ``--device`` (default ``auto``).
    """
    parser.add_argument("checkpoint", metavar="RUN_DIR|CKPT",
                        help="a run folder (best, else last checkpoint), a .safetensors file, "
                        "or a torchvision-style .pth/.pt state dict (with --model)")
    parser.add_argument("--model", metavar="NAME",
                        help="architecture of a .pth/.pt state dict, e.g. resnet50 (torchvision "
                        "weights: the v1.5 variant); overrides the checkpoint's own")
    if device:
        parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def configure(parser: argparse.ArgumentParser) -> None:
    """Describe ``reslab predict`` and add its arguments."""
    parser.description = (
        "Print the most probable classes of each image. A folder stands for the "
        "images in it (sorted by name). Images are resized and centre-cropped to the model's "
        "input, converted to its channels, and normalised as in training."
    )
    add_checkpoint_arguments(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--topk", type=int, default=5, metavar="K",
                        help="classes per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="B",
                        help="images per forward pass (default 64)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar over the images (default: when on a terminal)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``reslab predict``: every image is decoded before anything is printed (a batch at a
    time, so a folder of any size fits in memory)."""
    import sys

    from tqdm import tqdm

    from reslab.eval.predictor import list_images, load
    from reslab.eval.report import dumps

    for flag, value in (("--topk", args.topk), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ReslabError(f"{flag} must be positive, got {value}")
    predictor = load(args.checkpoint, device=args.device, model=args.model)
    paths = list_images(args.images)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    with tqdm(paths, desc="predict", unit="image", disable=not show) as images:
        predictions = predictor.topk(images, args.topk, batch_size=args.batch_size)
    if args.json:
        print(dumps([
            {"image": str(path), "top": [{"class": name, "probability": p} for name, p in top]}
            for path, top in zip(paths, predictions)
        ]), end="")  # fmt: skip
        return 0
    for path, top in zip(paths, predictions):
        print(path)
        for name, probability in top:
            print(f"  {100 * probability:6.2f}%  {name}")
    return 0
