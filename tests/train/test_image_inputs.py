"""Training on an image-folder data set (the ImageNet path of Sec. 3.4) end to end, on a tiny
tree of JPEGs: decoding workers, the scale/crop/flip/lighting pipeline, rank shards, resume."""

import torch
from safetensors.torch import load_file

from reslab.data import get_dataset, pipeline
from reslab.data.base import shard_bounds
from reslab.data.image_loader import ImageLoader, usable_cores
from reslab.data.transforms import IMAGENET_MEAN
from reslab.train.checkpoint import read_weights
from reslab.train.engine import train
from tests.data.formats import write_image


def _tree(root, per_class=6):
    generator = torch.Generator().manual_seed(0)
    for split, n in (("train", per_class), ("val", 2)):
        for c, name in enumerate(("n01", "n02")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                image = torch.randint(0, 255, (3, 40 + 8 * c, 48), generator=generator,
                                      dtype=torch.uint8)
                write_image(folder / f"{i}.jpg", image)
    return root


def test_shard_bounds_cover_each_position_once():
    for size in (8, 7, 1):
        for world in (1, 2, 3):
            spans = [shard_bounds(10, size, r, world) for r in range(world)]
            covered = [p for lo, hi in spans for p in range(lo, hi)]
            assert covered == list(range(10, 10 + size))


def test_image_loader_positions_and_resume(tmp_path):
    dataset = get_dataset("folder", _tree(tmp_path), "train", seed=0,
                          transform=pipeline("imagenet").train)
    loader = ImageLoader(dataset, batch_size=4, device="cpu", train=True, workers=0)
    assert len(loader) == 3
    straight = [y.tolist() for _, y in loader]
    again = ImageLoader(dataset, batch_size=4, device="cpu", train=True, workers=0)
    first = next(iter(again))[1].tolist()
    state = again.state_dict()
    resumed = ImageLoader(dataset, batch_size=4, device="cpu", train=True, workers=0)
    resumed.load_state_dict(state)
    assert [first] + [y.tolist() for _, y in resumed] == straight
    halves = [ImageLoader(dataset, batch_size=4, device="cpu", train=True, workers=0, rank=r,
                          world_size=2) for r in (0, 1)]
    shards = [[y.tolist() for _, y in h] for h in halves]
    assert [a + b for a, b in zip(*shards)] == straight
    x, _ = next(iter(ImageLoader(dataset, batch_size=4, device="cpu", train=True, workers=0)))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32  # Sec. 3.4's 224 crops


def test_training_workers_are_capped_at_the_cores_with_a_reslab_warning(tmp_path, caplog):
    from reslab.train.config import resolve
    from reslab.train.inputs import build_inputs

    cores = usable_cores()
    config = resolve(dict(data="folder", data_dir=str(_tree(tmp_path / "tree")), model="resnet8",
                          train_split="train", val_split="val", test_split=None,
                          batch_size=2, workers=cores + 3, device="cpu"))
    inputs = build_inputs(config, torch.device("cpu"))
    assert inputs.train.workers == inputs.evals["val"].workers == cores
    assert [r.getMessage() for r in caplog.records] == [
        f"{cores + 3} DataLoader workers asked for, but this process may use {cores} CPU cores: "
        f"using {cores}"]


def test_a_net_of_one_input_size_trains_on_crops_of_that_size(tmp_path):
    """AlexNet (227x227 only) gets 227 crops from the ImageNet pipeline; a fully-convolutional
    net keeps Sec. 3.4's 224 (ResNet-8 is CIFAR-sized but pools globally)."""
    from reslab.train.config import resolve
    from reslab.train.inputs import build_inputs

    root = _tree(tmp_path / "tree")
    common = dict(data="folder", data_dir=str(root), train_split="train", val_split="val",
                  test_split=None, batch_size=2, workers=0, device="cpu")
    for model, side in (("alexnet", 227), ("resnet8", 224)):
        inputs = build_inputs(resolve({**common, "model": model}), torch.device("cpu"))
        assert inputs.input_size == (side, side)
        x, _ = next(iter(inputs.train))
        assert x.shape[-2:] == (side, side)
        x, _ = next(iter(inputs.evals["val"]))
        assert x.shape[-2:] == (side, side)
    test = pipeline("imagenet", crop=227).eval("center")
    assert test(torch.zeros(3, 300, 400, dtype=torch.uint8)).shape == (3, 227, 227)
    scales = pipeline("imagenet", crop=32).train.transforms[0]  # LeNet-5: 1/7 of Sec. 3.4's
    assert (scales.low, scales.high) == (37, 69)
    scales = pipeline("imagenet").train.transforms[0]
    assert (scales.low, scales.high) == (256, 480)


def test_train_on_folder_tree_and_resume(tmp_path):
    root = _tree(tmp_path / "tree")
    common = dict(model="resnet8", data="folder", data_dir=str(root), train_split="train",
                  val_split="val", test_split=None, batch_size=4, iters=4, eval_every=2,
                  log_every=1, workers=1, device="cpu", deterministic=True, progress=False)
    straight = train(**common, out=str(tmp_path / "a"))
    assert straight.finished and straight.best_val_error is not None
    train(**common, out=str(tmp_path / "b"), stop_after=1)
    resumed = train(resume=tmp_path / "b", progress=False)
    a = load_file(straight.run_dir / "last.safetensors")
    b = load_file(resumed.run_dir / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the preprocessing saved: torchvision's per-channel ImageNet mean, no std (none divides)
    _, meta = read_weights(straight.run_dir / "last.safetensors")
    assert meta["preprocess"] == {"kind": "per-pixel-mean", "scale": 1 / 255, "shape": [3],
                                  "mean": list(IMAGENET_MEAN)}
