#!/usr/bin/env bash
# Install gate on a Raspberry Pi (Raspberry Pi OS Bookworm or later) as a systemd service.
# Run it from a checkout, as root:
#
#   sudo ./scripts/install-pi.sh              install, or update to this checkout
#   sudo ./scripts/install-pi.sh --dry-run    print what it would do; change nothing
#   sudo ./scripts/install-pi.sh --uninstall  remove the service; keep /etc/gate and the ledger
#   sudo ./scripts/install-pi.sh --uninstall --purge   ... and the config, the ledger and the user
#
# Options:
#   --scanner VID:PID   a barcode scanner the shipped udev rules do not know (see `lsusb`), in
#                       serial (/dev/gate-scanner) or keyboard mode (/dev/gate-scanner-hid)
#   --technician USER   let USER read the lane (gate status, gate doctor) without sudo
#                       (default: the user who ran sudo)
#   --no-apt            do not install Debian packages
#   --no-start          install and enable, but do not start or restart the lane
#   --root DIR          install into DIR as if it were / (tests, staging): no apt, no udevadm,
#                       nothing started; the virtualenv is built for DIR's paths as seen from here
#
# The outputs' safe levels (relays released, red on) go into the firmware's config.txt as gpio=
# lines, in a block marked "gate" that a later run updates and --uninstall removes: they hold
# the pins from early boot until the lane drives them. Rerun after changing [gpio].
#
# Idempotent: a second run reports every step as unchanged. It never overwrites
# /etc/gate/gate.toml. Afterwards: edit /etc/gate/gate.toml, `gate check-config`,
# `sudo systemctl start gate`, `gate doctor` (docs/technicians.md).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
DRY=0
ACTION=install
PURGE=0
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
    --no-apt) APT=0 ;;
    --no-start) START=0 ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$(cd "$2" && pwd) || die "no directory $2"; shift ;;
    --scanner)
      [ $# -ge 2 ] || die "--scanner needs VID:PID"
      [[ $2 =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$ ]] || die "--scanner: VID:PID as lsusb prints it (e.g. 0c2e:0b61), got $2"
      SCANNER=${2,,}; shift ;;
    --technician) [ $# -ge 2 ] || die "--technician needs a user name"; TECHNICIAN=$2; shift ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (--help lists them)" ;;
  esac
  shift
done
[ "$ROOT" = / ] && ROOT=""
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
  run "apt-get install ${missing[*]}" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing[*]}"
}

install_user() {
  put "$SRC/systemd/gate.sysusers" /usr/lib/sysusers.d/gate.conf 0644 || true
  if grep -q '^gate:' "$ROOT/etc/passwd" 2>/dev/null && grep -q '^gate:' "$ROOT/etc/group" 2>/dev/null; then
    unchanged "user gate"
  else
    run "create user gate (systemd-sysusers)" systemd-sysusers ${ROOT:+--root="$ROOT"} "$ROOT/usr/lib/sysusers.d/gate.conf"
  fi
  local group
  for group in gpio dialout video; do  # sysusers adds these memberships; say it for the record
    if grep -Eq "^$group:[^:]*:[^:]*:(.*,)?gate(,|$)" "$ROOT/etc/group" 2>/dev/null; then unchanged "gate is in group $group"
    elif [ $DRY = 1 ]; then say "would    add gate to group $group"; fi
  done
  if [ -n "$TECHNICIAN" ] && [ "$TECHNICIAN" != root ] && [ -z "$ROOT" ]; then
    if id -nG "$TECHNICIAN" 2>/dev/null | tr ' ' '\n' | grep -qx gate; then unchanged "technician $TECHNICIAN is in group gate"
    elif id "$TECHNICIAN" >/dev/null 2>&1; then run "add technician $TECHNICIAN to group gate (log in again to use it)" usermod -a -G gate "$TECHNICIAN"
    else say "skip     technician $TECHNICIAN: no such user"; fi
  fi
}

