#!/usr/bin/env bash
# Runs the fuzz targets in turn, each in one process (no -jobs/-workers: the machine is
# shared), SECONDS_PER_TARGET seconds each (default 600), with a log per target in logs/.
# The targets are built once, first, so every run tests the same code. Each target's corpus
# grows in corpus/<target>, seeded from seeds/<target>; a crash lands in artifacts/<target>/
# and ends that target's run.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${SECONDS_PER_TARGET:-600}
targets=${*:-request_body list_query token directory_file export_line envelope}
cargo +nightly fuzz build || exit 1
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs
for target in $targets; do
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "== $target: $(date -u +%FT%TZ), ${seconds}s" | tee "logs/$target.log"
    "$bin/$target" "corpus/$target" "seeds/$target" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" >>"logs/$target.log" 2>&1
    echo "== $target: exit $? at $(date -u +%FT%TZ)" | tee -a "logs/$target.log"
done
