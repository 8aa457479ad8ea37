#!/usr/bin/env bash
# The GPU measurements of issues #6 and #7, prepared so that a session lent a GPU spends its
# device minutes measuring. A task is lent 15 minutes of device time in all (the machine's start,
# about 1-2 minutes, included) and 10 minutes a command: enough for ONE call of `all`, with a few
# minutes left for a short second call. No session has had a GPU yet.
#
# Here, once (the data set travels as an ignored folder named in `carry`):
#     mkdir -p data && cp -r /usr/share/datasets/fashion-mnist data/
# Then one device call:
#     run(command="benchmarks/gpu_session.sh all", carry=["data/fashion-mnist"], timeout_s=600)
#
# `all` runs these parts one after the other, each under its own time limit (seconds), so that a
# part that is slower than planned cannot eat the next one's time (9 minutes in all):
#   1. tests      90  the fast paths on CUDA against the plain step (fused/foreach SGD,
#                     channels-last, bf16, the traced model, CUDA graphs, no host sync) and BN
#                     folding; their CPU runs are deselected (CI has them); -v names each result
#   2. compile   100  the two torch.compile (inductor) tests on CUDA: a cold compile takes long
#   3. resnet20  240  the paper's full CIFAR recipe (64k iterations of batch 128, lr 0.1 /10 at
#                     32k and 48k) on Fashion-MNIST's 55k/5k split with bf16 autocast and CUDA
#                     graphs, timed end to end: #7's target is < 3 minutes
#   4. bench     110  `reslab bench --device cuda --repeats 5 --models resnet50 resnet20`:
#                     ResNet-50 training (#7: >= 2x torchvision eager fp32) first, then inference,
#                     ResNet-20 training and the data path; each case's numbers are printed as
#                     soon as it is measured, so a part cut short still returns them
# A part that runs out of time is stopped (training with a checkpoint) and reported as such; the
# log says how far it got. Sessions with more device time can run the parts alone, and other nets:
#     benchmarks/gpu_session.sh tests | bench | resnetN | wait resnetN
# `resnetN` (any CIFAR depth; resnet56: #6's 95% goal, resnet110: #7's < 12 minutes) trains in
# its own process session, so it may outlast the call; `wait resnetN` collects it (make that call
# at once: a machine left idle goes back within a minute, and the run with it).
#
# What comes back in $OUT (8 files at most): summary.txt (versions, each part's status and
# seconds), tests.log, compile.log, <net>.log, <net>_run.tgz (the run's metrics.csv, run.json, config.toml and
# wall_s.txt), bench_gpu.txt and bench_gpu.json. Record the numbers in docs/PERFORMANCE.md and
# docs/RESULTS.md with the command.
#
# Rehearsal on the CPU (what tests/test_benchmark_scripts.py runs, in seconds): RESLAB_DEVICE=cpu,
# RESLAB_TRAIN_ARGS="--iters 4 --no-amp --no-cuda-graphs", RESLAB_TESTS and RESLAB_COMPILE_TESTS
# (pytest paths or node ids) and RESLAB_BENCH_ARGS="--quick" shrink the parts;
# RESLAB_LIMITS="TESTS COMPILE RESNET20 BENCH" (seconds) changes the time limits, RESLAB_RUNS_DIR
# where the run folders go (/tmp/reslab-gpu-runs).
set -euo pipefail

step=${1:?"usage: $0 all|tests|bench|resnetN|wait resnetN"}
out=${OUT:-gpu-out}
data=${RESLAB_FMNIST_DIR:-data/fashion-mnist}
runs=${RESLAB_RUNS_DIR:-/tmp/reslab-gpu-runs}
device=${RESLAB_DEVICE:-cuda}
extra=${RESLAB_TRAIN_ARGS:-}  # e.g. "--iters 100" for a rehearsal (later options win)
bench_extra=${RESLAB_BENCH_ARGS:-}
tests=${RESLAB_TESTS:-tests/train/test_fast_paths.py tests/models/test_fuse.py}
fast_paths=tests/train/test_fast_paths.py
compile_tests=${RESLAB_COMPILE_TESTS:-$fast_paths::test_compile_step_matches[cuda] $fast_paths::test_compiled_model_matches[cuda-inductor]}
read -r limit_tests limit_compile limit_train limit_bench <<< "${RESLAB_LIMITS:-90 100 240 110}"
mkdir -p "$out" "$runs"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

versions() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
        || echo "no nvidia-smi"
    "$py" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision",
torchvision.__version__, "cuda", torch.version.cuda)'
}

