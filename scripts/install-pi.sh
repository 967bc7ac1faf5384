#!/usr/bin/env bash
# Install gate on a Raspberry Pi (Raspberry Pi OS Bookworm or later) as a systemd service.
# Run it as root, from a checkout or from a release's wheelhouse (scripts/release):
#
#   sudo ./scripts/install-pi.sh --from gate-VERSION-aarch64.tar.gz   install or update to a release,
#                                             with no network (pip --no-index, hashes checked)
#   sudo ./scripts/install-pi.sh              install or update to this checkout (pip needs PyPI)
#   sudo ./scripts/install-pi.sh --rollback   back to the release that ran before; restarts the lane
#   sudo ./scripts/install-pi.sh --dry-run    print what it would do; change nothing
#   sudo ./scripts/install-pi.sh --uninstall  remove the service; keep /etc/gate and the ledger
#   sudo ./scripts/install-pi.sh --uninstall --purge   ... and the config, the ledger (a backup
#                                             goes to /var/backups/gate/) and the user
#
# Each release goes into its own directory, /opt/gate/releases/VERSION/venv, and the symlink
# /opt/gate/current is switched to it in one step (rename): the running lane never runs
# half-replaced files. The release before it stays as /opt/gate/previous, and the one the lane
# runs stays until it is restarted (older ones are removed). --rollback refuses to go back to a
# release that cannot read the ledger (a newer database schema), and an update that will migrate
# the ledger first copies it to /var/backups/gate/. A .tar.gz with a .sha256 beside it is checked.
#
# Options:
#   --from WHEELHOUSE   a release from scripts/release: its directory or .tar.gz
#   --scanner VID:PID   a barcode scanner the shipped udev rules do not know (see `lsusb`), in
#                       serial (/dev/gate-scanner) or keyboard mode (/dev/gate-scanner-hid)
#   --technician USER   put USER in group gate-status: gate status without sudo (the status socket
#                       only; the config, keys and ledger stay the gate user's). Default: who ran sudo
#   --no-apt            do not install Debian packages
#   --no-start          install and enable, but do not start or restart the lane
#   --no-backup         with --purge: no backup of the ledger
#   --root DIR          install into DIR as if it were / (tests, staging): no apt, no udevadm,
#                       nothing started; the virtualenv is built for DIR's paths as seen from here
#
# The outputs' safe levels (relays released, red on) go into the firmware's config.txt as gpio=
# lines, in a block marked "gate" that a later run updates and --uninstall removes: they hold
# the pins from early boot until the lane drives them. Rerun after changing [gpio].
#
# gate.service is enabled only once /etc/gate/gate.toml passes `gate check-config` (the skeleton
# it writes does not: it waits for the issuer's key). Its IPAddressAllow= gets the broker's
# addresses from the config: rerun after changing [sync] host or brokers.
#
# Idempotent: a second run reports every step as unchanged. It never overwrites
# /etc/gate/gate.toml. Afterwards: edit /etc/gate/gate.toml, `gate check-config`, rerun the
# installer (it enables and starts the lane), `gate doctor` (docs/technicians.md).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
DRY=0
ACTION=install
PURGE=0
BACKUP=1
FROM=""
APT=1
START=1
SCANNER=""
TECHNICIAN=${SUDO_USER:-}
PYTHON=${GATE_PYTHON:-/usr/bin/python3}  # the system's Python: its dist-packages hold picamera2
PREFIX=/opt/gate
PACKAGES=(python3-venv libzbar0 mosquitto-clients sqlite3 python3-evdev)  # evdev: scanners in keyboard mode
PI_PACKAGES=(python3-lgpio python3-picamera2)  # only where the archive has them (Raspberry Pi OS)

say() { printf '%s\n' "$*"; }
die() { printf 'install-pi: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --uninstall) ACTION=uninstall ;;
    --purge) PURGE=1 ;;
    --no-backup) BACKUP=0 ;;
    --rollback) ACTION=rollback ;;
    --from) [ $# -ge 2 ] || die "--from needs a wheelhouse (a directory or .tar.gz from scripts/release)"
            [ -e "$2" ] || die "--from: no such file or directory: $2"
            FROM=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift ;;
    --no-apt) APT=0 ;;
    --no-start) START=0 ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$(cd "$2" && pwd) || die "no directory $2"; shift ;;
    --scanner)
      [ $# -ge 2 ] || die "--scanner needs VID:PID"
      [[ $2 =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$ ]] || die "--scanner: VID:PID as lsusb prints it (e.g. 0c2e:0b61), got $2"
      SCANNER=${2,,}; shift ;;
    --technician) [ $# -ge 2 ] || die "--technician needs a user name"; TECHNICIAN=$2; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) die "unknown option $1 (--help lists them)" ;;
  esac
  shift
done
[ "$ROOT" = / ] && ROOT=""
[ $PURGE = 0 ] || [ "$ACTION" = uninstall ] || die "--purge goes with --uninstall (it removes the config and the ledger)"
[ $BACKUP = 1 ] || [ $PURGE = 1 ] || die "--no-backup goes with --uninstall --purge"
[ -z "$FROM" ] || [ "$ACTION" = install ] || die "--from installs a release: not with --$ACTION"
# Run from an unpacked release (gate-VERSION-PLATFORM/scripts/install-pi.sh): that release.
if [ -z "$FROM" ] && [ "$ACTION" = install ] && [ -f "$SRC/requirements.lock" ]; then FROM=$SRC; fi
if [ -n "$ROOT" ]; then APT=0; START=0; fi
if [ $DRY = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (sudo), or with --dry-run"; fi

# --- helpers: every change goes through these, so that --dry-run changes nothing ------------

CHANGED=0
run() {  # run DESCRIPTION COMMAND...: do it, or say it would be done
  if [ $DRY = 1 ]; then say "would    $1"; return 0; fi
  say "do       $1"
  "${@:2}" || return  # the command's own status (set -e stops the script unless the caller handles it)
  CHANGED=1
}
unchanged() { say "ok       $1"; }
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }  # not in a chroot, container or --root
uid_of() {  # a user's number in the target system
  local uid
  uid=$(awk -F: -v n="$1" '$1 == n { print $3 }' "$ROOT/etc/passwd" 2>/dev/null || true)
  printf '%s' "${uid:-0}"
}
gid_of() {  # a group's number in the target system (chown by name would ask this machine)
  local gid
  gid=$(awk -F: -v n="$1" '$1 == n { print $3 }' "$ROOT/etc/group" 2>/dev/null || true)
  printf '%s' "${gid:-0}"
}
put() {  # put SOURCE_FILE TARGET_PATH MODE [GROUP]: 0 when written (or would be), 1 when unchanged
  local src=$1 dest=$ROOT$2 mode=$3 group=${4:-root}
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ] \
     && [ "$(stat -c %g "$dest")" = "$(gid_of "$group")" ]; then
    unchanged "$2"
    return 1
  fi
  run "write $2 (mode $mode, group $group)" install -D -m "$mode" -o 0 -g "$(gid_of "$group")" "$src" "$dest"
}
# config.txt's block: the lines between these markers are the installer's, rewritten in place.
BOOT_BEGIN="# >>> gate: the outputs' safe levels from boot on (scripts/install-pi.sh writes this block; edit [gpio] in /etc/gate/gate.toml and rerun it)"
BOOT_END="# <<< gate"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# --- install --------------------------------------------------------------------------------

