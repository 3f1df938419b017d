#!/usr/bin/env bash
# The Debian package's life on this machine (issue 14): build it with cargo-deb, lint it with
# lintian (zero errors), then install -> upgrade (a rebuilt package with another revision, over a
# conffile the admin edited) -> remove -> purge, checking at each step what dpkg and the
# maintainer scripts left behind. Installs cargo-deb (cargo install --locked) and lintian
# (Debian's package) when missing. Needs root (dpkg -i) and a Debian system; systemd need not be
# running: deb-systemd-helper still records the unit's enablement, which is what is checked.
# With PostgreSQL answering at DATABASE_URL it also runs the installed binary's demo from an
# empty directory, without --samples.
#
#   bash scripts/test-deb.sh            # build, lint, life cycle
#   DEB=path.deb bash scripts/test-deb.sh   # skip the build, test that package (revision 2 is
#                                           # still rebuilt from target/release with --no-build)
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=mcp-healthd
UNIT=$PKG.service
CONF=/etc/$PKG/config.toml
ENVF=/etc/$PKG/env
WANTS=/etc/systemd/system/multi-user.target.wants/$UNIT
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'test-deb: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf '  ok: %s\n' "$*"; }

# expect_mode PATH MODE OWNER GROUP
expect_mode() {
  local got
  got=$(stat -c '%a %U %G' "$1") || fail "$1 is missing"
  [ "$got" = "$2 $3 $4" ] || fail "$1 is '$got', expected '$2 $3 $4'"
  ok "$1 $got"
}

# The maintainer scripts must run cleanly: no shell error text in dpkg's output.
dpkg_clean() {
  local log=$1
  shift
  if ! "$@" </dev/null >"$log" 2>&1; then
    cat "$log" >&2
    fail "$* failed"
  fi
  if grep -Eq 'not found|Syntax error|unexpected|warning: |error' "$log"; then
    cat "$log" >&2
    fail "$* printed errors or warnings"
  fi
  ok "$*"
}

[ "$(id -u)" = 0 ] || fail "run as root (dpkg -i)"
command -v dpkg >/dev/null || fail "not a Debian system"

step "tools"
if ! command -v cargo-deb >/dev/null; then
  echo "installing cargo-deb"
  cargo install cargo-deb --locked
fi
if ! command -v lintian >/dev/null; then
  echo "installing lintian"
  apt-get install -y -qq lintian >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq lintian >/dev/null; }
fi
cargo deb --version
lintian --version

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'installed\|config-files'; then
  echo "an earlier $PKG is on this machine: purging it first"
  dpkg --purge "$PKG" </dev/null >/dev/null
fi

# What exists before the package: after the purge the same must exist, and nothing more.
snapshot() {
  # (find fails on the paths that do not exist yet; that is expected)
  { find /etc /usr/bin /usr/lib/systemd /lib/systemd /usr/share/doc /usr/share/$PKG \
    /var/lib/systemd /var/lib/dpkg/info -xdev 2>/dev/null || true; } |
    grep -Ev '^/etc/(passwd|group|shadow|gshadow|subuid|subgid)-?$|^/etc/ld\.so\.cache$' | sort
}
snapshot >"$work/before"

step "build"
if [ -z "${DEB:-}" ]; then
  DEB=$(cargo deb --output "$work/rev1" 2>"$work/build.log" | tail -n 1) ||
    { cat "$work/build.log" >&2; fail "cargo deb"; }
fi
[ -f "$DEB" ] || fail "no package at '$DEB'"
# The same binary as revision 2: a different version for dpkg, so an upgrade.
DEB2=$(cargo deb --no-build --deb-revision 2 --output "$work/rev2" | tail -n 1)
[ -f "$DEB2" ] || fail "no revision-2 package at '$DEB2'"
ok "$(basename "$DEB") and $(basename "$DEB2")"

step "maintainer scripts"
dpkg-deb -e "$DEB" "$work/control"
for script in postinst postrm prerm preinst; do
  f=$work/control/$script
  [ -f "$f" ] || continue
  sh -n "$f" || fail "$script: shell syntax"
  # The systemd fragments must have replaced the token's own line, never a comment.
  grep -q '#DEBHELPER#' "$f" && fail "$script still holds the debhelper token"
  ok "$script parses"