# `part NAME SECONDS LOG COMMAND...`: one part of `all`. COMMAND runs under a time limit
# (SIGTERM, then SIGKILL 20 s later), its output to $out/LOG; a line "NAME: status S, T s"
# (S 124: the time limit; 137 after the limit: killed, SIGTERM did not stop it) goes to
# summary.txt, and T to $part_seconds.
part() {
    local name=$1 seconds=$2 log=$3 start status=0
    shift 3
    echo "== $name (limit $seconds s)"
    start=$(date +%s%N)
    timeout -k 20 "$seconds" "$@" > "$out/$log" 2>&1 || status=$?
    part_seconds=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')
    if [ "$status" = 124 ]; then status="124 (time limit)"; fi
    if [ "$status" = 137 ] && awk -v t="$part_seconds" -v s="$seconds" 'BEGIN { exit !(t >= s) }'
    then
        status="137 (time limit; SIGTERM did not stop it, killed 20 s later)"
    fi
    echo "$name: status $status, $part_seconds s" | tee -a "$out/summary.txt"
    tail -n 4 "$out/$log"
}

# The commands of the parts, as arrays.
read -ra test_paths <<< "$tests"
tests_command=("$py" -m pytest -v -m "not slow" -k "not cpu" "${test_paths[@]}")
read -ra compile_ids <<< "$compile_tests"
compile_command=("$py" -m pytest -v -m "slow or not slow" "${compile_ids[@]}")
read -ra bench_options <<< "$bench_extra"
bench_command=("$py" -m reslab bench --device "$device" --repeats 5 --models resnet50 resnet20
               --save "$out/bench_gpu.json" "${bench_options[@]}")

# The paper's CIFAR recipe on Fashion-MNIST's 55k/5k split, with the GPU fast paths:
# channels-last (the CUDA default), bf16 autocast and CUDA graphs. Sets $train_command.
set_train_command() {
    local options
    read -ra options <<< "$extra"
    train_command=("$py" -m reslab train --model "$1" --data fashion-mnist --data-dir "$data"
                   --device "$device" --amp --cuda-graphs --no-progress --out "$runs/$1"
                   "${options[@]}")
}

# The run folder's small files and the wall time, as one file in $out.
pack_run() {
    local net=$1 files=()
    [ -d "$runs/$net" ] || return 0
    cp "$runs/$net.wall_s" "$runs/$net/wall_s.txt" 2>/dev/null || true
    for f in metrics.csv run.json config.toml wall_s.txt; do
        if [ -f "$runs/$net/$f" ]; then files+=("$f"); fi
    done
    tar -czf "$out/${net}_run.tgz" -C "$runs/$net" "${files[@]}"
}

# `train NET`: start NET's run detached (setsid), so that it survives the call's end.
train() {
    local net=$1
    if running "$net"; then
        echo "$net is already training on this machine; collect it with: $0 wait $net" >&2
        exit 1
    fi
    rm -rf "${runs:?}/$net" "$runs/$net".{log,rc,wall_s,pid}  # collect nothing of an earlier run
    set_train_command "$net"
    setsid bash -c "
        echo \$\$ > $runs/$net.pid
        start=\$(date +%s%N)
        $(printf '%q ' "${train_command[@]}") > $runs/$net.log 2>&1
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
    local net=$1 waited=0
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
    pack_run "$net"
}

case $step in
    all)
        versions > "$out/summary.txt"
        cat "$out/summary.txt"
        part tests "$limit_tests" tests.log "${tests_command[@]}"
        part compile "$limit_compile" compile.log "${compile_command[@]}"
        rm -rf "${runs:?}/resnet20"
        set_train_command resnet20
        part resnet20 "$limit_train" resnet20.log "${train_command[@]}"
        echo "$part_seconds" > "$runs/resnet20.wall_s"
        pack_run resnet20
        part bench "$limit_bench" bench_gpu.txt "${bench_command[@]}"
        ;;
    tests)  # both pytest runs, whatever the first gives; the status of the last that failed
        versions | tee "$out/summary.txt"
        failed=0
        for name in tests compile; do
            status=0
            command_name=${name}_command[@]
            "${!command_name}" 2>&1 | tee "$out/$name.log" || status=$?
            echo "$name: status $status" | tee -a "$out/summary.txt"
            if [ "$status" != 0 ]; then failed=$status; fi
        done
        exit "$failed"
        ;;
    bench)
        versions | tee "$out/summary.txt"
        "${bench_command[@]}" 2>&1 | tee "$out/bench_gpu.txt"
        ;;
    resnet[0-9]*)
        versions | tee "$out/summary.txt"
        train "$step"
        ;;
    wait)
        collect "${2:?"usage: $0 wait resnetN"}"
        ;;
    *)
        echo "unknown step $step; choose all, tests, bench, resnetN or wait resnetN" >&2
        exit 2
        ;;
esac
