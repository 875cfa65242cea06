#!/usr/bin/env bash
# Prints each board image's flash and static RAM use (build them first with
# scripts/build-boards.sh, or pass --build).
#
#   flash      = code and constants stored in flash: .text + .rodata + .data (its
#                initial values) + the vector table / ESP32 sections that live in flash
#   static RAM = .data + .bss (+ the ESP32's RAM-resident code and Wi-Fi data); stacks
#                and the Wi-Fi heap come on top
#
# Uses llvm-size from `rustup component add llvm-tools`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" = "--build" ]; then
    shift
    bash scripts/build-boards.sh "$@"
fi

size_tool=$(ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-size 2>/dev/null | head -n1 || true)
if [ -z "$size_tool" ]; then
    rustup component add llvm-tools >/dev/null
    size_tool=$(ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-size | head -n1)
fi

# Sums the sizes of the named sections (awk regex on section names) of an ELF.
sum_sections() {
    "$size_tool" -A "$1" | awk -v re="$2" '$1 ~ re { s += $2 } END { print s + 0 }'
}

kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }

printf '%-14s %-30s %12s %12s\n' board target flash "static RAM"
status=0
for manifest in firmware/boards/*/Cargo.toml; do
    dir=$(dirname "$manifest")
    board=$(basename "$dir")
    target=$(sed -n 's/^target = "\(.*\)"/\1/p' "$dir/.cargo/config.toml")
    elf="$dir/target/$target/release/$board"
    if [ ! -f "$elf" ]; then
        # A board whose binary is named differently from its folder.
        elf=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n1)
        elf="$dir/target/$target/release/$elf"
    fi
    if [ ! -f "$elf" ]; then
        echo "error: $elf missing: run scripts/build-boards.sh first" >&2
        status=1
        continue
    fi
    case "$target" in
        riscv32*)
            # ESP32-C3: flash holds .text/.rodata (mapped) and the initial images of
            # everything copied to RAM at boot (.trap, .rwtext, .data).
            flash=$(sum_sections "$elf" '^\.(flash\.appdesc|text|rodata.*|trap|rwtext.*|data.*)$')
            ram=$(sum_sections "$elf" '^\.(trap|rwtext.*|data.*|bss)$')
            ;;
        *)
            flash=$(sum_sections "$elf" '^\.(vector_table|text|rodata|data)$')
            ram=$(sum_sections "$elf" '^\.(data|bss|uninit)$')
            ;;
    esac
    printf '%-14s %-30s %12s %12s   (%s / %s bytes)\n' "$board" "$target" "$(kib "$flash")" "$(kib "$ram")" "$flash" "$ram"
done
exit "$status"
