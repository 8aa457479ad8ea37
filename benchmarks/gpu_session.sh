#!/usr/bin/env bash
# The GPU measurements of issues #6 and #7, in steps that each fit one call of the device tool
# (10 minutes a command, 30 minutes of device time a session). No session has had a GPU yet;
# this script is the plan for the first one that does, so that its minutes go to measuring.
#
# Here, once (the data set travels as an ignored folder named in `carry`):
#     mkdir -p data && cp -r /usr/share/datasets/fashion-mnist data/
# Then one device call per step, in this order (each about as long as noted):
#     run(command="benchmarks/gpu_session.sh tests",     carry=["data/fashion-mnist"])  # ~2 min
#     run(command="benchmarks/gpu_session.sh bench",     carry=["data/fashion-mnist"])  # ~5 min
#     run(command="benchmarks/gpu_session.sh resnet20",  carry=["data/fashion-mnist"])  # target < 3 min
#     run(command="benchmarks/gpu_session.sh resnet110", carry=["data/fashion-mnist"])  # target < 12 min
# `resnet110` may outlast one call: it then runs on in its own process session and
# `benchmarks/gpu_session.sh wait resnet110` collects it. Make that call at once: a machine
# left idle goes back within a minute, and the run with it.
# Any CIFAR depth works as a step name (resnet56: the #6 goal of 95% test accuracy).
#
# What comes back in $OUT (at most 8 files a call): the step's log, the run's metrics.csv,
# run.json and config.toml, and wall_s.txt with the end-to-end seconds. Record the numbers in
# docs/PERFORMANCE.md and docs/RESULTS.md with the command.
set -euo pipefail

step=${1:?"usage: $0 tests|bench|resnetN|wait resnetN"}
out=${OUT:-gpu-out}
data=${RESLAB_FMNIST_DIR:-data/fashion-mnist}
runs=/tmp/reslab-gpu-runs
device=${RESLAB_DEVICE:-cuda}
extra=${RESLAB_TRAIN_ARGS:-}  # e.g. "--iters 100" for a rehearsal (later options win)
mkdir -p "$out" "$runs"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

versions() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$py" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision",
torchvision.__version__, "cuda", torch.version.cuda)'
}

# The paper's CIFAR recipe (64k iterations of batch 128, lr 0.1 /10 at 32k and 48k) on
# Fashion-MNIST's 55k/5k split, with the GPU fast paths: channels-last (the CUDA default),
# bf16 autocast and CUDA graphs. Runs detached so that it survives the call's end.
train() {
    local net=$1 folder=$runs/$1
    if running "$net"; then
        echo "$net is already training on this machine; collect it with: $0 wait $net" >&2
        exit 1
    fi
    rm -rf "$folder" "$runs/$net".{log,rc,wall_s,pid}  # nothing of an earlier run is collected
    setsid bash -c "
        echo \$\$ > $runs/$net.pid
        start=\$(date +%s%N)
        $py -m reslab train --model $net --data fashion-mnist --data-dir $data --device $device \
            --amp --cuda-graphs --no-progress --out $folder $extra > $runs/$net.log 2>&1
        echo \$? > $runs/$net.rc
        awk -v ns=\$((\$(date +%s%N) - start)) 'BEGIN { printf \"%.1f\\n\", ns / 1e9 }' > $runs/$net.wall_s.part
        mv $runs/$net.wall_s.part $runs/$net.wall_s
    " < /dev/null > /dev/null 2>&1 &
    for _ in $(seq 100); do [ -f "$runs/$net.pid" ] && break; sleep 0.1; done
    collect "$net"
}

# Whether the detached run of $1 is still going.
running() {
    [ -f "$runs/$1.pid" ] && kill -0 "$(cat "$runs/$1.pid")" 2>/dev/null
}

# Wait (up to 9 minutes of this call) for a detached run, then copy its results to $out.
collect() {
    local net=$1 folder=$runs/$1 waited=0
    if [ ! -f "$runs/$net.pid" ]; then
        echo "no run of $net on this machine (a machine left idle is given back within a" \
             "minute, and its runs with it); start one with: $0 $net" >&2
        exit 1
    fi
    while running "$net" && [ ! -f "$runs/$net.wall_s" ] && [ "$waited" -lt 540 ]; do
        sleep 5; waited=$((waited + 5))
    done
    cp "$runs/$net.log" "$out/$net.log" 2>/dev/null || true
    if [ ! -f "$runs/$net.wall_s" ]; then
        if running "$net"; then
            echo "$net still training after this call; run at once: $0 wait $net"
        else
            echo "$net stopped without finishing; see $net.log"
        fi
        tail -n 3 "$runs/$net.log" 2>/dev/null || true
        return 0
    fi
    echo "$net: exit status $(cat "$runs/$net.rc"), end to end $(cat "$runs/$net.wall_s") s"
    tail -n 5 "$runs/$net.log"
    cp "$runs/$net.wall_s" "$out/${net}_wall_s.txt"
    for f in metrics.csv run.json config.toml; do
        if [ -f "$folder/$f" ]; then cp "$folder/$f" "$out/${net}_$f"; fi
    done
    return 0
}

case $step in
    tests)
        versions | tee "$out/versions.txt"
        # every test, the slow and the CUDA-only ones included, of the fast paths and the bench
        "$py" -m pytest -q -m "slow or not slow" tests/train/test_fast_paths.py tests/test_bench.py \
            tests/models 2>&1 | tee "$out/tests.log"
        ;;
    bench)
        versions | tee "$out/versions.txt"
        "$py" -m reslab bench --device cuda --compile --save "$out/bench_gpu.json" 2>&1 \
            | tee "$out/bench_gpu.txt"
        ;;
    resnet[0-9]*)
        versions | tee "$out/versions.txt"
        train "$step"
        ;;
    wait)
        collect "${2:?"usage: $0 wait resnetN"}"
        ;;
    *)
        echo "unknown step $step; choose tests, bench, resnetN or wait resnetN" >&2
        exit 2
        ;;
esac