check_os() {
  local version=0
  if [ -r "$ROOT/etc/os-release" ]; then
    version=$(. "$ROOT/etc/os-release" && printf '%s' "${VERSION_ID:-0}")
  fi
  if [ "${version%%.*}" -lt 12 ] 2>/dev/null; then
    say "warning  this is not Debian/Raspberry Pi OS 12 (Bookworm) or later (VERSION_ID=$version): going on"
  fi
}

install_packages() {
  [ $APT = 1 ] || { say "skip     Debian packages (--no-apt or --root)"; return; }
  local wanted=("${PACKAGES[@]}") missing=() pkg
  for pkg in "${PI_PACKAGES[@]}"; do
    if apt-cache show "$pkg" >/dev/null 2>&1; then wanted+=("$pkg"); else say "skip     $pkg (not in this system's archive: not Raspberry Pi OS)"; fi
  done
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then unchanged "Debian packages: ${wanted[*]}"; return; fi
  run "apt-get install ${missing[*]}" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${missing[*]}"
}

install_user() {
  put "$SRC/systemd/gate.sysusers" /usr/lib/sysusers.d/gate.conf 0644 || true
  if grep -q '^gate:' "$ROOT/etc/passwd" 2>/dev/null && grep -q '^gate:' "$ROOT/etc/group" 2>/dev/null; then
    unchanged "user gate"
  else
    [ $DRY = 1 ] || mkdir -p "$ROOT/etc"  # an empty root: sysusers writes passwd and group there
    run "create user gate (systemd-sysusers)" systemd-sysusers ${ROOT:+--root="$ROOT"} "$ROOT/usr/lib/sysusers.d/gate.conf"
  fi
  if grep -q '^gate-status:' "$ROOT/etc/group" 2>/dev/null; then unchanged "group gate-status"
  else run "create group gate-status (technicians: the status socket only)" systemd-sysusers ${ROOT:+--root="$ROOT"} "$ROOT/usr/lib/sysusers.d/gate.conf"; fi
  local group
  for group in gpio dialout video gate-status; do  # sysusers adds these memberships; say it for the record
    if grep -Eq "^$group:[^:]*:[^:]*:(.*,)?gate(,|$)" "$ROOT/etc/group" 2>/dev/null; then unchanged "gate is in group $group"
    elif [ $DRY = 1 ]; then say "would    add gate to group $group"; fi
  done
  [ -n "$TECHNICIAN" ] && [ "$TECHNICIAN" != root ] && [ "$TECHNICIAN" != gate ] || return 0
  if ! grep -q "^$TECHNICIAN:" "$ROOT/etc/passwd" 2>/dev/null; then say "skip     technician $TECHNICIAN: no such user"; return; fi
  if in_group "$TECHNICIAN" gate-status; then unchanged "technician $TECHNICIAN is in group gate-status"
  else run "add technician $TECHNICIAN to group gate-status (gate status without sudo; log in again)" \
    usermod ${ROOT:+--prefix "$ROOT"} -a -G gate-status "$TECHNICIAN"; fi
  if in_group "$TECHNICIAN" gate; then  # an older installer put technicians in the lane's own group
    local others
    others=$(awk -F: -v u="$TECHNICIAN" '$1 != "gate" && ("," $4 ",") ~ ("," u ",") { print $1 }' "$ROOT/etc/group" | paste -sd,)
    run "take technician $TECHNICIAN out of group gate (it reads the lane's secrets; gate-status is enough)" \
      usermod ${ROOT:+--prefix "$ROOT"} -G "$others" "$TECHNICIAN"
  fi
}

in_group() {  # in_group USER GROUP: USER is a listed member of GROUP in the target system
  awk -F: -v u="$1" -v g="$2" '$1 == g && ("," $4 ",") ~ ("," u ",") { found = 1 } END { exit !found }' "$ROOT/etc/group" 2>/dev/null
}

# --- the software: one directory per release, /opt/gate/current switched to it ---------------

