"""TensorLoader: crop/flip/pad geometry, the mean, determinism, exact resume and sharding."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from reslab.data import TensorLoader, per_pixel_mean
from reslab.errors import ReslabError

N, C, H, W = 8, 2, 5, 7


def position_images() -> torch.Tensor:
    """uint8 [N, C, H, W], every pixel distinct and non-zero: 1 + h*W + w + 40*c + 0 per sample
    (the sample is told by its label)."""
    h = torch.arange(H)[:, None] * W
    w = torch.arange(W)[None, :]
    c = torch.arange(C)[:, None, None] * 40
    return (1 + h + w + c).expand(N, C, H, W).to(torch.uint8).clone()


def loader(images=None, **options) -> TensorLoader:
    images = position_images() if images is None else images
    options = {"batch_size": 4, "device": "cpu", "train": True, **options}
    return TensorLoader(images, torch.arange(len(images)), **options)


def batches(source, count=None):
    """The next ``count`` batches, epoch after epoch (None: the rest of this epoch)."""
    if count is None:
        return list(source)
    return list(itertools.islice(itertools.chain.from_iterable(itertools.repeat(source)), count))


def as_pixels(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def test_crop_and_flip_geometry():
    """Each output is the original-size window of the zero-padded image at some offset in
    [0, 2*pad], flipped or not; over epochs every offset and both flips occur."""
    pad, images = 2, position_images()
    padded = F.pad(images, (pad,) * 4)  # [N, C, H+4, W+4]
    source, seen = loader(pad=pad), set()
    for _ in range(12):
        for x, y in source:
            assert x.shape == (4, C, H, W) and x.dtype == torch.float32
            for view, i in zip(as_pixels(x), y.tolist(), strict=True):
                matches = [
                    (dy, dx, flip)
                    for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for flip in (0, 1)
                    if torch.equal(view, (lambda w: w.flip(-1) if flip else w)(
                        padded[i, :, dy : dy + H, dx : dx + W]))
                ]  # fmt: skip
                assert len(matches) == 1
                seen.add(matches[0])
    assert {d for d, _, _ in seen} == set(range(5)) and {d for _, d, _ in seen} == set(range(5))
    assert {f for _, _, f in seen} == {0, 1}


def test_flip_off_and_pad_zero_give_the_original():
    x, y = batches(loader(pad=0, flip=False), 1)[0]
    assert torch.equal(as_pixels(x), position_images()[y])


def test_flip_only():
    views = torch.cat([as_pixels(x) for _ in range(4) for x, _ in loader(pad=0)])
    original = position_images()[0]
    assert all(torch.equal(v, original) or torch.equal(v, original.flip(-1)) for v in views)
    assert any(torch.equal(v, original.flip(-1)) for v in views)


def test_per_pixel_mean_and_its_subtraction():
    images = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    images[0] = 255
    images[1, 0, 0, 0] = 51
    mean = per_pixel_mean(images)
    assert mean.dtype == torch.float32 and mean.shape == (1, 2, 2)
    assert torch.allclose(mean, torch.tensor([[[0.6, 0.5], [0.5, 0.5]]]))
    plain = torch.cat([x for x, _ in loader(train=False)])
    centred = torch.cat([x for x, _ in loader(train=False, mean=per_pixel_mean(position_images()))])
    assert torch.allclose(centred + per_pixel_mean(position_images()), plain, atol=1e-6)
    channel = torch.tensor([0.1, 0.2])
    by_channel = torch.cat([x for x, _ in loader(train=False, mean=channel)])
    assert torch.allclose(by_channel + channel.view(2, 1, 1), plain, atol=1e-6)
    with pytest.raises(ReslabError, match=r"uint8 \[N, C, H, W\]"):
        per_pixel_mean(torch.zeros(3, 4))


def test_eval_keeps_order_and_the_last_partial_batch():
    source = loader(position_images()[:7], train=False, batch_size=3)
    got = batches(source)
    assert len(source) == 3 and [len(y) for _, y in got] == [3, 3, 1]
    assert torch.equal(torch.cat([y for _, y in got]), torch.arange(7))
    assert torch.equal(as_pixels(torch.cat([x for x, _ in got])), position_images()[:7])


def test_train_drops_the_last_partial_batch():
    source = loader(position_images()[:7], batch_size=3)
    assert len(source) == 2 and [len(y) for _, y in batches(source)] == [3, 3]


def _views(source, epochs):
    """Each sample's view per epoch: {(epoch, index): pixels}."""
    out = {}
    for epoch in range(epochs):
        source.set_epoch(epoch)
        for x, y in source:
            out.update({(epoch, i): v for v, i in zip(as_pixels(x), y.tolist(), strict=True)})
    return out


def test_randomness_depends_on_seed_epoch_and_index_only():
    by_4, by_2 = _views(loader(batch_size=4, seed=3), 3), _views(loader(batch_size=2, seed=3), 3)
    assert by_4.keys() == by_2.keys() and all(torch.equal(by_4[k], by_2[k]) for k in by_4)
    epoch0 = torch.cat([y for _, y in loader(seed=3)])
    again = torch.cat([y for _, y in loader(seed=3)])
    other = torch.cat([y for _, y in loader(seed=4)])
    assert torch.equal(epoch0, again) and not torch.equal(epoch0, other)
    assert any(not torch.equal(by_4[0, i], by_4[1, i]) for i in range(N))


