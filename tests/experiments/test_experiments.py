"""Each experiment in a tiny configuration: the report's numbers against the run folders it
came from, each claim sentence against those numbers, resuming and skipping sub-runs."""

import csv
import json
import os
import re
import shutil
import signal
import statistics
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from reslab.errors import ReslabError
from reslab.experiments import degradation, depth_table, layer_responses, runs, shortcuts
from reslab.experiments.runs import NetResult, ensure_run, run_state
from reslab.train.engine import train
from reslab.train.rundir import METRIC_COLUMNS, dump_toml, read_metrics
from tests.experiments.conftest import TINY_RECIPE, tiny_setup


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def last(run_dir, column):
    return [float(r[column]) for r in read_metrics(run_dir / "metrics.csv") if r[column]][-1]


def percents(sentence):
    return [float(x) / 100 for x in re.findall(r"(\d+\.\d+)%", sentence)]


def md_table(report, header):
    """The cells of the Markdown table whose header row starts with ``| header |``."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    cells = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells.append([c.strip() for c in line.strip("|").split("|")])
    return cells


def sentence(report, start):
    return next(line for line in report.splitlines() if line.startswith(f"- {start}"))


def pct(value):
    return f"{100 * float(value):.2f}"


def test_degradation_report_matches_run_folders(degradation_dir):
    table = rows(degradation_dir / "degradation.csv")
    assert [r["net"] for r in table] == ["plain-8", "ResNet-8", "plain-14", "ResNet-14"]
    for r in table:
        run_dir = degradation_dir / "runs" / r["run_dir"]
        assert run_state(run_dir).finished
        assert float(r["train_error"]) == last(run_dir, "train_error")
        assert float(r["test_error"]) == last(run_dir, "test_error")
        assert (run_dir / "monitor.csv").is_file()
    assert int(table[0]["params"]) == int(table[1]["params"])  # option A adds no parameters
    report = (degradation_dir / "report.md").read_text()
    html = (degradation_dir / "report.html").read_text()
    assert "![Fig. 6-style error curves](degradation.png)" in report
    assert '<img alt="Fig. 6-style error curves" src="degradation.png">' in html
    assert "<table>" in html and (degradation_dir / "degradation.png").stat().st_size > 1000
    by_net = {r["net"]: r for r in table}  # each Table 2-style row shows the CSV's numbers
    assert md_table(report, "layers") == [
        [str(d), *(pct(by_net[f"{family}-{d}"][column])
                   for column in ("train_error", "test_error") for family in ("plain", "ResNet"))]
        for d in (8, 14)]
    for r in table:  # each monitor line names the lr its update/weight ratios were taken at
        lrs = {int(m["iteration"]): float(m["lr"]) for m in
               read_metrics(degradation_dir / "runs" / r["run_dir"] / "metrics.csv") if m["lr"]}
        line = next(x for x in report.splitlines() if x.startswith(f"- {r['net']} at iteration"))
        found = re.search(r"at iteration (\d+) \(lr ([\d.e-]+)[,)]", line)
        iteration, lr = int(found[1]), float(found[2])
        assert lr == pytest.approx(lrs[max(i for i in lrs if i <= iteration)])


def test_degradation_claims_follow_from_numbers(degradation_dir):
    table = {r["net"]: r for r in rows(degradation_dir / "degradation.csv")}
    train_error = {net: float(r["train_error"]) for net, r in table.items()}
    report = (degradation_dir / "report.md").read_text()
    plain = next(line for line in report.splitlines() if line.startswith("- The deeper plain net"))
    higher = train_error["plain-14"] > train_error["plain-8"]
    assert ("ends with higher training error" in plain) == higher
    assert percents(plain) == pytest.approx([train_error["plain-14"], train_error["plain-8"]],
                                            abs=5e-5)
    resnet = next(line for line in report.splitlines() if line.startswith("- The deeper ResNet"))
    assert ("with lower training error" in resnet) == (train_error["ResNet-14"]
                                                       < train_error["ResNet-8"])
    assert ("reverses the degradation" in resnet) == (
        higher and train_error["ResNet-14"] < train_error["ResNet-8"])
    assert percents(resnet) == pytest.approx([train_error["ResNet-14"], train_error["ResNet-8"]],
                                             abs=5e-5)
    for depth in (8, 14):
        line = sentence(report, f"At depth {depth} the ResNet")
        lower = train_error[f"ResNet-{depth}"] < train_error[f"plain-{depth}"]
        assert ("ends with lower training error" in line) == lower
        assert percents(line) == pytest.approx(
            [train_error[f"ResNet-{depth}"], train_error[f"plain-{depth}"]], abs=5e-5)


def net(label, family, depth, train_error, test_error=0.1):
    return NetResult(label, family, depth, None, train_error, test_error, 1000)


def test_degradation_claims_both_ways():
    degrading = degradation.claims([net("plain-20", "plain", 20, 0.10),
                                    net("plain-56", "plain", 56, 0.20),
                                    net("ResNet-20", "resnet", 20, 0.09),
                                    net("ResNet-56", "resnet", 56, 0.05)])
    assert "ends with higher training error than" in degrading[0]
    assert "reverses the degradation" in degrading[1]
    healthy = degradation.claims([net("plain-20", "plain", 20, 0.20),
                                  net("plain-56", "plain", 56, 0.10),
                                  net("ResNet-20", "resnet", 20, 0.05),
                                  net("ResNet-56", "resnet", 56, 0.09)])
    assert "no higher training error" in healthy[0] and "no degradation" in healthy[0]
    assert "no lower training error" in healthy[1] and "reverse" not in healthy[1]


def test_rerun_skips_finished_and_resumes_stopped(degradation_dir, tiny_data, tmp_path):
    weights = degradation_dir / "runs" / "resnet8" / "last.safetensors"
    before = weights.stat().st_mtime_ns
    degradation.run_degradation(tiny_setup(degradation_dir, tiny_data), depths=[8, 14])
    assert weights.stat().st_mtime_ns == before  # finished: skipped

    config = {**TINY_RECIPE, "val_split": "test", "model": "resnet8", "data": "fashion-mnist",
              "data_dir": str(tiny_data), "device": "cpu"}
    folder = tmp_path / "stopped"
    train(config, out=str(folder), stop_after=1, progress=False)
    assert not run_state(folder).finished and not run_state(folder).active  # resumable at once
    assert not (folder / "writer.json").exists()  # handed back, not just "ours"
    assert json.loads((folder / "run.json").read_text())["total_iters"] == run_state(folder).total
    ensure_run(folder, config, progress=False)
    assert run_state(folder).finished
    assert [int(r["iteration"]) for r in read_metrics(folder / "metrics.csv")
            if r["train_error"]] == [2, 4]  # the stop after 1 logs no row of its own


def test_run_killed_in_its_final_evaluation_is_not_finished(tiny_data, tmp_path):
    """A run killed after logging its last training row, before its final evaluation and
    checkpoint, is resumed by the experiment, not skipped with an earlier test error."""
    config = {**TINY_RECIPE, "val_split": "test", "model": "resnet8", "data": "fashion-mnist",
              "data_dir": str(tiny_data), "device": "cpu"}
    folder = tmp_path / "killed"
    train(config, out=str(folder), stop_after=2, progress=False)  # checkpoint at 2 of 4
    with (folder / "metrics.csv").open("a") as handle:  # the last training row, logged first
        handle.write(",".join("4" if c == "iteration" else "0.5" if c == "train_error" else ""
                              for c in METRIC_COLUMNS) + "\n")
    state = run_state(folder)
    assert (state.iteration, state.total, state.finished, state.resumable) == (4, 4, False, True)
    ensure_run(folder, config, progress=False)
    assert run_state(folder).finished
    rows = read_metrics(folder / "metrics.csv")
    assert rows[-1]["iteration"] == "4" and rows[-1]["test_error"]
    assert [int(r["iteration"]) for r in rows if r["train_error"]] == [2, 4]


def test_sub_runs_of_another_recipe_are_not_reused(degradation_dir, tiny_data, tmp_path):
    """Sub-runs left without their experiment.json (deleted, as the message for a damaged one
    says) are reused only by the recipe that trained them: another is refused in one line
    naming the keys, before experiment.json is written, so the right recipe still works."""
    out = tmp_path / "exp"
    shutil.copytree(degradation_dir, out)
    (out / "experiment.json").unlink()
    weights = out / "runs" / "plain8" / "last.safetensors"
    before = weights.stat().st_mtime_ns
    with pytest.raises(ReslabError, match=r"plain8 was trained with other settings than this "
                       r"experiment's \(iters 4, not 6; milestones \[2.0, 3.0\], not \[3.0, 4.5\]\)"):
        degradation.run_degradation(tiny_setup(out, tiny_data, iters=6), depths=[8, 14])
    assert not (out / "experiment.json").exists()
    degradation.run_degradation(tiny_setup(out, tiny_data), depths=[8, 14])
    assert weights.stat().st_mtime_ns == before  # the recipe that trained it: reused
    assert json.loads((out / "experiment.json").read_text())["recipe"]["iters"] == 4


def test_interrupted_experiment_stops_and_resumes_at_once(tiny_data, tmp_path, monkeypatch):
    """Ctrl-C in a sub-run: it checkpoints, the experiment stops (no further sub-run, no
    report), and the same command run straight away resumes it and finishes."""
    engine = sys.modules["reslab.train.engine"]
    calls = []

    class InterruptedStep(engine.TrainStep):
        def __call__(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C during the third step
            return super().__call__(*args, **kwargs)

    monkeypatch.setattr(engine, "TrainStep", InterruptedStep)
    setup = tiny_setup(tmp_path / "exp", tiny_data)
    with pytest.raises(KeyboardInterrupt):
        degradation.run_degradation(setup, depths=[8])
    sub_runs = tmp_path / "exp" / "runs"
    assert [p.name for p in sub_runs.iterdir()] == ["plain8"]  # the experiment stopped there
    state = run_state(sub_runs / "plain8")  # logged up to iteration 2, checkpointed after 3
    assert (state.iteration, state.finished, state.active, state.resumable) == (2, False, False,
                                                                                True)
    state = torch.load(sub_runs / "plain8" / "trainer_state.pt", weights_only=True)
    assert state["iteration"] == 3
    assert not (sub_runs / "plain8" / "writer.json").exists()
    assert not (tmp_path / "exp" / "report.md").exists()
    monkeypatch.undo()
    degradation.run_degradation(setup, depths=[8])  # at once: nothing to wait for
    assert run_state(sub_runs / "plain8").finished and run_state(sub_runs / "resnet8").finished
    assert [int(r["iteration"]) for r in read_metrics(sub_runs / "plain8" / "metrics.csv")
            if r["train_error"]] == [2, 4]
    assert (tmp_path / "exp" / "report.md").is_file()


def test_110_layers_get_the_papers_warm_up(tmp_path, monkeypatch):
    """Sec. 4.2: ResNet-110 starts at lr 0.01 until its training error is below 80% — added
    by every experiment from 110 layers on, unless the recipe has a warm-up of its own."""
    assert runs.paper_warmup({}, 56) == {}
    assert runs.paper_warmup({}, 110) == {"warmup_lr": 0.01}
    assert runs.paper_warmup({"warmup_lr": 0.02}, 110) == {}
    assert runs.paper_warmup({"lr_ramp": 1.0}, 1202) == {}
    trained = {}

    def record(folder, config, *, progress):
        trained[folder.name] = config
        return folder

    monkeypatch.setattr(runs, "ensure_run", record)
    monkeypatch.setattr(depth_table, "net_result", lambda *args: None)
    monkeypatch.setattr(depth_table, "write_report", lambda setup, results: None)
    depth_table.run_depth_table(runs.Setup(data="fashion-mnist", out=tmp_path, recipe={}),
                                depths=[56, 110])
    assert trained["resnet110-seed0"]["warmup_lr"] == 0.01
    assert "warmup_lr" not in trained["resnet56-seed0"]


def test_run_length_in_epochs_comes_from_the_run(tmp_path):
    """Image folders have no official size: the length the engine resolved is what counts."""
    (tmp_path / "config.toml").write_text(dump_toml({"data": "folder", "epochs": 2.0,
                                                     "batch_size": 4, "iters": 64000}))
    (tmp_path / "run.json").write_text(json.dumps({"total_iters": 6}))
    for last, finished in ((3, False), (6, True)):
        with open(tmp_path / "metrics.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            writer.writerow({"iteration": last, "epoch": last / 3})
        save_file({"w": torch.zeros(1)}, tmp_path / "last.safetensors",
                  metadata={"reslab": json.dumps({"iteration": last})})
        state = run_state(tmp_path, now=time.time() + 3600)
        assert (state.iteration, state.total, state.finished) == (last, 6, finished)


def test_layer_responses_report(degradation_dir, tiny_data, tmp_path):
    runs = sorted((degradation_dir / "runs").iterdir())
    layer_responses.run_layer_responses(runs, out=tmp_path / "lr", images=60,
                                        data_dir=str(tiny_data), device="cpu")
    table = rows(tmp_path / "lr" / "layer_responses.csv")
    means = {}
    for run in {r["run"] for r in table}:
        stds = [float(r["std"]) for r in table if r["run"] == run]
        depth = int(run.split("-")[1])
        assert len(stds) == depth - 1  # the stem and two 3x3 convs per block
        means[run] = statistics.fmean(stds)
    report = (tmp_path / "lr" / "report.md").read_text()
    for run, mean in means.items():
        assert f"| {run} |" in report and f"{mean:.4g}" in report
    weights = {r["run_dir"]: r["weights"] for r in table}  # the file each run was measured with
    assert weights == {str(run): "best.safetensors" if (run / "best.safetensors").exists()
                       else "last.safetensors" for run in runs}
    assert all(f"| {name} |" in report for name in weights.values())
    for depth in (8, 14):
        line = next(s for s in report.splitlines() if s.startswith(f"- At depth {depth} "))
        smaller = means[f"ResNet-{depth}"] < means[f"plain-{depth}"]
        assert ("are smaller than" in line) == smaller
    shrink = next(s for s in report.splitlines() if "with depth" in s)
    assert ("responses shrink" in shrink) == (means["ResNet-14"] < means["ResNet-8"])
    # the CSV's numbers are those of the run's weights on its first 60 test images
    from reslab import load
    from reslab.analysis.responses import response_stds
    from reslab.data import load_arrays

    predictor = load(degradation_dir / "runs" / "resnet14", device="cpu")
    images = load_arrays("fashion-mnist", tiny_data, "test").images[:60]
    expected = response_stds(predictor.model, [predictor.preprocessing(images.float() / 255)])
    measured = {r["layer"]: float(r["std"]) for r in table if r["run"] == "ResNet-14"}
    assert measured == pytest.approx(expected, rel=1e-4)


def test_depth_table_report(tiny_data, tmp_path):
    out = tmp_path / "depth"
    depth_table.run_depth_table(tiny_setup(out, tiny_data, eval_every=4), depths=[8], seeds=2)
    table = rows(out / "depth_table.csv")
    assert [r["run_dir"] for r in table] == ["resnet8-seed0", "resnet8-seed1"]
    errors = [float(r["test_error"]) for r in table]
    assert errors == [last(out / "runs" / r["run_dir"], "test_error") for r in table]
    report = (out / "report.md").read_text()
    cell = f"{100 * statistics.fmean(errors):.2f} ± {100 * statistics.stdev(errors):.2f}"
    assert f"| ResNet-8 | 0.08M | 2 | {cell} | {100 * min(errors):.2f} | – | – |" in report
    # the table's own numbers (mean, std, best) are in a CSV too, as the report says
    (summary,) = rows(out / "depth_table_summary.csv")
    assert float(summary["test_error_mean"]) == pytest.approx(statistics.fmean(errors))
    assert float(summary["test_error_std"]) == pytest.approx(statistics.stdev(errors))
    assert float(summary["test_error_best"]) == min(errors)
    assert (summary["net"], summary["runs"], summary["params"]) == ("ResNet-8", "2",
                                                                    table[0]["params"])
    assert "[depth_table_summary.csv](depth_table_summary.csv)" in report
    assert_monitor_lines(report, [(f"ResNet-8 ({r['run_dir']})", out / "runs" / r["run_dir"])
                                  for r in table])


def assert_monitor_lines(report: str, runs) -> None:
    """The report's training-monitor section has one line per run, in order, on the last
    monitor row of the run's monitor.csv."""
    section = report.split("## Training monitors", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(lines) == len(runs)
    for line, (name, run_dir) in zip(lines, runs):
        last_row = max(int(row["iteration"]) for row in rows(run_dir / "monitor.csv"))
        assert line.startswith(f"- {name} at iteration {last_row} (lr ")


def test_depth_table_takes_more_seeds_from_another_first_seed(tiny_data, tmp_path):
    """--seed is not part of the shared recipe: another first seed adds sub-runs beside the
    finished ones (named by seed), and the report shows the seeds asked for."""
    out = tmp_path / "depth"
    depth_table.run_depth_table(tiny_setup(out, tiny_data, monitor=0, eval_every=4), depths=[8])
    weights = out / "runs" / "resnet8-seed0" / "last.safetensors"
    before = weights.stat().st_mtime_ns
    depth_table.run_depth_table(tiny_setup(out, tiny_data, monitor=0, eval_every=4, seed=1),
                                depths=[8], seeds=2)
    assert weights.stat().st_mtime_ns == before
    assert [r["run_dir"] for r in rows(out / "depth_table.csv")] == ["resnet8-seed1",
                                                                      "resnet8-seed2"]
    assert json.loads((out / "experiment.json").read_text())["recipe"]["seed"] == 1
    with pytest.raises(ReslabError, match="holds an experiment run with other settings "
                                          r"\(recipe"):
        depth_table.run_depth_table(tiny_setup(out, tiny_data, monitor=0, eval_every=8, seed=1),
                                    depths=[8])


def test_experiment_folder_takes_more_depths(tiny_data, tmp_path):
    """Adding a depth to a finished table trains only the new net; the recipe may not change."""
    out = tmp_path / "depth"
    setup = tiny_setup(out, tiny_data, monitor=0, eval_every=4)
    depth_table.run_depth_table(setup, depths=[8])
    weights = out / "runs" / "resnet8-seed0" / "last.safetensors"
    before = weights.stat().st_mtime_ns
    depth_table.run_depth_table(setup, depths=[14, 8])
    assert weights.stat().st_mtime_ns == before
    assert [r["run_dir"] for r in rows(out / "depth_table.csv")] == ["resnet8-seed0",
                                                                      "resnet14-seed0"]
    assert json.loads((out / "experiment.json").read_text())["depths"] == [8, 14]
    error = {int(r["depth"]): float(r["test_error"]) for r in rows(out / "depth_table.csv")}
    report = (out / "report.md").read_text()
    falls = sentence(report, "The mean test error")
    assert ("falls at every step" in falls) == (error[14] < error[8])
    assert percents(falls) == pytest.approx([error[8], error[14]], abs=5e-5)
    deepest = sentence(report, "The deepest net (ResNet-14)")
    assert ("is better than" in deepest) == (error[14] < error[8])
    assert percents(deepest) == pytest.approx([error[14], error[8]], abs=5e-5)
    with pytest.raises(ReslabError, match=r"other settings \(recipe;"):
        depth_table.run_depth_table(tiny_setup(out, tiny_data, monitor=0), depths=[8])


def test_depth_table_claims():
    rows_ = [{"depth": 20, "mean": 0.09}, {"depth": 32, "mean": 0.08}, {"depth": 56, "mean": 0.085}]
    falls, deepest = depth_table.claims(rows_)
    assert "does not fall" in falls and "is better than" in deepest
    falls, deepest = depth_table.claims(rows_[:2])
    assert "falls at every step" in falls and "ResNet-32 8.00%" in falls
    falls, deepest = depth_table.claims([{"depth": 20, "mean": 0.08}, {"depth": 56, "mean": 0.09}])
    assert "does not fall" in falls and "is not better than" in deepest
    assert percents(deepest) == pytest.approx([0.09, 0.08])
    assert depth_table.claims(rows_[:1]) == []


def test_shortcuts_report(tiny_data, tmp_path):
    out = tmp_path / "shortcuts"
    shortcuts.run_shortcuts(tiny_setup(out, tiny_data, iters=2), depth=8)
    table = {r["net"]: r for r in rows(out / "shortcuts.csv")}
    assert list(table) == ["plain-8", "ResNet-8 A", "ResNet-8 B", "ResNet-8 C"]
    params = {k: int(v["params"]) for k, v in table.items()}
    assert params["plain-8"] == params["ResNet-8 A"] < params["ResNet-8 B"] < params["ResNet-8 C"]
    errors = {k: float(v["test_error"]) for k, v in table.items()}
    for name, r in table.items():
        assert errors[name] == last(out / "runs" / r["run_dir"], "test_error")
    report = (out / "report.md").read_text()
    assert_monitor_lines(report, [(name, out / "runs" / r["run_dir"]) for name, r in table.items()])
    assert md_table(report, "net") == [
        [name, f"{params[name] / 1e6:.3f}M", pct(r["train_error"]), pct(r["test_error"])]
        for name, r in table.items()]
    line = next(s for s in report.splitlines() if "beats" in s)
    options = {o: errors[f"ResNet-8 {o}"] for o in "ABC"}
    all_better = all(e < errors["plain-8"] for e in options.values())
    assert line.startswith("- Every") == all_better
    best = [o for o in "ABC" if options[o] == min(options.values())]  # ties: all of them
    who = " and ".join(f"ResNet-8 {o}" for o in best).replace(" and ", ", ", len(best) - 2)
    lowest = sentence(report, f"{who} {'has' if len(best) == 1 else 'share'} the lowest test "
                      f"error of the options ({pct(min(options.values()))}%)")
    spread = max(options.values()) - min(options.values())
    assert re.search(r"span (\d+\.\d+) points", lowest)[1] == f"{100 * spread:.2f}"
    small = [s for s in report.splitlines() if s.startswith("- The differences among")]
    if all_better:
        gain = errors["plain-8"] - max(options.values())
        assert ("are smaller than" in small[0]) == (spread < gain)
        assert re.findall(r"(\d+\.\d+) points", small[0]) == [f"{100 * spread:.2f}",
                                                                  f"{100 * gain:.2f}"]
    else:
        assert small == []


def test_shortcuts_claims():
    nets = [net("plain-32", "plain", 32, 0.2, 0.20), net("ResNet-32 A", "resnet", 32, 0.1, 0.10),
            net("ResNet-32 B", "resnet", 32, 0.1, 0.09), net("ResNet-32 C", "resnet", 32, 0.1, 0.11)]
    best, beats, small = shortcuts.claims(nets)
    assert best.startswith("ResNet-32 B") and "2.00 points" in best
    assert beats.startswith("Every") and "are smaller than" in small
    spread_out = [nets[0], net("ResNet-32 A", "resnet", 32, 0.1, 0.19), *nets[2:]]
    assert "are not smaller than" in shortcuts.claims(spread_out)[2]  # 2 > 1 point of gain
    worse = [nets[0], net("ResNet-32 A", "resnet", 32, 0.1, 0.21), *nets[2:]]
    best, beats = shortcuts.claims(worse)
    assert beats.startswith("Not every option beats plain-32 (20.00%)")
    tied = [nets[0], net("ResNet-32 A", "resnet", 32, 0.1, 0.09), *nets[2:]]
    assert shortcuts.claims(tied)[0].startswith(  # not "ResNet-32 A has the lowest"
        "ResNet-32 A and ResNet-32 B share the lowest test error of the options (9.00%); the "
        "options span 2.00 points")
    all_tied = [nets[0], *(net(f"ResNet-32 {o}", "resnet", 32, 0.1, 0.1) for o in "ABC")]
    assert shortcuts.claims(all_tied)[0].startswith(
        "ResNet-32 A, ResNet-32 B and ResNet-32 C share the lowest test error")


def test_layer_responses_figure_keeps_two_runs_of_one_net(tmp_path, monkeypatch):
    drawn = {}

    def record(panels, **kwargs):
        drawn.update(panels)
        return b"png"

    monkeypatch.setattr(layer_responses, "plot_lines", record)
    runs = [layer_responses.Responses(tmp_path / name, "resnet20", True, 20, {"conv1": std})
            for name, std in (("resnet20-seed0", 1.0), ("resnet20-seed1", 2.0))]
    (tmp_path / "resnet20-seed0").mkdir()
    (tmp_path / "resnet20-seed0" / "config.toml").write_text('data = "fashion-mnist"\n')
    (tmp_path / "out").mkdir()
    layer_responses.write_report(tmp_path / "out", runs, images=None)
    assert sorted(drawn["in layer order"]) == ["ResNet-20 (resnet20-seed0)",
                                               "ResNet-20 (resnet20-seed1)"]


def test_layer_response_claims():
    def responses(model, residual, depth, value):
        return layer_responses.Responses(None, model, residual, depth, {"conv1": value})

    sentences = layer_responses.claims([responses("plain20", False, 20, 1.0),
                                        responses("resnet20", True, 20, 0.8),
                                        responses("resnet56", True, 56, 0.9)])
    assert "are smaller than" in sentences[0]
    assert "do not shrink" in sentences[1]
    # a diverged run (NaN responses) decides nothing, whatever its place in the list
    for order in (1, -1):
        runs_ = [responses("plain20", False, 20, 1.0), responses("resnet20", True, 20, 0.8),
                 responses("resnet20", True, 20, float("nan")),
                 responses("resnet56", True, 56, 0.5)][::order]
        broken, smaller, shrink = layer_responses.claims(runs_)
        assert broken == ("ResNet-20 nan: not a finite response std (a diverged net); left out "
                          "of the comparisons below.")
        assert "are smaller than" in smaller and "ResNet-20 0.8 vs" in smaller
        assert "responses shrink with depth: ResNet-20 0.8, ResNet-56 0.5." in shrink


def test_settings_may_change_until_a_sub_run_starts(tmp_path):
    """A first attempt that stopped before training (say, at a bad split name) does not hold
    the folder: the corrected settings replace its experiment.json. Once a sub-run exists,
    other settings are refused."""
    out = tmp_path / "exp"
    first = {"experiment": "depth-table", "data": "fashion-mnist", "recipe": {"iters": 4}}
    runs.claim_folder(out, first)
    fixed = {**first, "recipe": {"iters": 4, "train_split": "train"}}
    runs.claim_folder(out, fixed)
    assert json.loads((out / "experiment.json").read_text()) == fixed
    (out / "runs" / "resnet8-seed0").mkdir(parents=True)
    (out / "runs" / "resnet8-seed0" / "config.toml").write_text("iters = 4\n")
    with pytest.raises(ReslabError, match=r"other settings \(recipe;"):
        runs.claim_folder(out, first)
    assert json.loads((out / "experiment.json").read_text()) == fixed


@pytest.mark.parametrize("depths", [[20, 50], [152], [50]])
def test_depths_that_name_imagenet_nets_are_refused(depths):
    """50 and 152 are 6n+2, but resnet50/plain152 are Table 1's ImageNet nets (bottlenecks, a
    7x7 stem, 23-55M parameters): a sub-run of that name would train one of them as
    'ResNet-50' beside the CIFAR nets. Refused in one line, before anything is trained."""
    with pytest.raises(ReslabError, match=rf"depth {depths[-1]} cannot be used here: "
                       rf"resnet{depths[-1]} and plain{depths[-1]} name the ImageNet nets"):
        runs.check_depths(depths)
    assert runs.check_depths([20, 44, 56, 110]) == [20, 44, 56, 110]
