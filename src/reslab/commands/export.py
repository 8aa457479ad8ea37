"""``reslab export``: a checkpoint as an ONNX file with a dynamic batch axis."""

from __future__ import annotations

import argparse

from reslab.commands.predict import add_checkpoint_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    """Describe ``reslab export`` and add its arguments."""
    from reslab.export import FORMATS, MIN_OPSET

    parser.description = (
        "Write the model as ONNX (input 'images': preprocessed float32 "
        "[batch, C, H, W]; output 'logits'), with the class names and the preprocessing in "
        "its metadata_props (reslab.classes, reslab.preprocess)."
    )
    add_checkpoint_arguments(parser, device=False)
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="file format")
    parser.add_argument("-o", "--out", required=True, metavar="FILE", help="the file to write")
    parser.add_argument("--opset", type=int, metavar="N",
                        help=f"ONNX opset, {MIN_OPSET} or newer (default: the exporter's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``reslab export``."""
    from reslab.eval.predictor import load
    from reslab.io import check_output_path
    from reslab.export import INPUT_NAME, OUTPUT_NAME, export_onnx

    out = check_output_path(args.out, suffix=f".{args.format}")  # before reading the weights
    predictor = load(args.checkpoint, device="cpu", model=args.model)
    path = export_onnx(predictor, out, opset=args.opset)
    shape = ", ".join(map(str, (predictor.in_channels, *predictor.input_size)))
    print(f"wrote {path}: {predictor.model_name}, {INPUT_NAME} float32 [batch, {shape}] -> "
          f"{OUTPUT_NAME} [batch, {len(predictor.classes)}]; class names and preprocessing "
          "in metadata_props")
    return 0
