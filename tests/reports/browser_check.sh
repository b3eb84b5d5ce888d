#!/usr/bin/env bash
# The report in a real browser (ctest reports.browser_renders_the_report):
#   browser_check.sh DSV4 BASELINE OUTDIR
# Builds result files with the dsv4 binary (the claims tables, a benchmark file and a verdict
# from the committed perf baseline, short recall and degradation runs on a probe, the op
# status list), writes the report, and
# renders OUTDIR/report/index.html with Debian's chromium, headless, offline (background
# networking, sync, component updates off). Fails when the page logs anything to the
# console, when the screenshot is missing or blank (a blank page of this size compresses to a
# few KB; a rendered report is hundreds), or when the rendered DOM lacks a section or its
# charts. The screenshot stays in OUTDIR/report.png as the test's artifact.
# Exit 77 (ctest: skipped, with the reason) when chromium is not installed: scripts/setup
# installs it.
set -euo pipefail
dsv4=$1 baseline=$2 out=$3
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "browser_check: chromium is not installed (scripts/setup installs it): skipped"
  exit 77
fi
rm -rf "$out"
mkdir -p "$out/in/claims" "$out/in/bench"
"$dsv4" kv --table --json > "$out/in/claims/kv.json"
"$dsv4" flops --table --json > "$out/in/claims/flops.json"
cp "$baseline" "$out/in/bench/bench_derived.json"
"$dsv4" bench compare --metric cpu_share --json "$baseline" "$baseline" > "$out/in/compare.json" || true
"$dsv4" init --probe recall --retrieval csa --out "$out/probe" >/dev/null
"$dsv4" eval --suite recall --model "$out/probe" --lengths 1k --samples 1 --tasks niah_multikey \
  --out "$out/in/eval" --progress none >/dev/null
"$dsv4" eval --suite degradation --model "$out/probe" --lengths 1k --depths 0.5 --samples 1 \
  --out "$out/in/degradation" --progress none >/dev/null
"$dsv4" op --list --json > "$out/in/ops.json"
"$dsv4" report "$out/in" --out "$out/report"

flags=(--headless=new --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
       --disable-sync --disable-default-apps --no-first-run --no-default-browser-check
       --enable-logging=stderr --v=0 --user-data-dir="$out/profile")
page="file://$(cd "$out/report" && pwd)/index.html"
timeout 120 "$browser" "${flags[@]}" --window-size=1280,3000 --screenshot="$out/report.png" "$page" \
  >"$out/chromium.log" 2>&1 || { cat "$out/chromium.log"; echo "browser_check: chromium failed" >&2; exit 1; }
timeout 120 "$browser" "${flags[@]}" --dump-dom "$page" >"$out/dom.html" 2>"$out/chromium-dom.log" || {
  cat "$out/chromium-dom.log"; echo "browser_check: chromium --dump-dom failed" >&2; exit 1; }

fail=0
if grep -h "CONSOLE" "$out/chromium.log" "$out/chromium-dom.log"; then
  echo "browser_check: the page logged to the console (above)" >&2
  fail=1
fi
size=$(stat -c %s "$out/report.png" 2>/dev/null || echo 0)
if [ "$size" -lt 50000 ]; then
  echo "browser_check: screenshot $out/report.png is missing or blank ($size bytes)" >&2
  fail=1
fi
for id in reproduction kernels recall degradation regression provenance; do
  grep -q "<section id=\"$id\">" "$out/dom.html" || { echo "browser_check: section '$id' not in the rendered page" >&2; fail=1; }
done
grep -q "available (CPU reference)" "$out/dom.html" || { echo "browser_check: the op status table is not in the rendered page" >&2; fail=1; }
svgs=$(grep -o "<svg" "$out/dom.html" | wc -l)
if [ "$svgs" -lt 6 ]; then
  echo "browser_check: only $svgs charts in the rendered page" >&2
  fail=1
fi
[ "$fail" -eq 0 ] || exit 1
echo "browser_check: rendered with $($browser --version 2>/dev/null | head -1): $svgs charts, no console output, screenshot $out/report.png ($size bytes)"