install_software() {
  # The checkout's files (git's list when it is a repository), as one archive: its hash tells
  # whether anything changed since the last run.
  local archive=$TMP/source.tar
  if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$SRC" ls-files -z --cached --others --exclude-standard | tar -C "$SRC" --null -T - --sort=name \
      --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$archive"
  else
    tar -C "$SRC" --exclude=.venv --exclude=.git --exclude='__pycache__' --sort=name --mtime=@0 --owner=0 \
      --group=0 --numeric-owner -cf "$archive" .
  fi
  local digest stamp=$ROOT$PREFIX/src/.gate-source-sha256 venv=$ROOT$PREFIX/venv
  digest=$(sha256sum "$archive" | cut -c1-64)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    unchanged "$PREFIX/src (this checkout, ${digest:0:12})"
  else
    run "copy this checkout to $PREFIX/src" sh -c "rm -rf '$ROOT$PREFIX/src' && mkdir -p '$ROOT$PREFIX/src' \
      && tar -C '$ROOT$PREFIX/src' -xf '$archive' && printf '%s' '$digest' > '$stamp.new'"
  fi
  [ -x "$PYTHON" ] || die "$PYTHON not found (GATE_PYTHON= names another; it must be 3.11 or newer)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than 3.11"
  if [ -x "$venv/bin/python" ]; then
    unchanged "$PREFIX/venv"
  else
    run "create $PREFIX/venv (sees the system's picamera2 and lgpio)" "$PYTHON" -m venv --system-site-packages "$venv"
  fi
  if [ -f "$venv/.gate-installed" ] && [ "$(cat "$venv/.gate-installed")" = "$digest" ]; then
    unchanged "gate in $PREFIX/venv"
  else
    run "install gate and its Python packages into $PREFIX/venv (pip)" sh -c \
      "'$venv/bin/python' -m pip install -q --disable-pip-version-check '$ROOT$PREFIX/src' && printf '%s' '$digest' > '$venv/.gate-installed'"
  fi
  [ $DRY = 1 ] || { [ ! -f "$stamp.new" ] || mv "$stamp.new" "$stamp"; }
  if [ "$(readlink "$ROOT/usr/local/bin/gate" 2>/dev/null)" = "$PREFIX/venv/bin/gate" ]; then
    unchanged "/usr/local/bin/gate"
  else
    run "link /usr/local/bin/gate → $PREFIX/venv/bin/gate" sh -c "mkdir -p '$ROOT/usr/local/bin' && ln -sfn '$PREFIX/venv/bin/gate' '$ROOT/usr/local/bin/gate'"
  fi
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

install_identity() {
  # The lane's own Ed25519 key: it signs every ledger record this lane puts on the venue bus.
  # 32 random bytes (an Ed25519 seed), as `gate keygen --out` writes it; the gate user's alone.
  # Never replaced: a new key means a new roster entry (`gate identity` prints it).
  local key=$ROOT/etc/gate/identity.key
  if [ -e "$key" ]; then unchanged "/etc/gate/identity.key (kept: the venue's roster names its public half)"; return; fi
  run "make /etc/gate/identity.key (this lane's record-signing key, mode 0600, user gate)" sh -c \
    "umask 077 && head -c 32 /dev/urandom | base64 > '$TMP/identity.key' \
     && install -m 0600 -o '$(uid_of gate)' -g '$(gid_of gate)' '$TMP/identity.key' '$key'"
}

install_udev() {
  cp "$SRC/systemd/99-gate.rules" "$TMP/99-gate.rules"
  if [ -n "$SCANNER" ]; then
    printf '# added by install-pi.sh --scanner %s\nSUBSYSTEM=="tty", ATTRS{idVendor}=="%s", ATTRS{idProduct}=="%s", SYMLINK+="gate-scanner", GROUP="dialout", MODE="0660"\n' \
      "$SCANNER" "${SCANNER%%:*}" "${SCANNER##*:}" >> "$TMP/99-gate.rules"
    printf 'SUBSYSTEM=="input", KERNEL=="event*", ENV{ID_INPUT_KEYBOARD}=="1", ATTRS{idVendor}=="%s", ATTRS{idProduct}=="%s", SYMLINK+="gate-scanner-hid", GROUP="gate", MODE="0660"\n' \
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
  local txt gate=$ROOT$PREFIX/venv/bin/gate
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
  sed -e "s#/opt/gate/#$PREFIX/#g" "$SRC/systemd/gate.service" > "$TMP/gate.service"
  if put "$TMP/gate.service" /etc/systemd/system/gate.service 0644 && systemd_running; then
    run "systemctl daemon-reload" systemctl daemon-reload
  fi
  if [ -L "$ROOT/etc/systemd/system/multi-user.target.wants/gate.service" ]; then
    unchanged "gate.service enabled"
  else
    run "enable gate.service (starts at boot)" systemctl ${ROOT:+--root="$ROOT"} enable gate.service
  fi
}

start_lane() {
  [ $START = 1 ] || { say "skip     starting the lane (--no-start or --root)"; return; }
  systemd_running || { say "skip     starting the lane (systemd is not running here: a container or chroot)"; return; }
  if [ $DRY = 1 ]; then say "would    start (or restart) the lane if /etc/gate/gate.toml is valid"; return; fi
  if ! "$PREFIX/venv/bin/gate" check-config --config /etc/gate/gate.toml >/dev/null 2>"$TMP/config-errors"; then
    say "next     edit /etc/gate/gate.toml ($(head -c 300 "$TMP/config-errors" | tail -n +2 | head -3 | tr -s ' \n' ' '))"
    say "         then: gate check-config && sudo systemctl start gate && gate doctor"
    return
  fi
  if [ $CHANGED = 1 ] || ! systemctl is-active --quiet gate; then
    run "restart gate" systemctl restart gate
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
    remove /etc/gate /var/lib/gate /usr/lib/sysusers.d/gate.conf  # (identity.key too: retire the lane in the roster)
    if grep -q '^gate:' "$ROOT/etc/passwd" 2>/dev/null; then run "remove user gate" userdel ${ROOT:+--prefix "$ROOT"} gate; fi
    if grep -q '^gate:' "$ROOT/etc/group" 2>/dev/null; then run "remove group gate" groupdel ${ROOT:+--prefix "$ROOT"} gate; fi
  else
    say "kept     /etc/gate (the config) and /var/lib/gate (the ledger: every admission) and the user gate;"
    say "         --uninstall --purge removes them too"
  fi
}

[ $DRY = 1 ] && say "dry run: nothing is changed${ROOT:+ (target root $ROOT)}"
if [ "$ACTION" = uninstall ]; then
  uninstall
else
  check_os
  install_packages
  install_user
  install_software
  install_config
  install_identity
  install_udev
  install_boot_pins
  install_unit
  start_lane
fi
