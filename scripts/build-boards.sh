#!/usr/bin/env bash
# Builds the board images in release (size-optimised) profile. Each board is its own
# cargo workspace under firmware/boards/ with its own target, linker settings and lock
# file. Any failure stops the script with a non-zero exit.
#
#   scripts/build-boards.sh            # every board under firmware/boards/
#   scripts/build-boards.sh esp32c3-aq # just one
#
# Board configuration comes from the environment at build time (see each board's
# build.rs, e.g. AQ_WIFI_SSID, AQ_BROKER_HOST, AQ_DEVICE_ID for esp32c3-aq).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

boards=("$@")
if [ "${#boards[@]}" -eq 0 ]; then
    # Every board folder: a board in the tree is a board that must build.
    for manifest in firmware/boards/*/Cargo.toml; do
        boards+=("$(basename "$(dirname "$manifest")")")
    done
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

# Boot check of the Cortex-M image under QEMU's mps2-an386 (Debian package
# qemu-system-arm), when QEMU is installed: a few seconds of running must show the
# SysTick clock ticking and no fault, lockup or bad register access.
elf=firmware/boards/cortex-m-aq/target/thumbv7em-none-eabihf/release/cortex-m-aq
case " ${boards[*]} " in *" cortex-m-aq "*) ;; *) exit 0 ;; esac
if [ -f "$elf" ] && command -v qemu-system-arm >/dev/null 2>&1; then
    echo "== booting cortex-m-aq under qemu-system-arm -M mps2-an386 (3 s)"
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    timeout 3 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial null \
        -kernel "$elf" -d int,guest_errors,unimp -D "$log" </dev/null || true
    ticks=$(grep -c 'pending nonsecure exception 15' "$log" || true)
    if grep -Eq 'HardFault|MemManage|BusFault|UsageFault|Lockup|[Ii]nvalid access|unimplemented' "$log"; then
        grep -E 'HardFault|MemManage|BusFault|UsageFault|Lockup|[Ii]nvalid access|unimplemented' "$log" | head -5 >&2
        echo "error: cortex-m-aq faulted under QEMU" >&2
        exit 1
    fi
    if [ "${ticks:-0}" -lt 100 ]; then
        echo "error: cortex-m-aq under QEMU: only ${ticks:-0} SysTick interrupts in 3 s" >&2
        exit 1
    fi
    echo "   booted: $ticks SysTick ticks, no fault"
elif [ -f "$elf" ]; then
    echo "   (qemu-system-arm not installed: Cortex-M boot check skipped)"
fi
