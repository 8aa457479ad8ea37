"""``reslab show``: look inside a trained model, as the course notes do (PAPER.md Sec. 7):
the first-layer filters as an image grid, and the feature maps of each stage for one image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from reslab.commands.predict import add_checkpoint_arguments
from reslab.errors import ReslabError
from reslab.io import atomic_save_bytes


def configure(parser: argparse.ArgumentParser) -> None:
    """Describe ``reslab show`` and add its arguments."""
    parser.description = (
        "Look inside a trained model, as the CNN course notes do: the first "
        "layer's filters, or the feature maps each stage makes of one image.")
    what = parser.add_subparsers(dest="what", metavar="WHAT", required=True,
                                 parser_class=type(parser))
    sub = what.add_parser(
        "filters", help="first-layer filters as an image grid",
        description="The first convolution's filters, one tile each, each scaled to its own "
        "range: RGB for a 3-channel input, else the mean over the input channels in grey.")
    sub.add_argument("checkpoint", metavar="CKPT",
                     help="run folder or weights file (.safetensors or .pth)")
    sub.add_argument("-o", "--output", default="conv1.png", help="PNG to write (default conv1.png)")
    sub.set_defaults(func=run)
    sub = what.add_parser(
        "features", help="feature maps of each stage for one image",
        description="The first feature maps of the stem and of each stage (conv1, conv2_x, "
        "...) for one image, preprocessed as the model's training data was.")
    add_checkpoint_arguments(sub, device=False)
    sub.add_argument("image", metavar="IMAGE", help="image file")
    sub.add_argument("-o", "--output", default="maps.png", help="PNG to write (default maps.png)")
    sub.add_argument("--maps", type=int, default=8,
                     help="feature maps shown per stage (default 8; at most the widest "
                     "stage's channels)")
    sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``reslab show``."""
    from reslab.io import check_output_path

    output = check_output_path(args.output, suffix=".png")
    if args.what == "filters":
        png = filters_png(args.checkpoint)
    else:
        if args.maps < 1:
            raise ReslabError(f"--maps must be positive, got {args.maps}")
        png = feature_maps_png(args.checkpoint, args.image, maps=args.maps, model=args.model)
    atomic_save_bytes(output, png)
    print(f"wrote {output}")
    return 0


def first_conv_weight(state: dict[str, Tensor], meta: dict[str, Any], *, source: str,
                      ordered: bool = True) -> tuple[str, Tensor]:
    """The first layer's convolution kernel of a state dict.

    A reslab checkpoint names its model: the first kernel in the model's own order. A
    foreign state dict: the first 4-d tensor that sees at most 3 input channels (the image's),
    else the first 4-d tensor, in stored order (a pickled ``.pth`` keeps the model's order; a
    safetensors file does not, so its names are taken in natural order: ``conv1`` before
    ``layer1``, ``features.0`` before ``features.1``).

    Args:
        state: Parameter name to tensor.
        meta: The checkpoint's reslab metadata (empty for foreign files).
        source: The checkpoint as given, for the error message.
        ordered: ``state`` is in the model's order (False for safetensors files).

    Returns:
        (key, weight [out_channels, in_channels, kh, kw]).

    Raises:
        ReslabError: The state dict holds no 4-d tensor.
    """
    from reslab.errors import natural_key
    from reslab.models import state_shapes

    kernels = {key: value for key, value in state.items() if value.ndim == 4}
    if not kernels:
        raise ReslabError(f"{source} holds no convolution weights")
    if meta.get("model"):
        shapes = state_shapes(meta["model"], **meta.get("model_options", {}))
        key = next((k for k, shape in shapes.items() if len(shape) == 4 and k in kernels), None)
        if key is not None:
            return key, kernels[key]
    keys = list(kernels) if ordered else sorted(kernels, key=natural_key)
    key = next((k for k in keys if kernels[k].shape[1] <= 3), keys[0])
    return key, kernels[key]


def filters_png(checkpoint: str) -> bytes:
    """Draw the first layer's filters, one tile each (RGB for 3 input channels, else the mean
    over channels in grey), each scaled to its own min..max.

    Args:
        checkpoint: A run folder or weights file (.safetensors by reslab, or a
            torchvision-style .pth).

    Returns:
        PNG bytes.
    """
    from reslab.plots import figure_png, pyplot
    from reslab.train.checkpoint import checkpoint_file, read_weights

    file = checkpoint_file(checkpoint)
    state, meta = read_weights(file)
    key, weight = first_conv_weight(state, meta, source=checkpoint,
                                    ordered=file.suffix != ".safetensors")  # (K, C, kh, kw)
    if weight.shape[1] != 3:
        weight = weight.mean(1, keepdim=True)  # -> (K, 1, kh, kw)
    low = weight.amin((1, 2, 3), keepdim=True)
    high = weight.amax((1, 2, 3), keepdim=True)
    tiles = ((weight - low) / (high - low).clamp_min(1e-12)).permute(0, 2, 3, 1)  # (K, kh, kw, C)
    plt = pyplot()
    columns = min(16, len(tiles))
    rows = -(-len(tiles) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.8, rows * 0.8 + 0.5),
                             dpi=110, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile in zip(axes.flat, tiles):
        ax.imshow(tile.squeeze(-1).numpy(), cmap="gray", interpolation="nearest")
    fig.suptitle(f"{key}: {len(tiles)} filters {weight.shape[2]}x{weight.shape[3]}", fontsize=9)
    return figure_png(fig)


@torch.no_grad()
def feature_maps_png(checkpoint: str, image: str, *, maps: int = 8,
                     model: str | None = None) -> bytes:
    """Draw the first ``maps`` feature maps of each stage (``conv1``, ``conv2_x``, ...) of a
    ResNet for one image.

    Args:
        checkpoint: A run folder, a weights file written by reslab, or (with ``model``) a
            torchvision-style state dict.
        image: An image file (preprocessed as the model's training data was).
        maps: Channels shown per stage, at most the widest stage's channel count (a row of
            a narrower stage ends with blank panels).
        model: Architecture of a state dict without reslab metadata (see :func:`reslab.load`).

    Returns:
        PNG bytes.
    """
    from reslab.eval.predictor import load
    from reslab.plots import figure_png, pyplot
    from reslab.models import stage_outputs

    predictor = load(checkpoint, model=model)
    if not hasattr(predictor.model, "stage_nodes"):
        raise ReslabError(f"{checkpoint}: {predictor.model_name} has no stages to show")
    x = predictor.preprocess([Path(image)])  # (1, C, H, W)
    stages = stage_outputs(predictor.model, x)  # name -> (1, C_s, H_s, W_s)
    maps = min(maps, max(output.shape[1] for output in stages.values()))
    plt = pyplot()
    fig, axes = plt.subplots(len(stages), maps, figsize=(maps * 1.1, len(stages) * 1.25),
                             dpi=110, squeeze=False)
    for row, (name, output) in zip(axes, stages.items()):
        for i, ax in enumerate(row):
            ax.axis("off")
            if i < output.shape[1]:
                ax.imshow(output[0, i].float().cpu().numpy(), cmap="viridis")
        row[0].set_title(f"{name} {tuple(output.shape[2:])}", fontsize=8, loc="left")
    fig.suptitle(f"{predictor.model_name}: first {maps} maps of each stage", fontsize=9)
    return figure_png(fig)
