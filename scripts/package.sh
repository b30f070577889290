#!/usr/bin/env bash
# Builds the Debian package (`cargo deb`, in target/debian/) and tests it on this machine, as root:
# installs it with dpkg, checks its files, its conffile, the user tidings and the config's
# permissions, that `tidings serve --print-config` works as that user, that systemd-analyze
# verify accepts the unit, and that an upgrade keeps an edited config; then purges it and checks
# that the machine is as it was. Installs cargo-deb (under the target directory), adduser and
# systemd where missing.
# With --no-build, packages the release binary already built (scripts/test.sh builds it with the
# benchmark's, whose features differ: building the server alone would compile everything again).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "scripts/package.sh: $*" >&2
  exit 1
}
case "${1:-}" in "" | --no-build) ;; *) fail "usage: scripts/package.sh [--no-build]" ;; esac
[ "$(id -u)" = 0 ] || fail "run as root: it installs and purges the package"
# The package depends on adduser; systemd-analyze checks the unit.
if ! command -v adduser >/dev/null || ! command -v systemd-analyze >/dev/null; then
  apt-get update -q && apt-get install -y -q --no-install-recommends adduser systemd
fi
if dpkg-query -W -f='${Status}' tidings 2>/dev/null | grep -q installed || [ -e /usr/bin/tidings ] ||
  getent passwd tidings >/dev/null || getent group tidings >/dev/null; then
  fail "tidings (the package, /usr/bin/tidings, or the user or group) is already on this machine"
fi
target_dir="$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
cargo_deb="$target_dir/cargo-deb/bin/cargo-deb"
[ -x "$cargo_deb" ] || cargo install --locked --quiet --root "$target_dir/cargo-deb" cargo-deb@3.8.0

# The package, and a second one of a later version with the same files (the upgrade).
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
# (cargo deb empties target/debian/ of the work of an earlier run: the upgrade goes first, elsewhere.)
rm -rf "$target_dir/debian-upgrade"
upgrade="$("$cargo_deb" --locked -p tidings-server ${1:+"$1"} --fast --deb-version "$version+upgrade" \
  -o "$target_dir/debian-upgrade/" | tail -1)"
deb="$("$cargo_deb" --locked -p tidings-server --no-build | tail -1)"
[ "$(basename "$deb")" = "tidings_${version}_amd64.deb" ] || fail "unexpected package name: $deb"

# What the package may touch, to compare after the purge (dpkg's own records aside, and the
# backups /etc/passwd- and the like that adduser refreshes).
state() {
  getent passwd
  getent group
  find /etc /usr/bin /usr/lib/systemd /usr/share/doc /var/lib/systemd -printf '%p %m %u %g\n' \
    2>/dev/null | grep -v -e '^/etc/\(passwd\|group\|shadow\|gshadow\|subuid\|subgid\)- ' | sort
}
before="$(mktemp)" after="$(mktemp)"
state >"$before"
installed=""
cleanup() {
  [ -z "$installed" ] || dpkg --purge tidings >/dev/null 2>&1 || true
  rm -f "$before" "$after"
}
trap cleanup EXIT

installed=yes
dpkg -i "$deb" </dev/null >/dev/null
for file in /usr/bin/tidings /usr/lib/systemd/system/tidings.service /etc/tidings/tidings.toml; do
  dpkg -L tidings | grep -qx "$file" || fail "the package does not hold $file"
done
dpkg-query -W -f='${Conffiles}\n' tidings | grep -q '^ /etc/tidings/tidings.toml ' ||
  fail "/etc/tidings/tidings.toml is not a conffile"
[ "$(tidings --version)" = "tidings $version" ] || fail "tidings --version: $(tidings --version)"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd tidings)
[ "$uid" -lt 1000 ] && [ "$home" = /nonexistent ] && [ "$shell" = /usr/sbin/nologin ] ||
  fail "tidings is not a system user without a home and a shell: $(getent passwd tidings)"
getent group tidings >/dev/null || fail "no group tidings"
mode="$(stat -c '%a %U %G' /etc/tidings/tidings.toml)"
[ "$mode" = "640 root tidings" ] || fail "/etc/tidings/tidings.toml is $mode, not 640 root tidings"
[ -L /etc/systemd/system/multi-user.target.wants/tidings.service ] || fail "the unit is not enabled"
# The service's user reads the config, which holds tidings' defaults; systemd accepts the unit.
printed="$(runuser -u tidings -- tidings serve --config /etc/tidings/tidings.toml --print-config)"
defaults="$(runuser -u tidings -- tidings serve --print-config)"
[ "$printed" = "$defaults" ] || fail "the packaged config is not the defaults: $printed"
verify="$(systemd-analyze verify /usr/lib/systemd/system/tidings.service 2>&1)" ||
  fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"

# An upgrade keeps the admin's edit of the config, and its owner and mode, without asking.
echo 'api_key = "kept-across-upgrades"' >>/etc/tidings/tidings.toml
dpkg -i "$upgrade" </dev/null >/dev/null
[ "$(dpkg-query -W -f='${Version}' tidings)" = "$version+upgrade" ] || fail "the upgrade did not install"
grep -q kept-across-upgrades /etc/tidings/tidings.toml || fail "the upgrade replaced the edited config"
mode="$(stat -c '%a %U %G' /etc/tidings/tidings.toml)"
[ "$mode" = "640 root tidings" ] || fail "after the upgrade the config is $mode"

dpkg --purge tidings >/dev/null
installed=""
state >"$after"
diff "$before" "$after" >&2 || fail "the purge left the machine changed (above: - before, + after)"
echo "scripts/package.sh: $deb installs, upgrades and purges cleanly"