done
grep -q 'deb-systemd-helper' "$work/control/postinst" || fail "postinst has no systemd fragment"
# The user is created before the fragment that enables (and on upgrade restarts) the unit.
user_line=$(grep -n 'adduser --system' "$work/control/postinst" | head -n 1 | cut -d: -f1)
unit_line=$(grep -n 'deb-systemd-helper' "$work/control/postinst" | head -n 1 | cut -d: -f1)
[ "$user_line" -lt "$unit_line" ] || fail "postinst enables the unit before creating the user"
ok "postinst creates the user (line $user_line) before the systemd fragment (line $unit_line)"

step "lintian"
# --fail-on error: warnings are shown but do not fail; errors do.
lintian --fail-on error --display-info --tag-display-limit 0 "$DEB" | tee "$work/lintian.log" ||
  fail "lintian reported errors"
ok "lintian: $(grep -c '^E:' "$work/lintian.log" || true) errors, $(grep -c '^W:' "$work/lintian.log" || true) warnings"

step "install"
dpkg_clean "$work/install.log" dpkg -i "$DEB"
getent passwd "$PKG" >/dev/null || fail "no user $PKG"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd "$PKG")
[ "$uid" -lt 1000 ] || fail "$PKG is not a system user (uid $uid)"
[ "$(getent group "$gid" | cut -d: -f1)" = "$PKG" ] || fail "primary group is not $PKG"
[ "$home" = /nonexistent ] && [ ! -e /nonexistent ] || fail "home is '$home'"
[ "$shell" = /usr/sbin/nologin ] || fail "shell is '$shell'"
ok "user $PKG: uid $uid, group $PKG, home $home (absent), shell $shell"
expect_mode /usr/bin/$PKG 755 root root
expect_mode $CONF 640 root $PKG
expect_mode $ENVF 640 root $PKG
expect_mode /usr/share/$PKG/sql/least-privilege-role.sql 644 root root
expect_mode /usr/share/$PKG/sql/app-roles.sql 644 root root
unit_file=$(dpkg -L "$PKG" | grep "/systemd/system/$UNIT\$")
expect_mode "$unit_file" 644 root root
dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q "^ $CONF " || fail "$CONF is not a conffile"
ok "$CONF is a conffile"
# deb-systemd-helper links to /lib/systemd/system/..., the same file on a merged-/usr system.
[ "$(readlink -f "$WANTS")" = "$(readlink -f "$unit_file")" ] ||
  fail "$WANTS does not point at $unit_file"
# (deb-systemd-helper answers only when it believes dpkg runs it)
DPKG_MAINTSCRIPT_PACKAGE=$PKG deb-systemd-helper --quiet was-enabled "$UNIT" ||
  fail "deb-systemd-helper: $UNIT not enabled"
ok "$UNIT enabled ($WANTS -> $(readlink "$WANTS"))"
/usr/bin/$PKG --version
# The file must parse for the service user; `config check` then also looks at the schema of
# whatever database answers here (exit 1 if it is behind), which is not the package's concern.
checked=$(runuser -u "$PKG" -- env -u DATABASE_URL /usr/bin/$PKG -c $CONF config check 2>&1 || true)
case "$checked" in
  "# configuration OK: $CONF"*) ;;
  *) fail "the service user cannot read its configuration: $checked" ;;
esac
ok "the service user reads $CONF (config check)"

