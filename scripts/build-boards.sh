#!/usr/bin/env bash
# Builds the board images in release (size-optimised) profile. Each board is its own
# cargo workspace under firmware/boards/ with its own target, linker settings and lock
# file. Any failure stops the script with a non-zero exit.
#
#   scripts/build-boards.sh            # every board
#   scripts/build-boards.sh esp32c3-aq # just one
#
# Board configuration comes from the environment at build time (see each board's
# build.rs, e.g. AQ_WIFI_SSID, AQ_BROKER_HOST, AQ_DEVICE_ID for esp32c3-aq).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

boards=("$@")
if [ "${#boards[@]}" -eq 0 ]; then
    boards=(cortex-m-aq esp32c3-aq)
fi

for board in "${boards[@]}"; do
    dir="firmware/boards/$board"
    [ -f "$dir/Cargo.toml" ] || { echo "error: no board at $dir" >&2; exit 1; }
    target=$(sed -n 's/^target = "\(.*\)"/\1/p' "$dir/.cargo/config.toml")
    [ -n "$target" ] || { echo "error: $dir/.cargo/config.toml names no build target" >&2; exit 1; }
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
    echo "== building $board for $target (release)"
    # The committed Cargo.lock pins the version set known to build together; cargo
    # only adds entries when the core gains a dependency, it does not move the pins.
    if ! (cd "$dir" && cargo build --release); then
        echo "error: board $board failed to build" >&2
        exit 1
    fi
    elf="$dir/target/$target/release/$board"
    [ -f "$elf" ] || { echo "error: $board built but $elf is missing" >&2; exit 1; }
    echo "   $elf"
done
