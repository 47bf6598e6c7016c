#!/usr/bin/env bash
# One step of `make`, shown as one progress line: scripts/step.sh "WHAT" COMMAND [ARG...]
#
# Prints "WHAT … done (12 s)" and keeps the command's output (pip's, mostly) in a log
# that is shown only when the command fails (its last 60 lines, and where the whole log
# is). With V=1 the command's output goes to the terminal as it comes instead.
set -uo pipefail
what=$1
shift
if [[ "${V:-0}" == 1 ]]; then
    echo "$what …"
    exec "$@"
fi
log=$(mktemp "${TMPDIR:-/tmp}/anamnesis-make.XXXXXX.log")
printf '%s … ' "$what"
start=$SECONDS
"$@" >"$log" 2>&1
status=$?
if ((status == 0)); then
    echo "done ($((SECONDS - start)) s)"
    rm -f "$log"
    exit 0
fi
echo "FAILED (exit status $status)"
{
    echo "--- the last 60 lines of its output (all of it in $log; V=1 shows it as it runs):"
    tail -n 60 "$log"
} >&2
exit "$status"
