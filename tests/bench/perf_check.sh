#!/usr/bin/env bash
# The perf ctest cases (tests/CMakeLists.txt, label perf).
#   perf_check.sh run DSV4 BASELINE DIR
#       dsv4 bench --quick --repetitions 9 --out DIR, then
#       dsv4 bench compare BASELINE DIR/bench_derived.json. A benchmark flagged slower is
#       measured again (dsv4 bench --filter, 9 more repetitions, with the ceilings); the
#       check fails only when a benchmark is slower in both runs (a confirmed regression),
#       or on bad input.
#   perf_check.sh doctored DSV4 BASELINE DIR DOCTOR
#       the baseline with every roofline share (and speedup) x 3, against DIR's run: the
#       run looks 3x slower, the comparator must exit 1, and every benchmark the run case
#       found unchanged must now be flagged slower.
#
# Metric: the CPU-time share (--metric cpu_share, default 25 % threshold) when both files have
# roofline_share_cpu: it does not move when another process shares the cores (a concurrent
# -j2 build moved wall-clock shares by up to 2.5x here, CPU-time shares by at most 14 %).
# Otherwise the wall-clock share with a 50 % threshold: between quiet runs on this shared
# 2-core machine single ops moved by up to 1.4x; the check is for several-fold slowdowns.
set -euo pipefail
mode=$1 dsv4=$2 baseline=$3 dir=$4

metric_args() {
  if grep -q '"roofline_share_cpu"' "$baseline" && grep -q '"roofline_share_cpu"' "$1"; then
    echo "--metric cpu_share"
  else
    echo "--metric share --threshold 0.5"
  fi
}

# Names of the table rows of FILE whose outcome starts with WORD (names have no spaces).
rows() { awk -v w="$2" '$0 ~ "  " w "( \\(|$)" { print $1 }' "$1"; }

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

case "$mode" in
  run)
    rm -rf "$dir"
    start=$(date +%s%N)
    "$dsv4" bench --quick --repetitions 9 --out "$dir" >"$dir.bench.log" 2>&1 || {
      cat "$dir.bench.log"; echo "perf_check: dsv4 bench failed" >&2; exit 1; }
    echo "perf_check: dsv4 bench --quick --repetitions 9: $(ms "$start") ms"
    args=$(metric_args "$dir/bench_derived.json")
    echo "perf_check: dsv4 bench compare $args"
    set +e
    # shellcheck disable=SC2086
    "$dsv4" bench compare $args "$baseline" "$dir/bench_derived.json" >"$dir/compare.txt"
    rc=$?
    set -e
    cat "$dir/compare.txt"
    [ "$rc" -eq 1 ] || exit "$rc"
    # Confirmation: measure the flagged benchmarks again.
    mapfile -t slow < <(rows "$dir/compare.txt" slower)
    re=$(printf '%s\n' "${slow[@]}" | sed 's/[].[()*+?^$|{}\\]/\\&/g' | paste -sd'|')
    echo "perf_check: flagged ${#slow[@]}: measuring them again"
    start=$(date +%s%N)
    "$dsv4" bench --quick --filter "^($re)\$" --repetitions 9 --out "$dir/confirm" >"$dir.confirm.log" 2>&1 || {
      cat "$dir.confirm.log"; echo "perf_check: dsv4 bench (confirmation) failed" >&2; exit 1; }
    set +e
    # shellcheck disable=SC2086
    "$dsv4" bench compare $args "$baseline" "$dir/confirm/bench_derived.json" >"$dir/confirm.txt"
    rc=$?
    set -e
    grep -v "only in the baseline" "$dir/confirm.txt"
    echo "perf_check: confirmation run: $(ms "$start") ms"
    [ "$rc" -ne 2 ] || exit 2
    mapfile -t again < <(rows "$dir/confirm.txt" slower)
    confirmed=()
    for n in "${slow[@]}"; do
      for m in "${again[@]}"; do [ "$n" = "$m" ] && confirmed+=("$n"); done
    done
    if [ ${#confirmed[@]} -gt 0 ]; then
      echo "perf_check: CONFIRMED REGRESSION (slower in both runs): ${confirmed[*]}" >&2
      exit 1
    fi
    echo "perf_check: not confirmed by the second run (noise): no regression"
    ;;
  doctored)
    doctor=$5
    [ -f "$dir/bench_derived.json" ] || { echo "perf_check: no run in $dir" >&2; exit 1; }
    "$doctor" "$baseline" "$dir/doctored-baseline.json" 3
    args=$(metric_args "$dir/bench_derived.json")
    echo "perf_check: dsv4 bench compare $args (doctored baseline)"
    set +e
    # shellcheck disable=SC2086
    "$dsv4" bench compare $args "$dir/doctored-baseline.json" "$dir/bench_derived.json" >"$dir/doctored.txt"
    rc=$?
    set -e
    cat "$dir/doctored.txt"
    if [ "$rc" -ne 1 ]; then
      echo "perf_check: the comparator did not flag a 3x slowdown (exit $rc, expected 1)" >&2
      exit 1
    fi
    # Every benchmark the run case judged unchanged is slower against the doctored baseline.
    missed=()
    if [ -f "$dir/compare.txt" ]; then
      mapfile -t same < <(rows "$dir/compare.txt" "no clear difference")
      mapfile -t slow < <(rows "$dir/doctored.txt" slower)
      for n in "${same[@]}"; do
        # No pipe into grep -q here: under pipefail its early exit can SIGPIPE the writer and
        # make a present name look missing.
        found=0
        for m in "${slow[@]}"; do [ "$n" = "$m" ] && found=1; done
        [ "$found" -eq 1 ] || missed+=("$n")
      done
    fi
    if [ ${#missed[@]} -gt 0 ]; then
      echo "perf_check: unchanged benchmarks not flagged 3x slower: ${missed[*]}" >&2
      exit 1
    fi
    echo "perf_check: 3x slowdown flagged (exit 1); every unchanged benchmark is among the slower ones"
    ;;
  *)
    echo "usage: perf_check.sh run|doctored ..." >&2
    exit 2
    ;;
esac