def test_resume_mid_epoch_equals_straight_through():
    straight = batches(loader(seed=7), 5)  # 2 batches per epoch: crosses two epoch ends
    first = loader(seed=7)
    head = batches(first, 3)
    state = first.state_dict()
    assert state == {"epoch": 1, "batch": 1, "seed": 7, "samples_seen": 12}
    resumed = loader(seed=7)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # the epoch in progress: continues, does not restart
    tail = batches(resumed, 2)
    for (x, y), (x2, y2) in zip(straight, head + tail, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    resumed.set_epoch(5)
    assert resumed.state_dict()["batch"] == 0


def test_bad_resume_state():
    source = loader(seed=7)
    with pytest.raises(ReslabError, match=r"data state has seed 8, this loader 7"):
        source.load_state_dict({"epoch": 0, "batch": 0, "seed": 8, "samples_seen": 0})
    with pytest.raises(ReslabError, match=r"batch 9 is outside 0..2"):
        source.load_state_dict({"epoch": 0, "batch": 9, "seed": 7, "samples_seen": 0})


@pytest.mark.parametrize("train", [True, False])
def test_two_ranks_concatenate_to_the_global_batch(train):
    single = batches(loader(train=train, batch_size=4, seed=1))
    ranks = [batches(loader(train=train, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    for b, (x, y) in enumerate(single):
        assert [len(ranks[r][b][1]) for r in (0, 1)] == [2, 2]
        assert torch.equal(torch.cat([ranks[0][b][0], ranks[1][b][0]]), x)
        assert torch.equal(torch.cat([ranks[0][b][1], ranks[1][b][1]]), y)


def test_eval_shards_see_every_sample_exactly_once():
    images = position_images().repeat(2, 1, 1, 1)[:11]
    ranks = [batches(loader(images, train=False, rank=r, world_size=4)) for r in range(4)]
    assert [len(r) for r in ranks] == [3] * 4  # the same number of batches on every rank
    assert [len(ranks[r][2][1]) for r in range(4)] == [1, 1, 1, 0]  # last global batch: 3
    seen = torch.cat([y for rank in ranks for _, y in rank])
    assert torch.equal(seen.sort().values, torch.arange(11))


def _boxes(erased: torch.Tensor, plain: torch.Tensor) -> list[tuple[int, int, int, int] | None]:
    """Per sample, the bounding box (top, left, height, width) of the pixels where ``erased``
    differs from ``plain``, after checking they are all 0 in ``erased`` and form that box in
    every channel; None where nothing differs."""
    out = []
    for e, p in zip(erased, plain, strict=True):
        changed = (e != p).any(0)  # [H, W]
        if not changed.any():
            out.append(None)
            continue
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        top, left = rows[0].item(), cols[0].item()
        height, width = rows[-1].item() - top + 1, cols[-1].item() - left + 1
        box = torch.zeros_like(changed)
        box[top:top + height, left:left + width] = True
        assert torch.equal(changed, box)  # a solid rectangle...
        assert torch.all(e[:, box] == 0)  # ...set to 0 (the mean) in every channel
        out.append((top, left, height, width))
    return out


def test_random_erasing_boxes_on_the_augmented_view():
    """Erasing changes nothing but a box per erased sample, set to 0 after the mean subtraction
    (the mean image); about ``erase`` of the samples get one; its area is 0.02-0.4 of the
    image (up to rounding) and it lies inside the image; order, crops and flips stay as they
    are without erasing."""
    n, size = 2000, 20
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (n, 1, size, size), generator=generator, dtype=torch.uint8)
    mean = per_pixel_mean(images)
    options = {"batch_size": 500, "pad": 2, "mean": mean, "seed": 1}
    plain = batches(loader(images, **options))
    erased = batches(loader(images, erase=0.5, **options))
    boxes = []
    for (xe, ye), (xp, yp) in zip(erased, plain, strict=True):
        assert torch.equal(ye, yp)
        assert not (xp == 0).any()  # so every erased pixel shows as a change
        boxes += _boxes(xe, xp)
    hit = [b for b in boxes if b is not None]
    assert 0.45 < len(hit) / n < 0.55
    areas = torch.tensor([h * w / size**2 for _, _, h, w in hit])
    assert areas.min() >= 0.015 and areas.max() <= 0.45 and 0.15 < areas.mean() < 0.25
    assert all(t + h <= size and l + w <= size for t, l, h, w in hit)
    ratios = torch.tensor([h / w for _, _, h, w in hit])
    assert ratios.min() < 0.5 and ratios.max() > 2  # tall and wide boxes both occur
    assert len({(t, l) for t, l, _, _ in hit}) > 100  # boxes all over the image


def test_random_erasing_depends_on_seed_epoch_and_index_only():
    by_4 = _views(loader(batch_size=4, seed=3, erase=1.0), 3)
    by_2 = _views(loader(batch_size=2, seed=3, erase=1.0), 3)
    assert all(torch.equal(by_4[k], by_2[k]) for k in by_4)
    assert all((v == 0).any() for v in by_4.values())  # erase=1: every view has a box
    evaluated = torch.cat([x for x, _ in loader(train=False, erase=1.0)])
    assert torch.equal(as_pixels(evaluated), position_images())  # evaluation never erases


def test_channels_last():
    x, _ = batches(loader(channels_last=True), 1)[0]
    assert x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("options", "message"), [
    ({"batch_size": 6, "world_size": 4}, r"batch size 6 does not divide by world size 4"),
    ({"batch_size": 16}, r"8 training samples, fewer than one batch of 16"),
    ({"rank": 2, "world_size": 2}, r"0 <= rank < world_size"),
    ({"pad": -1}, r"pad must be >= 0"),
    ({"erase": 1.5}, r"erase must be a probability in \[0, 1\], got 1.5"),
    ({"erase": -0.1}, r"erase must be a probability"),
])  # fmt: skip
def test_bad_options(options, message):
    with pytest.raises(ReslabError, match=message):
        loader(**options)
    with pytest.raises(ReslabError, match=r"uint8 \[N, C, H, W\]"):
        loader(position_images().float())
