"""The course's sizing table: Table 1's MACs and stages, the course's VGG-16 and AlexNet figures,
receptive fields (PAPER.md Sec. 2 and 7). Models are sized on the meta device (shapes only)."""

import functools
import json

import pytest
import torch
from torch import nn

from reslab.analysis.summary import build_model, compare, format_table, si, summarize
from reslab.errors import ReslabError

META = "meta"


@functools.cache
def sized(name, **options):
    return summarize(build_model(name, device=META, **options), device=META)


def rows_by_name(summary, *, all_layers=False):
    return {row.name: row for row in summary.rows(all_layers=all_layers)}


@pytest.mark.parametrize("depth, table1", [(18, 1.8e9), (34, 3.6e9), (50, 3.8e9), (101, 7.6e9),
                                           (152, 11.3e9)])
def test_table1_macs_variant_v1(depth, table1):
    assert sized(f"resnet{depth}").totals.macs == pytest.approx(table1, rel=0.02)


def test_variant_v15_costs_more():
    v1, v15 = sized("resnet50").totals.macs, sized("resnet50", variant="v1.5").totals.macs
    assert v15 > v1
    assert v15 == pytest.approx(4.1e9, rel=0.01)


def test_table1_stages_resnet50():
    stages = sized("resnet50").stages
    assert [s.name for s in stages] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "head"]
    assert [s.shape[1:] for s in stages] == [
        (64, 112, 112), (256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7), (1000,)
    ]
    assert [s.layers for s in stages] == [1, 9, 12, 18, 9, 1]  # 1 + 3x3 + 4x3 + 6x3 + 3x3 + fc
    assert sum(s.params for s in stages) == sized("resnet50").totals.params
    rows = rows_by_name(sized("resnet50"))
    assert rows["maxpool"].stage == "conv2_x"  # Table 1 lists the max pool in conv2_x
    assert rows["fc"].stage == "head"


@pytest.mark.parametrize("name, sizes", [("resnet18", [112, 56, 28, 14, 7]),
                                         ("resnet20", [32, 16, 8])])
def test_stage_output_sizes(name, sizes):
    feature_stages = sized(name).stages[-len(sizes) - 1:-1]
    assert [s.shape[2] for s in feature_stages] == sizes


def test_vgg16_course_figures():
    totals = sized("vgg16").totals
    assert totals.params == 138_357_544
    # The notes' rows: input, then each conv/pool output, then the three fc outputs.
    rows = [224 * 224 * 3, *[224 * 224 * 64] * 2, 112 * 112 * 64, *[112 * 112 * 128] * 2,
            56 * 56 * 128, *[56 * 56 * 256] * 3, 28 * 28 * 256, *[28 * 28 * 512] * 3,
            14 * 14 * 512, *[14 * 14 * 512] * 3, 7 * 7 * 512, 4096, 4096, 1000]
    assert totals.activations == sum(rows) == 15_237_608  # not the notes' "24M"
    assert totals.activation_bytes == 4 * sum(rows)  # 61 MB, not "96MB"
    assert totals.depth == 16
    assert not rows_by_name(sized("vgg16"))["avgpool"].counted  # 7x7 -> 7x7: an identity


def test_alexnet_course_figures():
    summary = sized("alexnet")
    assert summary.totals.params == 62_378_344  # the notes' "60M"
    conv1 = rows_by_name(summary)["features.conv1"]
    assert conv1.shape == (1, 96, 55, 55)
    assert conv1.params == 11 * 11 * 3 * 96 + 96
    assert conv1.rf == (11, 11) and conv1.jump == (4, 4)
    assert summary.totals.depth == 8


def test_lenet5_output_shape():
    summary = sized("lenet5")
    assert summary.layers[-1].shape == (1, 10)
    assert summary.totals.input_shape == (1, 1, 32, 32)
    assert rows_by_name(summary)["features.conv3"].rf == (32, 32)  # C5 sees the whole image


def test_googlenet_branches():
    summary = sized("googlenet")
    assert summary.totals.depth == 22  # the notes: 22 layers with weights, branches count once
    rows = rows_by_name(summary)
    # The concatenated output takes the widest branch: the 3x3 conv after a 1x1 reduction.
    assert rows["inception3a.branch3.1.conv"].rf > rows["inception3a.branch1.conv"].rf


def test_three_3x3_convs_see_7x7_with_fewer_weights():
    c = 8
    stack = nn.Sequential(*(nn.Conv2d(c, c, 3, padding=1, bias=False) for _ in range(3)))
    single = nn.Conv2d(c, c, 7, padding=3, bias=False)
    three, one = (summarize(m, input_size=(32, 32), device="cpu") for m in (stack, single))
    assert [row.rf for row in three.layers] == [(3, 3), (5, 5), (7, 7)]
    assert one.layers[0].rf == (7, 7)
    assert (three.totals.params, one.totals.params) == (27 * c * c, 49 * c * c)


