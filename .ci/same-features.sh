#!/usr/bin/env bash
# Fails when `cargo build --release` (the binary) and `cargo test --release
# --workspace` (with every dev-dependency) would build a shared crate with
# different features, which makes the README's two commands compile Burn,
# CubeCL and wgpu twice. crates/workspace-hack (cargo hakari) aligns them;
# after changing dependencies: `cargo hakari generate && cargo hakari manage-deps`.
set -euo pipefail
cd "$(dirname "$0")/.."
features() {
    cargo tree "$@" --prefix none --format '{p} [{f}]' --target all 2>/dev/null \
        | sed -e 's/ (\*)$//' -e 's/ (proc-macro)//' | grep -v ' (/' | sort -u
}
bin=$(mktemp); ws=$(mktemp)
trap 'rm -f "$bin" "$ws"' EXIT
features -p mnist-monitor -e normal,build >"$bin"
features --workspace -e normal,build,dev >"$ws"
# A crate only the tests use is fine; a crate both use must match.
shared=$(comm -12 <(cut -d' ' -f1,2 "$bin" | sort -u) <(cut -d' ' -f1,2 "$ws" | sort -u))
diff <(grep -F -f <(echo "$shared" | sed 's/$/ [/') "$bin") \
     <(grep -F -f <(echo "$shared" | sed 's/$/ [/') "$ws") && echo "feature sets of the shared crates are identical"
