#!/usr/bin/env bash
# Runs the mps2-an386 firmware image under QEMU (Debian package qemu-system-arm) with
# user-mode networking: the board gets 10.0.2.15 by DHCP and reaches the host's
# 127.0.0.1 as 10.0.2.2. Its console (semihosting) is this script's stdout; the exit
# code is the image's (0 after a `run=` stop, 1 on a fatal error).
#
#   scripts/qemu-run.sh port=1883 device=qemu-aq-0007 period=5        # until Ctrl-C
#   scripts/qemu-run.sh --build port=1883 period=1 run=30              # build first
#
# Arguments are the board's key=value settings: host, port, device, district, period,
# run, keepalive (see firmware/boards/mps2-an386/src/config.rs for defaults).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

board=firmware/boards/mps2-an386
elf=$board/target/thumbv7em-none-eabihf/release/mps2-an386

if [ "${1:-}" = "--build" ]; then
    shift
    bash scripts/build-boards.sh mps2-an386 >&2
fi
command -v qemu-system-arm >/dev/null 2>&1 || {
    echo "error: qemu-system-arm not found: install the Debian package qemu-system-arm" >&2
    exit 1
}
[ -f "$elf" ] || { echo "error: $elf missing: run scripts/build-boards.sh mps2-an386 (or pass --build)" >&2; exit 1; }

semihosting="enable=on,target=native,arg=mps2-an386"
for arg in "$@"; do
    case "$arg" in
        *=*) ;;
        *) echo "error: '$arg' is not key=value" >&2; exit 2 ;;
    esac
    # QEMU option syntax: a comma inside a value is written twice.
    semihosting+=",arg=${arg//,/,,}"
done

exec qemu-system-arm -M mps2-an386 -nographic -monitor none -serial null \
    -nic user,model=lan9118 -kernel "$elf" -semihosting-config "$semihosting"
