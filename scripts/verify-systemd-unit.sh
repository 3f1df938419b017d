#!/usr/bin/env bash
# Verifies the systemd unit of mcp-healthd, offline (no running systemd needed):
#
#   1. `systemd-analyze verify` on the unit file exactly as shipped, inside a scratch root
#      (--root) that holds a copy of the host's system units and a stand-in for the daemon's
#      binary, so the missing /usr/bin/mcp-healthd is the only thing that is faked;
#      any output line (verify exits 0 on "Unknown key ..., ignoring" and similar) is a failure;
#   2. `systemd-analyze security --offline=true`: prints the exposure table and score and fails
#      when the score is above MAX_EXPOSURE.
#
# Usage: scripts/verify-systemd-unit.sh [UNIT_FILE]      (default: systemd/mcp-healthd.service)
# Environment:
#   MAX_EXPOSURE=2.0        fail when the overall exposure is above this (0.0 .. 10.0)
#   MCP_HEALTHD_BINARY=PATH put this binary (e.g. target/release/mcp-healthd) in the scratch root
#                           instead of a stub script
#   NO_INSTALL=1            do not apt-get install systemd when systemd-analyze is missing
# Output: the last line is `exposure=N.N` (for a test to parse). Exit: 0 ok, 1 failure.
# Installs Debian's systemd package when systemd-analyze is missing (needs root and apt-get).

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
unit_file=${1:-$here/../systemd/mcp-healthd.service}
max_exposure=${MAX_EXPOSURE:-2.0}
daemon_path=/usr/bin/mcp-healthd

die() { echo "verify-systemd-unit: FAIL: $*" >&2; exit 1; }
say() { echo "verify-systemd-unit: $*" >&2; }

[[ -f $unit_file ]] || die "no unit file at $unit_file"
unit_name=$(basename "$unit_file")
export LC_ALL=C SYSTEMD_COLORS=0 SYSTEMD_PAGER='' SYSTEMD_LOG_COLOR=0

# ---- systemd-analyze ---------------------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null 2>&1; then
    [[ -n ${NO_INSTALL:-} ]] && die "systemd-analyze is missing (NO_INSTALL is set)"
    command -v apt-get >/dev/null 2>&1 || die "systemd-analyze is missing and there is no apt-get"
    [[ $(id -u) -eq 0 ]] || die "systemd-analyze is missing; run as root to install Debian's systemd"
    say "installing systemd (for systemd-analyze)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends systemd >&2 || die "apt-get install systemd failed"
    command -v systemd-analyze >/dev/null 2>&1 || die "systemd-analyze still missing after installing systemd"
fi
version=$(systemd-analyze --version | awk 'NR == 1 { print $2 }')
[[ $version =~ ^[0-9]+$ ]] || die "cannot read the systemd version from: $(systemd-analyze --version | head -n1)"
# verify --root= and security --offline= both arrived in systemd 250.
(( version >= 250 )) || die "systemd $version is too old: security --offline needs systemd >= 250"
say "systemd $version"

# ---- the scratch root ----------------------------------------------------------------------------
scratch=$(mktemp -d "${TMPDIR:-/tmp}/verify-unit.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/etc/systemd/system" "$scratch/usr/lib/systemd" "$scratch/usr/bin"
# Targets and slices the unit depends on implicitly (sysinit.target, basic.target, system.slice,
# shutdown.target, ...) and explicitly (network-online.target, multi-user.target).
system_units=/usr/lib/systemd/system
[[ -d $system_units ]] || system_units=/lib/systemd/system
[[ -d $system_units ]] || die "no system unit directory (/usr/lib/systemd/system) on this host"
cp -a "$system_units" "$scratch/usr/lib/systemd/system"
cp "$unit_file" "$scratch/etc/systemd/system/$unit_name"

# Every Exec*= command: the daemon's own binary is stubbed (or MCP_HEALTHD_BINARY is copied in);
# anything else (/bin/kill) must exist on this host, and is linked into the scratch root.
stub() {
    local path=$1
    mkdir -p "$scratch$(dirname "$path")"
    if [[ $path == "$daemon_path" && -n ${MCP_HEALTHD_BINARY:-} ]]; then
        [[ -x $MCP_HEALTHD_BINARY ]] || die "MCP_HEALTHD_BINARY=$MCP_HEALTHD_BINARY is not executable"
        cp "$MCP_HEALTHD_BINARY" "$scratch$path"
    else
        printf '#!/bin/sh\nexit 0\n' >"$scratch$path"
    fi
    chmod 755 "$scratch$path"
}
stub "$daemon_path"
while IFS= read -r cmd; do
    # the command's path, without the special prefixes (@ - : + !) systemd allows before it
    path=$(printf '%s\n' "$cmd" | sed -E 's/^[-@:+!]+//; s/[[:space:]].*//')
    [[ $path == /* ]] || die "$unit_name: Exec command without an absolute path: $cmd"
    [[ $path == "$daemon_path" ]] && continue
    [[ -x $path ]] || die "$unit_name: $path (in: $cmd) is not an executable on this host"
    [[ -e $scratch$path ]] && continue
    mkdir -p "$scratch$(dirname "$path")"
    cp "$(readlink -f "$path")" "$scratch$path"
done < <(sed -n 's/^[[:space:]]*Exec[A-Za-z]*=[[:space:]]*//p' "$unit_file")

# ---- 1. verify -------------------------------------------------------------------------------------
say "systemd-analyze verify $unit_name"
set +e
verify_out=$(cd "$scratch" && systemd-analyze verify --root="$scratch" \
    "$scratch/etc/systemd/system/$unit_name" 2>&1)
verify_rc=$?
set -e
if [[ $verify_rc -ne 0 || -n $verify_out ]]; then
    # Show paths as in the repository, not in the scratch root.
    printf '%s\n' "${verify_out//$scratch\/etc\/systemd\/system\/$unit_name/$unit_file}" >&2
    die "systemd-analyze verify: exit $verify_rc, $(printf '%s' "$verify_out" | grep -c '') line(s) of warnings/errors"
fi
say "verify: no warnings"

# ---- 2. security -----------------------------------------------------------------------------------
say "systemd-analyze security --offline=true $unit_name"
set +e
security_out=$(cd "$scratch" && systemd-analyze security --offline=true --no-pager \
    "$scratch/etc/systemd/system/$unit_name" 2>&1)
security_rc=$?
set -e
printf '%s\n' "$security_out"
[[ $security_rc -eq 0 ]] || die "systemd-analyze security failed (exit $security_rc)"
exposure=$(printf '%s\n' "$security_out" | sed -n 's/.*Overall exposure level for .*: \([0-9][0-9]*\.[0-9]\).*/\1/p' | tail -n1)
[[ -n $exposure ]] || die "no 'Overall exposure level' line in the security output"
# Parse warnings of the unit file, if any slipped past verify.
if printf '%s\n' "$security_out" | grep -E "$unit_name:[0-9]+: " >&2; then
    die "systemd-analyze security reported problems in the unit file"
fi
if awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e > m) }'; then
    die "exposure $exposure is above MAX_EXPOSURE=$max_exposure"
fi
say "exposure $exposure (max $max_exposure): OK"
echo "exposure=$exposure"