def test_resnet18_stem_receptive_fields():
    rows = rows_by_name(sized("resnet18"))
    assert (rows["conv1"].rf, rows["conv1"].jump) == ((7, 7), (2, 2))
    assert (rows["maxpool"].rf, rows["maxpool"].jump) == ((11, 11), (4, 4))


def test_option_a_shortcut_slices_and_joins():
    rows = rows_by_name(sized("resnet20"), all_layers=True)
    shortcut = rows["layer2.0.downsample"]  # zero-padding, every other pixel
    assert shortcut.type == "ZeroPadShortcut"
    assert shortcut.jump == (2, 2)
    assert shortcut.rf == rows["layer1.2.relu"].rf  # sees what the block's input sees
    assert rows["layer2.0.relu"].rf == rows["layer2.0.conv2"].rf  # the sum takes the wider
    assert sized("resnet20").totals.depth == 20


def test_branches_concatenated_take_the_widest():
    class TwoBranches(nn.Module):
        def __init__(self):
            super().__init__()
            self.narrow, self.wide = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 5, padding=2)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.pool(torch.cat([self.narrow(x), self.wide(x)], 1))

    summary = summarize(TwoBranches(), input_size=(16, 16), device="cpu")
    assert summary.layers[-1].rf == (5 + 15, 5 + 15)  # global pool over the 16x16 map
    assert summary.totals.depth == 1


def test_activation_convention_counts_conv_pool_fc_only():
    summary = sized("resnet20")
    counted = [row for row in summary.layers if row.counted]
    assert {row.kind for row in counted} == {"conv", "pool", "fc"}
    expected = 3 * 32 * 32 + sum(row.activations for row in counted)
    assert summary.totals.activations == expected
    assert summary.totals.activation_bytes == 4 * expected


def test_batch_scales_macs_and_activations():
    one = sized("resnet20").totals
    four = summarize(build_model("resnet20", device=META), batch=4, device=META).totals
    assert (four.macs, four.activations, four.params) == (4 * one.macs, 4 * one.activations,
                                                         one.params)


def test_cpu_matches_meta_and_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = build_model("resnet20", device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = summarize(model, device="cpu")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert summary.totals == sized("resnet20").totals


def test_too_small_for_min_input_size():
    with pytest.raises(ReslabError) as error:
        summarize(build_model("vgg16", device=META), input_size=(16, 16), device=META)
    assert str(error.value) == (
        "input 16x16 is too small for vgg16: it downsamples by 32; use at least 32x32"
    )


@pytest.mark.parametrize(("name", "size"), [("resnet18", 28), ("resnet50", 16), ("resnet20", 1)])
def test_resnets_take_inputs_smaller_than_their_downsampling(name, size):
    """Padded stride-2 layers give ceil(H/2): ResNet-18 on 28x28 Fashion-MNIST ends with a
    1x1 map, as on 32x32 (refused as 'too small' before)."""
    summary = summarize(build_model(name, device=META), input_size=(size, size), device=META)
    last_stage = [row for row in summary.rows() if row.stage != "head"][-1]
    assert last_stage.shape[-2:] == (1, 1) and summary.totals.params == sized(name).totals.params
    model = build_model(name, device="cpu", in_channels=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, size, size)).shape == (2, 10)


def test_forward_failure_names_model_and_input():
    with pytest.raises(ReslabError, match=r"alexnet cannot run on a 3x200x200 input .*227x227"):
        summarize(build_model("alexnet", device=META), input_size=(200, 200), device=META)


def test_json_and_table():
    summary = sized("resnet50")
    data = json.loads(json.dumps(summary.to_dict()))
    assert {"params", "macs", "activations", "layers", "stages"} <= set(data)
    assert data["params"] == 25_557_032
    assert all(layer["kind"] != "other" for layer in data["layers"])
    assert len(summary.to_dict(all_layers=True)["layers"]) > len(data["layers"])
    table = format_table(summary)
    assert "conv5_x" in table and "64x112x112" in table and "2048x7x7" in table
    assert "25,557,032" in table and "3.86G" in table


def test_compare_one_row_per_model():
    rows = compare(["lenet5", "resnet20"], device=META)
    assert [(row.model, row.depth) for row in rows] == [("lenet5", 5), ("resnet20", 20)]
    assert rows[1].input_shape == (1, 3, 32, 32)


@pytest.mark.parametrize(("value", "text"), [
    (3_860_000_000, "3.86G"), (999_999, "1M"), (999.9, "1K"), (999, "999"), (1000, "1K"),
    (61_000_000, "61M"), (-2_500, "-2.5K"),
])  # fmt: skip
def test_si_rounds_before_choosing_the_suffix(value, text):
    assert si(value) == text