valid_version() {  # valid_version WHERE VERSION: a release directory's name, never a path
  [[ $2 =~ ^[0-9][A-Za-z0-9.+]*$ ]] && [[ $2 != *..* ]] || die "$1: not a version: $2"
}

check_sha256() {  # check_sha256 TARBALL: against TARBALL.sha256 when one sits beside it (as scripts/release writes it)
  # A checksum found beside the file catches a damaged or truncated copy, not a forged one: an
  # attacker who can swap the tarball can swap its .sha256 too (authenticity needs a signed
  # checksum, or a transfer the venue trusts: docs/technicians.md).
  local sums=$1.sha256 expected actual
  if [ ! -f "$sums" ]; then say "skip     checksum (no ${sums##*/} beside the tarball)"; return; fi
  expected=$(awk 'NR == 1 { print tolower($1) }' "$sums")
  [[ $expected =~ ^[0-9a-f]{64}$ ]] || die "--from: $sums holds no sha256"
  actual=$(sha256sum "$1" | cut -c1-64)
  [ "$actual" = "$expected" ] ||
    die "--from: ${1##*/} does not match ${sums##*/} (a damaged or altered copy): nothing was installed; copy it again"
  unchanged "sha256 of ${1##*/} matches ${sums##*/}"
}

release_from_wheelhouse() {  # sets VERSION, DIGEST and HOUSE from --from (a directory or .tar.gz)
  HOUSE=$FROM
  if [ -f "$FROM" ]; then
    check_sha256 "$FROM"
    mkdir "$TMP/house"
    tar -C "$TMP/house" -xzf "$FROM" || die "--from: $FROM is not a release tarball (scripts/release)"
    HOUSE=$(find "$TMP/house" -mindepth 1 -maxdepth 1 -type d | head -1)
  fi
  [ -n "$HOUSE" ] && [ -f "$HOUSE/requirements.lock" ] && [ -f "$HOUSE/VERSION" ] ||
    die "--from: $FROM holds no release (requirements.lock and VERSION, as scripts/release writes them)"
  VERSION=$(head -1 "$HOUSE/VERSION")
  valid_version "--from: $HOUSE/VERSION" "$VERSION"
  local arch
  arch=$(head -1 "$HOUSE/PLATFORM" 2>/dev/null | cut -d' ' -f1 || true)
  [ "$arch" = "$(uname -m)" ] || die "--from: the release is for ${arch:-an unknown platform}, this machine is $(uname -m)"
  DIGEST=$(sha256sum "$HOUSE/requirements.lock" | cut -c1-64)
}

release_from_checkout() {  # sets VERSION and DIGEST, and puts the checkout's files into $TMP/src
  [ -f "$SRC/gate/version.py" ] && [ -x "$SRC/scripts/version" ] ||
    die "$SRC is neither a checkout nor a release: give the release with --from (or --rollback, --uninstall)"
  mkdir -p "$TMP/src"
  if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$SRC" ls-files -z --cached --others --exclude-standard | tar -C "$SRC" --null -T - -cf - | tar -C "$TMP/src" -xf -
  else
    tar -C "$SRC" --exclude=.venv --exclude=.git --exclude=__pycache__ --exclude=build -cf - . | tar -C "$TMP/src" -xf -
  fi
  VERSION=$("$SRC/scripts/version" "$SRC")
  valid_version "$SRC (scripts/version)" "$VERSION"
  printf '"""Written by scripts/install-pi.sh."""\n\n__version__ = "%s"\n' "$VERSION" > "$TMP/src/gate/version.py"
  DIGEST=$(tar -C "$TMP/src" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . | sha256sum | cut -c1-64)
}

target_of() {  # target_of LINK: the release directory a link under $PREFIX names ('' when none)
  readlink "$ROOT$PREFIX/$1" 2>/dev/null || true
}

switch_link() {  # switch_link NAME TARGET: $PREFIX/NAME → TARGET in one rename (never missing, never half)
  ln -sfn "$2" "$ROOT$PREFIX/.$1.new" && mv -T "$ROOT$PREFIX/.$1.new" "$ROOT$PREFIX/$1"
}

running_release() {  # the release directory the lane's process runs from ('' when none is known)
  # A virtualenv's python is a symlink to the system's, so /proc/PID/exe names /usr/bin/python3:
  # the release shows in the compiled modules the process has mapped from its site-packages.
  # Where systemd does not run it (a chroot, --root), the marker start_lane records at a start.
  local pid rel=""
  if systemd_running; then
    pid=$(systemctl show -p MainPID --value gate 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -r "/proc/$pid/maps" ]; then
      rel=$(awk -v p="$PREFIX/releases/" 'i = index($0, p) { s = substr($0, i + length(p)); sub(/\/.*/, "", s); print "releases/" s; exit }' "/proc/$pid/maps" || true)
    fi
  fi
  printf '%s' "${rel:-$(target_of running)}"
}

SCHEMA_OF_RELEASE='from gate.store.db import SCHEMA_VERSION; print(SCHEMA_VERSION)'
LEDGER_OF_CONFIG='
import pathlib, sys, tomllib
config, root = pathlib.Path(sys.argv[1]), sys.argv[2]
try:
    state = (tomllib.loads(config.read_text()).get("gate") or {}).get("state_dir")
except (OSError, ValueError):
    state = None
state = state if isinstance(state, str) and state else "/var/lib/gate"
print(root + str(pathlib.PurePosixPath("/var/lib/gate", state, "gate.db")))
'
SCHEMA_OF_LEDGER='
import pathlib, sqlite3, sys
db = sqlite3.connect(pathlib.Path(sys.argv[1]).resolve().as_uri() + "?mode=ro", uri=True)
print(db.execute("PRAGMA user_version").fetchone()[0])
'
COPY_LEDGER='
import pathlib, sqlite3, sys
source = sqlite3.connect(pathlib.Path(sys.argv[1]).resolve().as_uri() + "?mode=ro", uri=True)
with sqlite3.connect(sys.argv[2]) as copy:
    source.backup(copy)
