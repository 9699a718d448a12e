#!/usr/bin/env bash
# The body of `make test` (the Makefile runs `make setup` first; CI runs .ci/run).
#
#   1. unit tests      pytest -q tests
#   2. nbval           the source notebooks notebooks/*.ipynb are re-executed at their
#                      defaults and every output is compared with the stored one (sanitised
#                      by tests/nbval_sanitize.cfg); the assert cells are the real test
#   3. book            scripts/build_book.py --scale $METAGRAD_TEST_SCALE (default: smoke):
#                      papermill + strict Jupyter Book build into _build/smoke/ (never into
#                      book/ or _build/html: the published book is left as it is)
#   4. browser check   scripts/check_book.py: headless Chromium opens every page (MathJax,
#                      images, no request off 127.0.0.1), screenshots under _build/smoke/
#
# Stages 2-4 run with NO data (METAGRAD_DATA = an empty folder, whatever is beside the clone):
# the smoke scale must never depend on the data root, so CI fails whenever a newcomer would.
# Stage 1 may read real data (../shared/data, or $METAGRAD_DATA); its real-data tests skip with
# a reason when the data is absent.
#
# Every stage runs even if an earlier one failed (except 4, which needs 3); the last line
# is a summary of the stages. Environment:
#   PY                    interpreter (default: .venv/bin/python, else python3)
#   METAGRAD_TEST_SCALE   scale of the book build (default: smoke, the scale nbval checks;
#                         `book` rebuilds the published scale into the same _build/html)
#   METAGRAD_DATA         data root of the unit tests (default: ../shared/data when it exists)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
SCALE=${METAGRAD_TEST_SCALE:-smoke}

# With MPLBACKEND=Agg the kernels would store no figure (nbval would then fail on them).
unset MPLBACKEND
if [ -z "${METAGRAD_DATA:-}" ] && [ -d ../shared/data ]; then
    METAGRAD_DATA=$(cd ../shared/data && pwd)
    export METAGRAD_DATA
fi
export PYDEVD_DISABLE_FILE_VALIDATION=1
# small problems run faster and steadier on one thread per process
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# the no-data root of stages 2-4
NODATA=$(mktemp -d "${TMPDIR:-/tmp}/metagrad-nodata.XXXXXX")
trap 'rm -rf "$NODATA"' EXIT

STAGES=()
passed=0
failed=0
skipped=0
SECONDS_TOTAL_START=$(date +%s)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# record NAME STATUS START
record() {
    local t
    t=$(elapsed "$3")
    STAGES+=("$(printf '%-14s %-8s %7s s' "$1" "$2" "$t")")
    case $2 in
        passed) passed=$((passed + 1)) ;;
        failed) failed=$((failed + 1)) ;;
        skipped) skipped=$((skipped + 1)) ;;
    esac
    echo "=== $1: $2 in $t s"
}

banner() { echo; echo "=== $1"; }

# Debian's headless browser and its driver, for the browser check only.
ensure_chromium() {
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
        return 0
    fi
    echo "installing Debian's chromium and chromium-driver (apt-get)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium chromium-driver >/dev/null || return 1
}

# ---------------------------------------------------------------- 1. unit tests
banner "unit tests: pytest -q tests"
t0=$(now)
rc=0
"$PY" -m pytest -q tests || rc=$?
if [ "$rc" -eq 0 ]; then
    record "unit tests" passed "$t0"
elif [ "$rc" -eq 5 ] && ! find tests -name 'test_*.py' -o -name '*_test.py' | grep -q .; then
    echo "no unit tests yet (tests/ has no test_*.py file)"
    record "unit tests" skipped "$t0"
else
    [ "$rc" -eq 5 ] && echo "pytest collected no test, but tests/ has test files"
    record "unit tests" failed "$t0"
fi

# ---------------------------------------------------------------- 2. nbval
banner "nbval: notebooks/*.ipynb at their defaults, outputs compared"
t0=$(now)
shopt -s nullglob
NOTEBOOKS=(notebooks/*.ipynb)
shopt -u nullglob
if [ ${#NOTEBOOKS[@]} -eq 0 ]; then
    echo "no notebooks under notebooks/"
    record "nbval" skipped "$t0"
else
    # nbval starts each kernel in the notebook's folder; papermill (scripts/build_book.py)
    # runs them at the repository root, where their relative paths (results/...) point.
    # This plugin makes nbval do the same (nbval==0.11.0 is pinned).
    PLUGIN_DIR="$ROOT/_build/pytest-plugins"
    mkdir -p "$PLUGIN_DIR"
    cat > "$PLUGIN_DIR/nbval_rootcwd.py" <<'EOF'
"""Run nbval's kernels with the repository root as their working directory."""
import os

import nbval.plugin

_RunningKernel = nbval.plugin.RunningKernel


class RootCwdKernel(_RunningKernel):
    def __init__(self, kernel_name, cwd=None, *args, **kwargs):
        super().__init__(kernel_name, os.environ["NBVAL_CWD"], *args, **kwargs)


nbval.plugin.RunningKernel = RootCwdKernel
EOF
    rc=0
    METAGRAD_DATA="$NODATA" NBVAL_CWD="$ROOT" PYTHONPATH="$PLUGIN_DIR${PYTHONPATH:+:$PYTHONPATH}" \
        "$PY" -m pytest -q -p nbval_rootcwd -p no:cacheprovider \
        --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
        "${NOTEBOOKS[@]}" || rc=$?
    if [ "$rc" -eq 0 ]; then record "nbval" passed "$t0"; else record "nbval" failed "$t0"; fi
fi

# ---------------------------------------------------------------- 3. book
banner "book: scripts/build_book.py --scale $SCALE (strict, no data)"
t0=$(now)
book_ok=0
if [ "$SCALE" = book ]; then HTML_OUT=_build/html; else HTML_OUT=_build/$SCALE/_build/html; fi
if METAGRAD_DATA="$NODATA" "$PY" scripts/build_book.py --scale "$SCALE"; then
    record "book ($SCALE)" passed "$t0"
    book_ok=1
else
    record "book ($SCALE)" failed "$t0"
fi

# ---------------------------------------------------------------- 4. browser check
banner "browser check: scripts/check_book.py"
t0=$(now)
if [ "$book_ok" -ne 1 ]; then
    echo "skipped: the book did not build"
    record "browser check" failed "$t0"
else
    if ! ensure_chromium; then
        echo "could not install chromium / chromium-driver with apt-get"
        record "browser check" failed "$t0"
    elif "$PY" scripts/check_book.py --html-dir "$HTML_OUT" \
            --screenshot "$(dirname "$HTML_OUT")/screenshot.png"; then
        record "browser check" passed "$t0"
    else
        record "browser check" failed "$t0"
    fi
fi

# ---------------------------------------------------------------- summary
total=$(( $(date +%s) - SECONDS_TOTAL_START ))
echo
echo "=== summary ($total s)"
for line in "${STAGES[@]}"; do echo "  $line"; done
if [ "$total" -gt 780 ] && [ "$SCALE" != smoke ]; then
    echo "  note: over the ~15-minute budget of make test (with setup); METAGRAD_TEST_SCALE=smoke"
    echo "        builds the book at the smoke scale instead (into _build/smoke/)"
fi
summary="stages: $passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
