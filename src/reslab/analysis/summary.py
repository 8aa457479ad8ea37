"""The course's per-layer sizing table for any model (PAPER.md Sec. 2 and 7).

:func:`summarize` runs one forward pass and records, for every leaf module call, its output
shape, parameters, multiply-accumulates, activation values and bytes, and receptive field.
Nothing is computed from per-layer-type formulas:

- **MACs** (multiply-accumulates, the paper's "FLOPs" = multiply-adds of Table 1) are
  ``torch.utils.flop_counter.FlopCounterMode``'s FLOPs / 2, read around each module call.
- **Receptive field** (theoretical: padding ignored, not clipped to the image) and its **jump**
  (input pixels between neighbouring outputs) come from :class:`FootprintMode`, a
  ``TorchDispatchMode`` that tags the output of every aten op with a :class:`Footprint` computed
  from its inputs' tags (:func:`propagate`), so branches, concatenations and option-A shortcuts
  need no special case. The same tags give the **depth**: weighted (conv/fc) layers on the
  longest path, the way the paper counts ResNet-50's 50 layers and the notes GoogLeNet's 22.
- **Activations** follow the course's convention (the VGG-16 table of the notes): the input plus
  the output of every convolution, pooling and fully connected layer; ReLU (and BN, folded into
  its convolution at inference) works in place and adds nothing, and so does the residual
  addition. A pooling layer that is an identity (a 1x1 window at stride 1, e.g. torchvision
  VGG's adaptive 7x7 pool at 224x224) adds nothing either. In this convention VGG-16 holds
  15,237,608 values per image (61 MB in fp32), the sum of the notes' own rows; the notes' total
  "24M * 4 bytes ~ 96MB/image" does not match those rows and is wrong.

Stages are the paper's (``conv1``, ``conv2_x``, ... of Table 1, from ``model.feature_info``):
a layer belongs to the first stage whose output it precedes, so the 3x3 max pool falls in
``conv2_x`` as in Table 1, and the average pool and fc form the ``head``.

Example::

    model = reslab.create_model("resnet50")
    print(format_table(summarize(model, input_size=(224, 224), device="cpu")))
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakTensorKeyDictionary

from reslab.errors import ReslabError, check_positive
from reslab.models import create_model

aten = torch.ops.aten

# Ops that apply a layer's weights: each adds one to a tensor's depth (the longest path of
# weighted layers from the input, which is how the paper counts ResNet-50's 50 layers).
WEIGHTED_OPS = (aten.convolution, aten.addmm, aten.mm, aten.bmm)

# Module kinds that make up the course's table (and its activation count).
LAYER_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.modules.conv._ConvNd, "conv"),
    (nn.Linear, "fc"),
    (nn.modules.pooling._MaxPoolNd, "pool"),
    (nn.modules.pooling._AvgPoolNd, "pool"),
    (nn.modules.pooling._AdaptiveAvgPoolNd, "pool"),
    (nn.modules.pooling._AdaptiveMaxPoolNd, "pool"),
)


@dataclass(frozen=True)
class Footprint:
    """What one value of a tensor depends on.

    Attributes:
        rf: Receptive field (height, width) in input pixels, not clipped to the image.
        jump: Input pixels between neighbouring values (the product of the strides so far).
        depth: Weighted layers (conv/fc) on the longest path from the input.
    """

    rf: tuple[int, ...]
    jump: tuple[int, ...]
    depth: int = 0

    def window(self, kernel: Sequence[int], stride: Sequence[int]) -> Footprint:
        """The footprint after a sliding window (dilation folded into ``kernel``).

        Args:
            kernel: Window size per spatial dimension, dilation included.
            stride: Stride per spatial dimension.

        Returns:
            A new footprint with the receptive field and jump grown; the depth is unchanged.
        """
        return Footprint(
            tuple(r + (k - 1) * j for r, k, j in zip(self.rf, kernel, self.jump)),
            tuple(j * s for j, s in zip(self.jump, stride)),
            self.depth,
        )


UNKNOWN = Footprint((), ())  # a tensor not computed from the input


def tensors(tree: Any) -> list[Tensor]:
    """The tensors in a nested structure (an op's or a module's arguments or outputs).

    Args:
        tree: Any nesting of lists, tuples and dicts (a pytree), or a single value.

    Returns:
        Its tensor leaves, in pytree order.
    """
    return [t for t in pytree.tree_leaves(tree) if isinstance(t, Tensor)]


def _argument(func: Any, args: tuple, kwargs: dict, name: str) -> Any:
    """The value of an aten op's argument ``name``, positional, keyword or default."""
    for i, spec in enumerate(func._schema.arguments):
        if spec.name == name:
            return args[i] if i < len(args) else kwargs.get(name, spec.default_value)
    return None