'

release_schema() {  # release_schema REL: the ledger schema the release reads ('' when unknown)
  local dir=$ROOT$PREFIX/$1
  if [ -f "$dir/.gate-schema" ]; then head -1 "$dir/.gate-schema"
  else "$dir/venv/bin/python" -c "$SCHEMA_OF_RELEASE" 2>/dev/null || true; fi  # installed by an older installer
}

ledger_path() {  # ledger_path PYTHON: the ledger the config names (state_dir/gate.db), as seen from here
  "$1" -c "$LEDGER_OF_CONFIG" "$ROOT/etc/gate/gate.toml" "$ROOT" 2>/dev/null || printf '%s' "$ROOT/var/lib/gate/gate.db"
}

ledger_schema() {  # ledger_schema PYTHON LEDGER: its PRAGMA user_version, opened read-only
  "$1" -c "$SCHEMA_OF_LEDGER" "$2" 2>"$TMP/ledger-errors"
}

schemas() {  # schemas REL WHY: sets LEDGER, HAVE (its schema) and CAN (the schema REL reads); 1: nothing to compare
  local python=$ROOT$PREFIX/$1/venv/bin/python
  [ -x "$python" ] || return 1  # (a dry run: not installed)
  LEDGER=$(ledger_path "$python")
  [ -f "$LEDGER" ] || return 1
  CAN=$(release_schema "$1")
  if ! HAVE=$(ledger_schema "$python" "$LEDGER"); then
    say "warning  ${LEDGER#"$ROOT"} is unreadable ($(tail -1 "$TMP/ledger-errors")): $2"
    return 1
  fi
  [ -n "$CAN" ] || { say "warning  the ledger schema gate ${1#releases/} reads is unknown: $2"; return 1; }
}

backup_before_migration() {  # backup_before_migration REL: copy the ledger when REL's first start will migrate it
  local stamp copy
  schemas "$1" "not copied before the update" || return 0
  if [ "$HAVE" -gt "$CAN" ] 2>/dev/null; then
    say "warning  ${LEDGER#"$ROOT"} has schema $HAVE, newer than gate ${1#releases/} reads ($CAN): the lane will not start with it"
  fi
  [ "$HAVE" -lt "$CAN" ] 2>/dev/null || return 0
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  copy=/var/backups/gate/gate-schema$HAVE-before-${1#releases/}-$stamp.db
  run "copy the ledger (schema $HAVE) to $copy: gate ${1#releases/} migrates it to schema $CAN at its first start" \
    backup_ledger_file "$ROOT$PREFIX/$1/venv/bin/python" "$LEDGER" "$ROOT$copy" ||
    die "the copy of the ledger failed: nothing was switched"
}

backup_ledger_file() {  # backup_ledger_file PYTHON LEDGER COPY: a consistent copy (SQLite's backup), root only
  (umask 077 && mkdir -p "$(dirname "$3")" && "$1" -c "$COPY_LEDGER" "$2" "$3")
}

install_software() {
  [ -x "$PYTHON" ] || die "$PYTHON not found (GATE_PYTHON= names another; it must be 3.11 or newer)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than 3.11"
  local VERSION DIGEST HOUSE=""
  if [ -n "$FROM" ]; then release_from_wheelhouse; else release_from_checkout; fi
  local rel=releases/$VERSION dir=$ROOT$PREFIX/releases/$VERSION
  if [ -f "$dir/.gate-installed" ] && [ "$(cat "$dir/.gate-installed")" = "$DIGEST" ]; then
    unchanged "$PREFIX/$rel (gate $VERSION)"
  elif [ "$(target_of current)" = "$rel" ] || [ "$(target_of previous)" = "$rel" ] || [ "$(running_release)" = "$rel" ]; then
    # Never rebuilt in place: the lane runs it, or --rollback goes back to it.
    die "gate $VERSION is the current, previous or running release but other files: give this build its own version (scripts/release --version)"
  else
    local how="this checkout (pip fetches the dependencies)"
    [ -z "$FROM" ] || how="the wheelhouse, no network: pip --no-index --require-hashes"
    run "install gate $VERSION into $PREFIX/$rel from $how" install_release "$dir" "$HOUSE"
  fi
  if [ "$(target_of current)" = "$rel" ]; then
    unchanged "$PREFIX/current → $rel"
  else
    local before
    before=$(target_of current)
    backup_before_migration "$rel"
    if [ -n "$before" ] && [ -d "$ROOT$PREFIX/$before" ]; then
      run "keep $PREFIX/previous → $before (install-pi.sh --rollback goes back to it)" switch_link previous "$before"
    fi
    run "switch $PREFIX/current → $rel (one rename: the lane runs the old or the new, never a mix)" switch_link current "$rel"
  fi
  prune_releases
  link_commands
}

install_release() {  # install_release DIR [WHEELHOUSE]: DIR complete, or not there at all
  # DIR is no release current, previous or the running lane names (install_software checked):
  # a leftover there is an unfinished earlier try. The virtualenv is built in place, not in a
  # temporary directory renamed afterwards: a virtualenv's scripts name its own path, so a
  # renamed one would not run. .gate-installed, written last, marks it complete.
  rm -rf "$1" || return
  build_release "$@" && return
  rm -rf "$1"
  return 1
}

build_release() {  # build_release DIR [WHEELHOUSE]: a fresh virtualenv in DIR/venv, gate in it
  # (Called through run's `||`, where set -e does not stop a function: each step is checked.)
  local dir=$1 house=$2
  mkdir -p "$dir" || return
  "$PYTHON" -m venv --system-site-packages "$dir/venv" || return  # sees the system's picamera2 and lgpio
  if [ -n "$house" ]; then
    "$dir/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links "$house" \
      --require-hashes -r "$house/requirements.lock" || { say "failed   pip: nothing was switched"; return 1; }
    if [ -d "$house/docs" ]; then cp -r "$house/docs" "$dir/docs" || return; fi
  else
    cp -r "$TMP/src" "$dir/src" || return
    "$dir/venv/bin/python" -m pip install -q --disable-pip-version-check "$dir/src" || { say "failed   pip: nothing was switched"; return 1; }
    ln -s src/docs "$dir/docs" || return
  fi
  # The installer comes along: sudo /opt/gate/current/install-pi.sh --rollback, with no checkout.
  cp "$SRC/scripts/install-pi.sh" "$dir/install-pi.sh" || return
  # The ledger schema it reads: --rollback does not go back to a release older than the ledger.
  "$dir/venv/bin/python" -c "$SCHEMA_OF_RELEASE" > "$dir/.gate-schema" || return
  printf '%s' "$DIGEST" > "$dir/.gate-installed"  # last: a directory without it is unfinished
}

prune_releases() {  # keep the current, the previous and the running release; older ones only take space
  local keep_current keep_previous keep_running entry
  keep_current=$(target_of current); keep_previous=$(target_of previous); keep_running=$(running_release)
  [ -d "$ROOT$PREFIX/releases" ] || return 0
  for entry in "$ROOT$PREFIX"/releases/*; do
    [ -e "$entry" ] || continue
    case releases/${entry##*/} in
      "$keep_current"|"$keep_previous") ;;
      "$keep_running") say "kept     $PREFIX/releases/${entry##*/} (the lane still runs it: the next run after a restart removes it)" ;;
      *) run "remove the older release $PREFIX/releases/${entry##*/}" rm -rf "$entry" ;;
    esac
  done
}

