#!/bin/sh
# Renders the HTML report of a real traced run in headless Chromium and
# takes a screenshot to look at. Not part of CI (it needs Chromium); run by
# hand from the repository root:
#
#   apt-get install -y chromium
#   sh scripts/html_report_check.sh
#
# It runs the ignored test `real_run_report` (tests/html_report.rs, with the
# flamegraph feature), which allocates in steps under a timeline with marks
# and function brackets, takes snapshots and writes target/report.html; then
# it checks the file names no external URL, renders it with Chromium
# (--dump-dom, to see that the sections are in the DOM Chromium built) and
# writes target/report.png. Environment: CHROMIUM (default: chromium).
set -eu
CHROMIUM=${CHROMIUM:-chromium}
OUT=${TRACEALLOC_REPORT_OUT:-$PWD/target/report.html}
PNG=${OUT%.html}.png
export TRACEALLOC_REPORT_OUT="$OUT"

cargo test --release --features flamegraph --test html_report -- \
    --ignored real_run_report --nocapture 2>&1 | grep -E '^(report|timeline):|test result'

if grep -Eq 'https?://' "$OUT"; then
    echo "FAIL: $OUT names an external URL:"; grep -Eo '.{30}https?://.{30}' "$OUT" | head; exit 1
fi
echo "no external URL in $OUT ($(wc -c < "$OUT") bytes)"

DOM=$(mktemp)
"$CHROMIUM" --headless --disable-gpu --no-sandbox --dump-dom "file://$OUT" 2>/dev/null > "$DOM"
echo "Chromium's DOM: $(grep -o '<section' "$DOM" | wc -l) sections, $(grep -o '<svg' "$DOM" | wc -l) svg, $(grep -o '<table' "$DOM" | wc -l) tables, $(grep -o '<script' "$DOM" | wc -l) scripts"
rm -f "$DOM"

"$CHROMIUM" --headless --disable-gpu --no-sandbox --hide-scrollbars \
    --screenshot="$PNG" --window-size=1280,2400 "file://$OUT" 2>/dev/null
echo "screenshot: $PNG ($(wc -c < "$PNG") bytes)"