def _expand(value: Any, ndim: int) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    return values * ndim if len(values) == 1 else values


def sliding_window(
    func: Any, args: tuple, kwargs: dict, ndim: int
) -> tuple[list[int], tuple[int, ...]] | None:
    """The window of a convolution or pooling op (any op with a ``kernel_size`` argument).

    Args:
        func: The aten op.
        args: Its positional arguments.
        kwargs: Its keyword arguments.
        ndim: Spatial dimensions.

    Returns:
        (kernel, stride) per spatial dimension, dilation folded into the kernel; None when the
        op slides no window (transposed convolutions included).
    """
    if func.overloadpacket is aten.convolution:
        if _argument(func, args, kwargs, "transposed"):
            return None
        kernel = tuple(args[1].shape[2:])  # the weight's (kH, kW)
    else:
        kernel = _argument(func, args, kwargs, "kernel_size")
        if kernel is None:
            return None
    kernel = _expand(kernel, ndim)
    stride = _expand(_argument(func, args, kwargs, "stride") or kernel, ndim)  # [] = kernel
    dilation = _expand(_argument(func, args, kwargs, "dilation") or 1, ndim)
    return [(k - 1) * d + 1 for k, d in zip(kernel, dilation)], stride


def propagate(func: Any, args: tuple, kwargs: dict, inputs: list[tuple[Tensor, Footprint]],
              out: Tensor) -> Footprint:
    """The footprint of an op's output, from its tagged inputs.

    Convolutions and pooling slide their window (:func:`sliding_window`); strided slices
    (option A shortcuts) multiply the jump; any other op that shrinks the spatial size (adaptive
    or global pooling, a mean) acts as a window of ``ceil(in / out)`` at stride ``in // out``,
    and flattening a feature map covers all of it. Elementwise ops, additions and
    concatenations take the largest footprint of their inputs.

    Args:
        func: The aten op.
        args: Its positional arguments.
        kwargs: Its keyword arguments.
        inputs: The input tensors that carry a footprint, with it.
        out: The op's (first) output.

    Returns:
        The output's footprint.
    """
    x = inputs[0][0]
    footprints = [fp for _, fp in inputs]
    merged = Footprint(
        tuple(map(max, zip(*(fp.rf for fp in footprints)))),
        tuple(map(max, zip(*(fp.jump for fp in footprints)))),
        max(fp.depth for fp in footprints) + (func.overloadpacket in WEIGHTED_OPS),
    )
    ndim = len(merged.rf)
    if x.dim() != ndim + 2:
        return merged  # not a feature map (e.g. an fc layer's input)
    window = sliding_window(func, args, kwargs, ndim)
    if window is not None:
        return merged.window(*window)
    if out.dim() <= 2:  # flattened: every value sees the whole feature map
        return merged.window(x.shape[2:], x.shape[2:])
    sizes_in, sizes_out = x.shape[2:], out.shape[2:]
    if out.dim() != x.dim() or all(o >= i for i, o in zip(sizes_in, sizes_out)):
        return merged
    if func.overloadpacket is aten.slice:
        step = _argument(func, args, kwargs, "step")
        dim = _argument(func, args, kwargs, "dim") % x.dim() - 2
        return merged.window([1] * ndim, [step if d == dim else 1 for d in range(ndim)])
    kernel = [math.ceil(i / o) for i, o in zip(sizes_in, sizes_out)]
    return merged.window(kernel, [max(i // o, 1) for i, o in zip(sizes_in, sizes_out)])


class FootprintMode(TorchDispatchMode):
    """Tags every tensor computed from a tagged input with its :class:`Footprint`.

    Tag the input with :meth:`tag`; after the forward, :attr:`footprints` maps each live
    tensor (weakly) to its footprint.
    """

    def __init__(self) -> None:
        super().__init__()
        self.footprints = WeakTensorKeyDictionary()

    def tag(self, x: Tensor) -> None:
        """Mark ``x`` as the input image: one pixel, stride one, no layers.

        Args:
            x: The input batch, (N, C, H, W) (any number of spatial dimensions).
        """
        ndim = x.dim() - 2
        self.footprints[x] = Footprint((1,) * ndim, (1,) * ndim)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [
            (t, self.footprints[t])
            for t in tensors((args, kwargs))
            if t in self.footprints
        ]
        outputs = tensors(out)
        if inputs and outputs:
            footprint = propagate(func, args, kwargs, inputs, outputs[0])
            for t in outputs:
                self.footprints[t] = footprint
        return out


@dataclass(frozen=True)
class LayerRow:
    """One call of a leaf module.

    Attributes:
        name: Module path, e.g. ``layer1.0.conv1``.
        type: Module class, e.g. ``Conv2d``.
        kind: ``"conv"``, ``"fc"``, ``"pool"`` (the course's table) or ``"other"`` (BN, ReLU...).
        stage: The paper's stage (``conv1``, ``conv2_x``, ..., ``head``); empty when the model
            has no ``feature_info``.
        shape: Output shape, batch first.
        params: Parameters of the module.
        macs: Multiply-accumulates of this call.
        activations: Output values (whole batch).
        activation_bytes: Output bytes.
        counted: Whether the output is in the course's activation total (module docstring).
        rf: Receptive field (height, width) of one output value, in input pixels.
        jump: Input pixels between neighbouring output values.
        depth: Weighted layers on the longest path from the input to this output.
    """

    name: str
    type: str
    kind: str
    stage: str
    shape: tuple[int, ...]
    params: int
    macs: int
    activations: int
    activation_bytes: int
    counted: bool
    rf: tuple[int, ...]
    jump: tuple[int, ...]
    depth: int


@dataclass(frozen=True)
class StageRow:
    """One stage of the paper's table (a Table 1 row).

    Attributes:
        name: ``conv1``, ``conv2_x``, ..., or ``head``.
        shape: The stage's output shape, batch first.
        layers: Weighted layers the stage adds to the longest path (Table 1's layer count).
        params: Parameters of the stage's modules.
        macs: Multiply-accumulates of the stage.
    """

    name: str
    shape: tuple[int, ...]
    layers: int
    params: int
    macs: int


@dataclass(frozen=True)
class Totals:
    """Whole-model figures: one row of the course's case-study table.

    Attributes:
        model: The model's name.
        source: The paper table or course-notes entry it comes from (empty if unknown).
        input_shape: (batch, channels, height, width).
        params: Parameters (each shared tensor once).
        macs: Multiply-accumulates of one forward pass over the batch.
        activations: Activation values in the course's convention (module docstring).
        activation_bytes: Their bytes.
        depth: Weighted (conv/fc) layers on the longest path: 50 for ResNet-50, 22 for GoogLeNet.
        rf: Receptive field of the output, in input pixels.
    """

    model: str
    source: str
    input_shape: tuple[int, ...]
    params: int
    macs: int
    activations: int
    activation_bytes: int
    depth: int
    rf: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class ModelSummary:
    """The result of :func:`summarize`.

    Attributes:
        totals: Whole-model figures.
        layers: Every leaf module call, in execution order.
        stages: The paper's stages, when the model has ``feature_info``.
    """

    totals: Totals
    layers: list[LayerRow]
    stages: list[StageRow] = field(default_factory=list)

    def rows(self, *, all_layers: bool = False) -> list[LayerRow]:
        """The table's rows: conv, fc and pool layers, or every leaf with ``all_layers``.

        Args:
            all_layers: Include every leaf module (BN, ReLU, ...), not only conv/fc/pool layers.

        Returns:
            The selected :class:`LayerRow` objects, in execution order.
        """
        return [row for row in self.layers if all_layers or row.kind != "other"]

    def to_dict(self, *, all_layers: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict: the totals' fields, ``stages`` and ``layers``.

        Args:
            all_layers: Include every leaf module in ``layers``, not only conv/fc/pool.
        """
        return {
            **self.totals.to_dict(),
            "stages": [asdict(stage) for stage in self.stages],
            "layers": [asdict(row) for row in self.rows(all_layers=all_layers)],
        }


def model_label(model: nn.Module) -> str:
    """The registered name of a model from :func:`reslab.create_model`, else its class name.

    Args:
        model: Any model.

    Returns:
        ``model.model_name`` when set, else the class name.
    """
    return getattr(model, "model_name", type(model).__name__)


def check_input_size(model: nn.Module, input_size: Sequence[int]) -> None:
    """Reject an input size the model cannot take, before running it.

    Args:
        model: A model; one with ``min_input_size`` (VGG: its five unpadded 2x2 pools)
            rejects smaller inputs. The ResNets have none: their padded stride-2 layers give
            ceil(H/2), so any input leaves every stage at least one pixel.
        input_size: (height, width).

    Raises:
        ReslabError: Not two positive integers, or smaller than ``model.min_input_size``.
    """
    if len(input_size) != 2:
        raise ReslabError(f"input size must be (height, width), got {tuple(input_size)!r}")
    height, width = input_size
    check_positive(height=height, width=width)
    least = getattr(model, "min_input_size", None)
    if least is not None and min(height, width) < least:
        raise ReslabError(
            f"input {height}x{width} is too small for {model_label(model)}: it downsamples by "
            f"{least}; use at least {least}x{least}"
        )


def check_model_runs(model: nn.Module, in_channels: int, input_size: Sequence[int]) -> None:
    """Run one zero image through ``model`` (eval mode, no grad) to reject an input it cannot
    take with one clear error, before a long job starts (e.g. LeNet-5's 5x5 kernels on 28x28).

    Args:
        model: The model, on the CPU.
        in_channels: Image channels.
        input_size: (height, width).

    Raises:
        ReslabError: The input is too small for the model or does not fit its layers.
    """
    check_input_size(model, input_size)
    x = torch.zeros(1, in_channels, *input_size)  # (1, C, H, W)
    with trial_forward(model, x):
        model(x)


@contextlib.contextmanager
def trial_forward(model: nn.Module, x: Tensor) -> Iterator[None]:
    """Run the block in eval mode without gradients, turning a failed forward on ``x`` into
    :func:`cannot_run`'s error; the model's train/eval mode is restored afterwards.

    Args:
        model: The model the block runs.
        x: The input batch the block feeds it, (N, C, H, W) (named in the error).

    Raises:
        ReslabError: The block raised a ``RuntimeError`` (see :func:`cannot_run`).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    except RuntimeError as exc:  # a shape mismatch: the input does not fit the net
        raise cannot_run(model, x, exc) from None
    finally:
        model.train(was_training)


def cannot_run(model: nn.Module, x: Tensor, exc: RuntimeError) -> ReslabError:
    """The error for a forward pass that failed on ``x``: model, input size and torch's reason.

    Args:
        model: The model that failed.
        x: The input batch it failed on, (N, C, H, W).
        exc: The forward pass's error; its first line is quoted as the reason.

    Returns:
        The error to raise (not raised here).
    """
    reason = str(exc).strip().splitlines()[0]
    default = getattr(model, "default_input_size", None)
    hint = f"; its default input is {default[0]}x{default[1]}" if default else ""
    return ReslabError(
        f"{model_label(model)} cannot run on a {shape_text(x.shape[1:])} input ({reason}){hint}"
    )


def first_conv_channels(model: nn.Module) -> int:
    """Input channels of the model's first convolution.

    Args:
        model: Any model.

    Returns:
        ``in_channels`` of the first convolution in ``model.modules()`` order.

    Raises:
        ReslabError: The model has no convolution.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module.in_channels
    raise ReslabError(f"{model_label(model)} has no convolution; pass in_channels")


def layer_kind(module: nn.Module) -> str:
    """``"conv"``, ``"fc"``, ``"pool"`` or ``"other"``.

    Args:
        module: A module (a leaf of the model).

    Returns:
        Its kind from :data:`LAYER_KINDS`, ``"other"`` when none matches.
    """
    return next((kind for cls, kind in LAYER_KINDS if isinstance(module, cls)), "other")


class _Recorder:
    """Forward hooks that turn each leaf module call into a :class:`LayerRow` and note the
    output of each of the paper's stages (``model.feature_info``)."""

    def __init__(self, model: nn.Module, counter: FlopCounterMode, tracer: FootprintMode) -> None:
        self.counter, self.tracer = counter, tracer
        self.modules = dict(model.named_modules())
        self.stage_ends = [(info["module"], info["name"])
                           for info in getattr(model, "feature_info", [])]
        self.stage_outputs: list[Tensor] = []
        self.rows: list[LayerRow] = []
        self.flops_before: dict[str, int] = {}

    @property
    def stage(self) -> str:
        """The stage now running: the first whose output has not been seen yet."""
        if not self.stage_ends:
            return ""
        done = len(self.stage_outputs)
        return self.stage_ends[done][1] if done < len(self.stage_ends) else "head"

    @contextlib.contextmanager
    def hooks(self) -> Iterator[None]:
        """Hook every module (pre-hooks on leaves only) for the duration of the block."""
        with contextlib.ExitStack() as stack:
            for name, module in self.modules.items():
                if next(module.children(), None) is None:
                    stack.callback(module.register_forward_pre_hook(self._before(name)).remove)
                stack.callback(module.register_forward_hook(self._after(name)).remove)
            yield

    def _before(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:
            self.flops_before[name] = self.counter.get_total_flops()
        return hook

    def _after(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            outputs = tensors(output)
            if not outputs:
                return
            if name in self.flops_before:  # a leaf
                self.rows.append(self._row(name, module, args, outputs[0]))
            done = len(self.stage_outputs)
            if done < len(self.stage_ends) and self.stage_ends[done][0] == name:
                self.stage_outputs.append(outputs[0])
        return hook

    def _row(self, name: str, module: nn.Module, args: tuple, out: Tensor) -> LayerRow:
        kind = layer_kind(module)
        footprint = self.tracer.footprints.get(out, UNKNOWN)
        inputs = tensors(args)
        identity = bool(inputs) and inputs[0].shape == out.shape and (
            self.tracer.footprints.get(inputs[0]) == footprint
        )
        return LayerRow(
            name=name or type(module).__name__,
            type=type(module).__name__,
            kind=kind,
            stage=self.stage,
            shape=tuple(out.shape),
            params=sum(p.numel() for p in module.parameters()),
            macs=(self.counter.get_total_flops() - self.flops_before.pop(name)) // 2,
            activations=out.numel(),
            activation_bytes=out.numel() * out.element_size(),
            counted=kind != "other" and not identity,
            rf=footprint.rf,
            jump=footprint.jump,
            depth=footprint.depth,
        )

    def stages(self, output: Tensor) -> list[StageRow]:
        """One row per stage and the head (whose output is the model's), after the forward.

        Args:
            output: The model's output of the recorded forward pass (the head's output).

        Returns:
            A :class:`StageRow` per ``feature_info`` stage plus ``head``; empty when the model
            has no ``feature_info``.
        """
        if not self.stage_ends:
            return []
        names = [name for _, name in self.stage_ends] + ["head"]
        stages, depth = [], 0
        for name, out in zip(names, [*self.stage_outputs, output]):
            rows = [row for row in self.rows if row.stage == name]
            stage_depth = self.tracer.footprints[out].depth
            stages.append(StageRow(name, tuple(out.shape), stage_depth - depth,
                                   sum(row.params for row in rows), sum(row.macs for row in rows)))
            depth = stage_depth
        return stages


def summarize(
    model: nn.Module,
    *,
    input_size: Sequence[int] | None = None,
    batch: int = 1,
    in_channels: int | None = None,
    device: str | torch.device = "cpu",
) -> ModelSummary:
    """The course's sizing table of ``model`` for one forward pass (module docstring).

    The model runs in eval mode without gradients (BN statistics are left untouched) and gets
    its training mode back afterwards. On ``device="meta"`` (with the model built there, e.g.
    under ``with torch.device("meta"):``) nothing is allocated: only shapes are computed.

    Args:
        model: Any ``nn.Module`` taking an image batch; it must already be on ``device``.
        input_size: (height, width); ``model.default_input_size`` when None.
        batch: Images in the batch.
        in_channels: Input channels; those of the first convolution when None.
        device: Where the input batch is created.

    Returns:
        The :class:`ModelSummary`.

    Raises:
        ReslabError: The input size is missing, too small for the model, or the model cannot
            run on it.
    """
    name = model_label(model)
    if input_size is None:
        input_size = getattr(model, "default_input_size", None)
        if input_size is None:
            raise ReslabError(f"{name} has no default input size; pass input_size=(H, W)")
    check_input_size(model, input_size)
    in_channels = first_conv_channels(model) if in_channels is None else in_channels
    check_positive(batch=batch, in_channels=in_channels)
    x = torch.zeros(batch, in_channels, *input_size, device=device)  # (N, C, H, W)

    counter, tracer = FlopCounterMode(display=False), FootprintMode()
    recorder = _Recorder(model, counter, tracer)
    with trial_forward(model, x), recorder.hooks(), counter, tracer:
        tracer.tag(x)
        output = tensors(model(x))[0]
        out_footprint = tracer.footprints[output]
        stages = recorder.stages(output)

    counted = [row for row in recorder.rows if row.counted]
    totals = Totals(
        model=name,
        source=getattr(model, "paper_ref", ""),
        input_shape=tuple(x.shape),
        params=sum(p.numel() for p in model.parameters()),
        macs=counter.get_total_flops() // 2,
        activations=x.numel() + sum(row.activations for row in counted),
        activation_bytes=x.nbytes + sum(row.activation_bytes for row in counted),
        depth=out_footprint.depth,
        rf=out_footprint.rf,
    )
    return ModelSummary(totals, recorder.rows, stages)


def build_model(name: str, *, device: str | torch.device, **options: Any) -> nn.Module:
    """Build a registered model directly on ``device`` (``"meta"`` allocates nothing).

    Args:
        name: A registered model name.
        device: Where its parameters are created.
        **options: Passed to :func:`reslab.create_model`.

    Returns:
        The model.
    """
    with torch.device(device):
        return create_model(name, **options)


def compare(
    models: Sequence[str | nn.Module],
    *,
    batch: int = 1,
    device: str | torch.device = "cpu",
    **options: Any,
) -> list[Totals]:
    """The course's case-study table: each model at its own default input size.

    Args:
        models: Registered names (built on ``device``) or models already on ``device``.
        batch: Images per forward pass.
        device: Where models named by a string are built and the inputs created;
            ``"meta"`` computes the figures without allocating weights.
        **options: Passed to :func:`reslab.create_model` for the named models.

    Returns:
        One :class:`Totals` per model (params, MACs, activation memory, depth), in order.
    """
    rows = []
    for model in models:
        if isinstance(model, str):
            model = build_model(model, device=device, **options)
        rows.append(summarize(model, batch=batch, device=device).totals)
    return rows


# ---------------------------------------------------------------------------------------------
# Text tables


def si(value: float, *, unit: str = "") -> str:
    """``value`` with a K/M/G/T suffix and three significant figures (``3.86G``).

    Args:
        value: The number.
        unit: Text appended after the suffix (e.g. ``"B"``).

    Returns:
        The text, e.g. ``3.86G``; no suffix below 1000.
    """
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        scaled = f"{value / factor:.3g}"
        if abs(float(scaled)) >= 1:  # after rounding: 999_999 is 1M, not 1e+03K
            return f"{scaled}{suffix}{unit}"
    return f"{value:g}{unit}"


def byte_size(num_bytes: int) -> str:
    """Bytes with a decimal K/M/G prefix (``61MB``, ``802KB``), as the course counts them.

    Args:
        num_bytes: A size in bytes.

    Returns:
        The text, e.g. ``61MB``.
    """
    return si(num_bytes, unit="B")


def shape_text(shape: Sequence[int]) -> str:
    """A shape as ``64x112x112``.

    Args:
        shape: The sizes, e.g. a tensor's shape without the batch dimension.

    Returns:
        The sizes joined by ``x``.
    """
    return "x".join(map(str, shape))


def size_text(values: Sequence[int]) -> str:
    """``7`` for a square (7, 7), else ``7x3``; ``-`` when unknown.

    Args:
        values: Sizes per spatial dimension (e.g. a receptive field); may be empty.

    Returns:
        The text.
    """
    if not values:
        return "-"
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def render(header: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """Align a table: the first ``left`` columns to the left, the others to the right.

    Args:
        header: Column titles.
        rows: Cells, as strings.
        left: How many leading columns are text.

    Returns:
        The lines, with a rule under the header.
    """
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        padded = (cell.ljust(w) if i < left else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_table(summary: ModelSummary, *, all_layers: bool = False) -> str:
    """The per-layer table, the per-stage table (Table 1's rows) and the totals.

    Args:
        summary: From :func:`summarize`.
        all_layers: List every leaf module (BN, ReLU, ...), not only conv/fc/pool layers.

    Returns:
        The text, without a final newline.
    """
    t = summary.totals
    header = ["layer", "type", "stage", "output (CxHxW)", "params", "MACs", "activations",
              "act. memory", "RF", "jump"]
    rows = [
        [row.name, row.type, row.stage, shape_text(row.shape[1:]), f"{row.params:,}",
         si(row.macs), f"{row.activations:,}", byte_size(row.activation_bytes),
         size_text(row.rf), size_text(row.jump)]
        for row in summary.rows(all_layers=all_layers)
    ]
    text_columns = 3
    if not summary.stages:  # no stage names to show
        text_columns = 2
        for cells in (header, *rows):
            del cells[2]
    source = f" ({t.source})" if t.source else ""
    lines = [f"{t.model}{source}: input {shape_text(t.input_shape)} (N x C x H x W)", "",
             render(header, rows, left=text_columns)]
    if summary.stages:
        stage_rows = [[s.name, shape_text(s.shape[1:]), str(s.layers), f"{s.params:,}", si(s.macs)]
                      for s in summary.stages]
        lines += ["", render(["stage", "output (CxHxW)", "layers", "params", "MACs"], stage_rows)]
    lines += [
        "",
        f"params        {t.params:,}",
        f"MACs          {si(t.macs)} ({t.macs:,} multiply-accumulates, the paper's FLOPs)",
        f"activations   {t.activations:,} values, {byte_size(t.activation_bytes)} "
        "(the input and every conv/pool/fc output; ReLU and BN in place)",
        f"depth         {t.depth} weighted layers on the longest path; "
        f"receptive field of the output {size_text(t.rf)} pixels",
    ]
    return "\n".join(lines)


def format_comparison(rows: Sequence[Totals]) -> str:
    """The case-study table of :func:`compare`: one line per model.

    Args:
        rows: From :func:`compare`.

    Returns:
        The text, without a final newline.
    """
    header = ["model", "input", "params", "MACs", "activations", "act. memory", "depth"]
    cells = [
        [t.model, shape_text(t.input_shape[1:]), f"{t.params:,}", si(t.macs),
         f"{t.activations:,}", byte_size(t.activation_bytes), str(t.depth)]
        for t in rows
    ]
    return render(header, cells, left=2)