link_command() {  # /usr/local/bin/gate → the current release's
  mkdir -p "$ROOT/usr/local/bin" && ln -sfn "$PREFIX/current/venv/bin/gate" "$ROOT/usr/local/bin/gate"
}

link_commands() {  # /usr/local/bin/gate and the older layout's /opt/gate/venv, through current
  if [ "$(readlink "$ROOT/usr/local/bin/gate" 2>/dev/null)" = "$PREFIX/current/venv/bin/gate" ]; then
    unchanged "/usr/local/bin/gate"
  else
    run "link /usr/local/bin/gate → $PREFIX/current/venv/bin/gate" link_command
  fi
  # Units that name /opt/gate/venv (gate-bridge, the venue dashboard) follow current too. An
  # older install's real venv there goes once no lane runs from it.
  if [ -d "$ROOT$PREFIX/venv" ] && [ ! -L "$ROOT$PREFIX/venv" ]; then
    if systemd_running && systemctl is-active --quiet gate; then
      say "kept     $PREFIX/venv (the older layout, still running): the next run removes it"
      return
    fi
    run "remove the older layout's $PREFIX/venv and $PREFIX/src" rm -rf "$ROOT$PREFIX/venv" "$ROOT$PREFIX/src"
  fi
  if [ "$(readlink "$ROOT$PREFIX/venv" 2>/dev/null)" = current/venv ]; then unchanged "$PREFIX/venv → current/venv"
  else run "link $PREFIX/venv → current/venv (for gate-bridge and the venue dashboard's units)" switch_link venv current/venv; fi
}

rollback_schema_check() {  # rollback_schema_check REL: dies when REL cannot read the ledger (a newer schema)
  schemas "$1" "its schema is not checked" || return 0
  [ "$HAVE" -gt "$CAN" ] 2>/dev/null || return 0
  die "refused: the ledger ${LEDGER#"$ROOT"} has schema $HAVE, gate ${1#releases/} reads schema $CAN at most: it would not start.
  The update migrated the ledger. Install a release forward instead (a fixed one), or stop the lane and
  restore the copy the update made (/var/backups/gate/gate-schema*-before-*.db; admissions since are lost).
  Nothing was changed (docs/technicians.md, rolling back)."
}

rollback() {
  local now before
  now=$(target_of current); before=$(target_of previous)
  [ -n "$before" ] && [ -f "$ROOT$PREFIX/$before/.gate-installed" ] ||
    die "no previous release to go back to ($PREFIX/previous: ${before:-none})"
  rollback_schema_check "$before"
  run "switch $PREFIX/current → $before (back from ${now:-none})" switch_link current "$before"
  [ -z "$now" ] || run "keep $PREFIX/previous → $now (--rollback again returns to it)" switch_link previous "$now"
  if [ $START = 1 ] && systemd_running && [ -L "$ROOT/etc/systemd/system/multi-user.target.wants/gate.service" ]; then
    run "restart gate" systemctl restart gate
    mark_running
  else
    say "skip     restarting the lane (not enabled, --no-start or --root)"
  fi
  say "gate     $("$ROOT$PREFIX/current/venv/bin/gate" --version 2>/dev/null || printf 'in %s' "$before")"
}