if psql "$DATABASE_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
  step "demo from the installed package (no --samples, empty directory)"
  demo_dir=$(mktemp -d)
  (cd "$demo_dir" && exec setsid /usr/bin/$PKG demo) >"$work/demo.out" 2>&1 &
  demo_pid=$!
  shown=
  for _ in $(seq 1 600); do
    if grep -Eq ' services: [1-9][0-9]* up, [1-9][0-9]* down' "$work/demo.out"; then
      shown=yes
      break
    fi
    kill -0 "$demo_pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -INT "$demo_pid" 2>/dev/null || true
  demo_rc=0
  wait "$demo_pid" || demo_rc=$?
  [ -n "$shown" ] || { cat "$work/demo.out" >&2; fail "the demo showed no service up and down"; }
  [ "$demo_rc" = 0 ] || { tail -n 20 "$work/demo.out" >&2; fail "the demo exited $demo_rc after Ctrl-C"; }
  [ -z "$(ls -A "$demo_dir")" ] || fail "the demo left files in its directory"
  rmdir "$demo_dir"
  ok "$(grep -E ' services: ' "$work/demo.out" | tail -n 1)"
  ok "Ctrl-C: exit 0, nothing left in the directory"
  # Each demo makes a database of its own (mcp_healthd_demo_<hex>) and says which.
  demo_db=$(grep -oE 'database: mcp_healthd_demo_[0-9a-f]+' "$work/demo.out" | head -n 1 | cut -d' ' -f2)
  [ -n "$demo_db" ] || fail "the demo did not name its database"
  left=$(psql "$DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname = '$demo_db'")
  [ -z "$left" ] || fail "the demo left its database $demo_db behind"
  ok "the demo database $demo_db is gone"
else
  echo "(no PostgreSQL at DATABASE_URL: the demo is not run)"
fi

step "upgrade to revision 2 over an edited conffile"
echo '# edited by the admin (scripts/test-deb.sh)' >>$CONF
echo 'DATABASE_URL=postgres://mcp_healthd@db.invalid/mcp_health' >>$ENVF
edited=$(sha256sum $CONF)
dpkg_clean "$work/upgrade.log" dpkg -i "$DEB2"
[ "$(dpkg-query -W -f='${Version}' "$PKG")" = "$(dpkg-deb -f "$DEB2" Version)" ] ||
  fail "not upgraded"
ok "version $(dpkg-query -W -f='${Version}' "$PKG")"
[ "$(sha256sum $CONF)" = "$edited" ] || fail "the edited conffile was not kept"
[ ! -e $CONF.dpkg-new ] && [ ! -e $CONF.dpkg-old ] || fail "dpkg left .dpkg-new/.dpkg-old files"
ok "edited $CONF kept as it was"
grep -q db.invalid $ENVF || fail "$ENVF was overwritten"
ok "$ENVF kept"
expect_mode $CONF 640 root $PKG
expect_mode $ENVF 640 root $PKG
[ "$(readlink -f "$WANTS")" = "$(readlink -f "$unit_file")" ] ||
  fail "the unit is no longer enabled after the upgrade"
ok "$UNIT still enabled"

step "remove"
dpkg_clean "$work/remove.log" dpkg --remove "$PKG"
[ ! -e /usr/bin/$PKG ] && [ ! -e "$unit_file" ] || fail "program files remain after remove"
ok "binary and unit removed"
[ -f $CONF ] && [ -f $ENVF ] || fail "remove must keep the configuration"
ok "configuration kept until purge"
getent passwd "$PKG" >/dev/null || fail "remove deleted the user"

step "purge"
dpkg_clean "$work/purge.log" dpkg --purge "$PKG"
dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'installed\|config-files' &&
  fail "dpkg still knows $PKG"
[ ! -e /etc/$PKG ] || fail "/etc/$PKG remains"
dpkg-statoverride --list | grep -q "/etc/$PKG" && fail "a statoverride remains"
[ ! -e "$WANTS" ] && [ ! -L "$WANTS" ] || fail "$WANTS remains"
[ ! -e /etc/systemd/system/$UNIT ] && [ ! -L /etc/systemd/system/$UNIT ] || fail "a mask remains"
ok "no configuration, statoverride, enablement or mask left"
snapshot >"$work/after"
if ! diff -u "$work/before" "$work/after" >"$work/left.diff"; then
  cat "$work/left.diff" >&2
  fail "files differ between before the install and after the purge"
fi
ok "every path under /etc, /usr, /var/lib/systemd and /var/lib/dpkg/info is as before the install"
# Policy keeps the system user and group: a UID freed and reused could hand another account
# files (backups, copied logs) that still carry it. postrm says so; remove it by hand if sure.
getent passwd "$PKG" >/dev/null && ok "user $PKG kept (Debian practice for system users)"

printf '\ntest-deb: the package builds, lints clean and installs, upgrades, removes and purges cleanly\n'