install_config() {
  local dir=$ROOT/etc/gate
  if [ -d "$dir" ] && [ "$(stat -c '%a %g' "$dir")" = "750 $(gid_of gate)" ]; then unchanged "/etc/gate"
  else run "create /etc/gate (root, readable by group gate)" install -d -m 0750 -o 0 -g "$(gid_of gate)" "$dir"; fi
  if [ -e "$dir/gate.toml" ]; then
    unchanged "/etc/gate/gate.toml (kept: the installer never overwrites a config)"
    return
  fi
  local name
  [ -r "$ROOT/etc/hostname" ] && name=$(tr -c 'A-Za-z0-9_.\n-' '-' < "$ROOT/etc/hostname" | head -1)
  sed -e "s/^id = \"lane-1\"/id = \"${name:-lane-1}\"/" "$SRC/config/gate.example.toml" > "$TMP/gate.toml"
  put "$TMP/gate.toml" /etc/gate/gate.toml 0640 gate || true
}

# What the installer needs from the config: the secrets it names and the brokers' hosts (a config
# that does not load names no broker: the unit then allows loopback alone, and is not enabled).
CONFIG_FACTS='
import pathlib, sys, tomllib
config, root = pathlib.Path(sys.argv[1]), sys.argv[2]
try:
    raw = tomllib.loads(config.read_text())
except (OSError, ValueError) as exc:
    sys.exit(f"unreadable {exc}")
sync, trust = raw.get("sync") or {}, raw.get("trust") or {}
def here(name):  # a path as the lane sees it, as seen from this installer (--root)
    return root + name if name.startswith("/") else str(config.parent / name)
names = [sync.get(key) for key in ("password_file", "key_file", "identity_file")] + list(trust.get("files") or [])
for name in names:
    if isinstance(name, str) and name:
        print("secret", here(name))
try:
    from gate.config import load
    loaded = load(str(config))
except Exception as exc:
    sys.exit(f"invalid {exc}")
for host, _port in (loaded.sync.brokers if loaded.sync is not None else ()):
    print("broker", host)
'

config_facts() {  # config_facts secret|broker: the config's secret files or brokers' hosts, one a line
  local python=$ROOT$PREFIX/current/venv/bin/python
  if [ ! -f "$TMP/config-facts" ]; then
    if [ -x "$python" ] && [ -f "$ROOT/etc/gate/gate.toml" ]; then
      "$python" -c "$CONFIG_FACTS" "$ROOT/etc/gate/gate.toml" "$ROOT" > "$TMP/config-facts" 2>/dev/null || true
    else
      : > "$TMP/config-facts"
    fi
  fi
  awk -v kind="$1" '$1 == kind { sub(/^[^ ]+ /, ""); print }' "$TMP/config-facts"
}

config_valid() {  # the installed gate's check-config passes on the installed config
  local gate=$ROOT$PREFIX/current/venv/bin/gate
  [ -x "$gate" ] && "$gate" check-config --config "$ROOT/etc/gate/gate.toml" >/dev/null 2>"$TMP/config-errors"
}

secure_secrets() {
  # Keys, the broker's password and the trust documents (pretix secrets, TOTP keys) are the gate
  # user's alone: 0600 files, 0700 directories. The config (no secrets in it) and certificates
  # stay root's, readable by the gate group (the lane's own user: technicians are in gate-status).
  local path uid gid
  uid=$(uid_of gate); gid=$(gid_of gate)
  while IFS= read -r path; do
    [ -e "$path" ] && [ ! -L "$path" ] || continue
    local mode=600
    [ ! -d "$path" ] || mode=700
    if [ "$(stat -c '%u %g %a' "$path")" = "$uid $gid $mode" ]; then unchanged "${path#"$ROOT"} (user gate only, $mode)"
    else run "make ${path#"$ROOT"} the gate user's alone (mode $mode)" own_alone "$uid:$gid" "$mode" "$path"; fi
  done < <({ find "$ROOT/etc/gate" -mindepth 1 \( -name gate.toml -o -name '*.crt' -o -name '*.example*' \) -prune -o -print 2>/dev/null
             config_facts secret; } | sort -u)
}

own_alone() {  # own_alone UID:GID MODE PATH
  chown "$1" "$3" && chmod "$2" "$3"
}

broker_addresses() {  # the IP addresses of the config's brokers (and the name servers, for names)
  local host addresses="" named=0
  while IFS= read -r host; do
    case $host in
      localhost|127.*|::1) ;;  # loopback: allowed anyway
      *:*) addresses+=" $host" ;;  # an IPv6 address
      *[!0-9.]*)
        named=1
        local found
        found=$(getent ahosts "$host" 2>/dev/null | awk '{ print $1 }' | sort -u | paste -sd' ')
        if [ -n "$found" ]; then addresses+=" $found"
        else say "warning  broker $host does not resolve here: the lane may not reach it (IPAddressAllow=); rerun when it does" >&2; fi ;;
      *) addresses+=" $host" ;;
    esac
  done < <(config_facts broker)
  if [ $named = 1 ] && [ -r "$ROOT/etc/resolv.conf" ]; then  # the lane resolves the name itself
    addresses+=" $(awk '$1 == "nameserver" && $2 !~ /^127\./ && $2 != "::1" { print $2 }' "$ROOT/etc/resolv.conf" | paste -sd' ')"
  fi
  printf '%s' "$addresses" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | paste -sd' '
}

install_identity() {
  # The lane's own Ed25519 key: it signs every ledger record this lane puts on the venue bus.
  # 32 random bytes (an Ed25519 seed), as `gate keygen --out` writes it; the gate user's alone.
  # Never replaced: a new key means a new roster entry (`gate identity` prints it).
  local key=$ROOT/etc/gate/identity.key
  if [ -e "$key" ]; then unchanged "/etc/gate/identity.key (kept: the venue's roster names its public half)"; return; fi
  run "make /etc/gate/identity.key (this lane's record-signing key, mode 0600, user gate)" new_identity "$key"
}

new_identity() {  # new_identity KEY: 32 random bytes, base64, the gate user's alone
  (umask 077 && head -c 32 /dev/urandom | base64 > "$TMP/identity.key" &&
   install -m 0600 -o "$(uid_of gate)" -g "$(gid_of gate)" "$TMP/identity.key" "$1")
}

install_udev() {
  cp "$SRC/systemd/99-gate.rules" "$TMP/99-gate.rules"
  if [ -n "$SCANNER" ]; then
    printf '# added by install-pi.sh --scanner %s\nSUBSYSTEM=="tty", ATTRS{idVendor}=="%s", ATTRS{idProduct}=="%s", SYMLINK+="gate-scanner", OWNER="gate", GROUP="gate", MODE="0600"\n' \
      "$SCANNER" "${SCANNER%%:*}" "${SCANNER##*:}" >> "$TMP/99-gate.rules"
    printf 'SUBSYSTEM=="input", KERNEL=="event*", ENV{ID_INPUT_KEYBOARD}=="1", ATTRS{idVendor}=="%s", ATTRS{idProduct}=="%s", SYMLINK+="gate-scanner-hid", OWNER="gate", GROUP="gate", MODE="0600"\n' \
      "${SCANNER%%:*}" "${SCANNER##*:}" >> "$TMP/99-gate.rules"
  elif [ -f "$ROOT/etc/udev/rules.d/99-gate.rules" ]; then  # keep a scanner added by an earlier run
    grep -A2 '^# added by install-pi.sh --scanner' "$ROOT/etc/udev/rules.d/99-gate.rules" | grep -v '^--$' >> "$TMP/99-gate.rules" || true
  fi
  local reload=0
  if put "$TMP/99-gate.rules" /etc/udev/rules.d/99-gate.rules 0644; then reload=1; fi
  if put "$SRC/systemd/gate-nfc.conf" /etc/modprobe.d/gate-nfc.conf 0644; then reload=1; fi
  if [ $reload = 1 ] && systemd_running && command -v udevadm >/dev/null; then
    run "reload udev rules (replug the readers if their names do not appear)" sh -c "udevadm control --reload && udevadm trigger" ||
      say "warning  udev did not reload: unplug and replug the readers"
  fi
}

boot_config() {  # the firmware's config.txt: /boot/firmware on Bookworm (whose /boot/config.txt is a stub), /boot before
  local f
  for f in /boot/firmware/config.txt /boot/config.txt; do
    if [ -f "$ROOT$f" ]; then printf '%s' "$f"; return 0; fi
  done
  return 1
}

boot_block() {  # boot_block FILE [BLOCK_FILE]: FILE with gate's block replaced in place by BLOCK_FILE
  # (appended when FILE had none), or taken out when BLOCK_FILE is not given.
  awk -v begin="$BOOT_BEGIN" -v end="$BOOT_END" -v block="${2:-}" '
    function put(  line) { if (block != "") { while ((getline line < block) > 0) print line; close(block) }; done = 1 }
    $0 == begin { skipping = 1; if (!done) put(); next }
    skipping { if ($0 == end) skipping = 0; next }
    { print }
    END { if (!done) put() }' "$1"
}

install_boot_pins() {
  local txt gate=$ROOT$PREFIX/current/venv/bin/gate
  txt=$(boot_config) || { say "skip     gpio boot defaults (no /boot/firmware/config.txt: not a Raspberry Pi boot partition)"; return; }
  if [ ! -x "$gate" ]; then say "would    write the outputs' safe levels into $txt (gpio= lines)"; return; fi
  if ! "$gate" safe --boot-lines --config "$ROOT/etc/gate/gate.toml" > "$TMP/boot-lines" 2>"$TMP/boot-errors"; then
    say "warning  $txt: no gpio boot defaults, [gpio] in /etc/gate/gate.toml has errors: $(tail -n +2 "$TMP/boot-errors" | head -3 | tr -s ' \n' ' ')"
    return
  fi
  # [all]: config.txt may end inside a conditional section ([pi4], [cm5], ...), which would
  # otherwise limit the lines to that model. The lines take effect at the next boot.
  { printf '%s\n' "$BOOT_BEGIN" "[all]"; cat "$TMP/boot-lines"; printf '%s\n' "$BOOT_END"; } > "$TMP/block"
  boot_block "$ROOT$txt" "$TMP/block" > "$TMP/config.txt"
  if cmp -s "$TMP/config.txt" "$ROOT$txt"; then
    unchanged "$txt: the outputs' safe levels at boot ($(paste -sd' ' "$TMP/boot-lines"))"
  else
    run "write the outputs' safe levels into $txt: $(paste -sd' ' "$TMP/boot-lines") (from the next boot)" cp "$TMP/config.txt" "$ROOT$txt"
  fi
}

uninstall_boot_pins() {
  local txt
  txt=$(boot_config) || return 0
  if grep -qxF "$BOOT_BEGIN" "$ROOT$txt"; then
    boot_block "$ROOT$txt" > "$TMP/config.txt"
    run "remove gate's gpio boot defaults from $txt" cp "$TMP/config.txt" "$ROOT$txt"
  else
    unchanged "$txt (no gate block)"
  fi
}

install_unit() {
  local allow
  allow=$(broker_addresses)
  sed -e "s#/opt/gate/#$PREFIX/#g" "$SRC/systemd/gate.service" > "$TMP/gate.service"
  if [ -n "$allow" ]; then
    sed -i "s#^IPAddressAllow=localhost\$#&\n\# the brokers of /etc/gate/gate.toml (install-pi.sh)\nIPAddressAllow=$allow#" "$TMP/gate.service"
  fi
  if put "$TMP/gate.service" /etc/systemd/system/gate.service 0644 && systemd_running; then
    run "systemctl daemon-reload" systemctl daemon-reload
  fi
  local why=""
  if [ ! -x "$ROOT$PREFIX/current/venv/bin/gate" ]; then
    why="gate is not installed yet"
  elif ! config_valid; then
    why=$(tail -n +2 "$TMP/config-errors" | head -2 | tr -s ' \n' ' ' | sed 's/^ //; s/ $//' || true)
    why=${why:-see gate check-config}
  fi
  if [ -L "$ROOT/etc/systemd/system/multi-user.target.wants/gate.service" ]; then
    unchanged "gate.service enabled"
    [ -z "$why" ] || say "warning  /etc/gate/gate.toml does not pass gate check-config: the lane stops at start (exit 2): $why"
  elif [ -z "$why" ]; then
    run "enable gate.service (starts at boot; the config passes gate check-config)" systemctl ${ROOT:+--root="$ROOT"} enable gate.service
  elif [ $DRY = 1 ]; then
    say "would    enable gate.service once /etc/gate/gate.toml passes gate check-config"
  else
    say "skip     enabling gate.service: /etc/gate/gate.toml does not pass gate check-config yet: $why"
    say "         edit it, then rerun the installer (it enables and starts the lane)"
  fi
}

mark_running() {  # $PREFIX/running → the release just started (kept by prune_releases until the next start)
  [ $DRY = 1 ] || switch_link running "$(target_of current)"
}

start_lane() {
  [ $START = 1 ] || { say "skip     starting the lane (--no-start or --root)"; return; }
  systemd_running || { say "skip     starting the lane (systemd is not running here: a container or chroot)"; return; }
  if [ $DRY = 1 ]; then say "would    start (or restart) the lane if /etc/gate/gate.toml is valid"; return; fi
  if ! "$PREFIX/current/venv/bin/gate" check-config --config /etc/gate/gate.toml >/dev/null 2>"$TMP/config-errors"; then
    say "next     edit /etc/gate/gate.toml ($(head -c 300 "$TMP/config-errors" | tail -n +2 | head -3 | tr -s ' \n' ' '))"
    say "         then: gate check-config && sudo systemctl start gate && gate doctor"
    return
  fi
  if [ $CHANGED = 1 ] || ! systemctl is-active --quiet gate; then
    run "restart gate" systemctl restart gate
    mark_running
  else
    unchanged "gate is running"
  fi
  say "next     gate doctor   (and gate status for a live view)"
}

# --- uninstall ------------------------------------------------------------------------------

remove() {  # remove TARGET_PATH...
  local path
  for path in "$@"; do
    if [ -e "$ROOT$path" ] || [ -L "$ROOT$path" ]; then run "remove $path" rm -rf "$ROOT$path"; else unchanged "$path (not there)"; fi
  done
}

backup_ledger() {  # the ledger (every admission) and the config, kept unless --no-backup
  [ -d "$ROOT/var/lib/gate" ] || [ -d "$ROOT/etc/gate" ] || return 0
  if [ $BACKUP = 0 ]; then say "skip     backup of the ledger (--no-backup)"; return; fi
  local stamp parts=()
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  [ ! -d "$ROOT/var/lib/gate" ] || parts+=(var/lib/gate)
  [ ! -d "$ROOT/etc/gate" ] || parts+=(etc/gate)
  run "back up ${parts[*]} to /var/backups/gate/gate-$stamp.tar.gz (root only)" \
    backup_tar "$ROOT/var/backups/gate/gate-$stamp.tar.gz" "${parts[@]}" ||
    die "the backup failed: nothing was removed (--no-backup removes without one)"
}

backup_tar() {  # backup_tar ARCHIVE PART...: PARTs (relative to the root) into ARCHIVE, root only
  (umask 077 && mkdir -p "$(dirname "$1")" && tar -C "$ROOT/" -czf "$1" "${@:2}")
}

uninstall() {
  if systemd_running && systemctl is-active --quiet gate; then run "stop gate" systemctl stop gate; fi
  if [ -L "$ROOT/etc/systemd/system/multi-user.target.wants/gate.service" ]; then
    run "disable gate.service" systemctl ${ROOT:+--root="$ROOT"} disable gate.service
  fi
  uninstall_boot_pins
  remove /etc/systemd/system/gate.service /etc/udev/rules.d/99-gate.rules /etc/modprobe.d/gate-nfc.conf \
    /usr/local/bin/gate "$PREFIX"
  if systemd_running && [ $DRY = 0 ]; then systemctl daemon-reload; fi
  if [ $PURGE = 1 ]; then
    backup_ledger
    remove /etc/gate /var/lib/gate /usr/lib/sysusers.d/gate.conf  # (identity.key too: retire the lane in the roster)
    if grep -q '^gate:' "$ROOT/etc/passwd" 2>/dev/null; then run "remove user gate" userdel ${ROOT:+--prefix "$ROOT"} gate; fi
    local group
    for group in gate gate-status; do
      if grep -q "^$group:" "$ROOT/etc/group" 2>/dev/null; then run "remove group $group" groupdel ${ROOT:+--prefix "$ROOT"} "$group"; fi
    done
  else
    say "kept     /etc/gate (the config) and /var/lib/gate (the ledger: every admission) and the user gate;"
    say "         --uninstall --purge removes them too"
  fi
}

[ $DRY = 1 ] && say "dry run: nothing is changed${ROOT:+ (target root $ROOT)}"
if [ "$ACTION" = uninstall ]; then
  uninstall
elif [ "$ACTION" = rollback ]; then
  rollback
else
  check_os
  install_packages
  install_user
  install_software
  install_config
  install_identity
  secure_secrets
  install_udev
  install_boot_pins
  install_unit
  start_lane
fi
