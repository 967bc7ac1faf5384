# Sourced by scripts/test, scripts/demo and scripts/bench: a project-local virtualenv with gate
# installed, and the Debian packages a script needs (installed with apt-get when missing and we
# may: as root, or with password-less sudo). Set GATE_NO_APT=1 to never touch apt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${GATE_VENV:-$ROOT/.venv}

say() { printf '%s\n' "$*" >&2; }

need_debian_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo="none"; fi
  fi
  if [ "${GATE_NO_APT:-0}" = 1 ] || [ "$sudo" = none ] || ! command -v apt-get >/dev/null; then
    say "missing Debian packages: ${missing[*]} (install them: sudo apt-get install ${missing[*]})"
    return 1
  fi
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
}

# ensure_venv EXTRAS: create the virtualenv once, reinstall only when pyproject.toml changes.
ensure_venv() {
  local extras=${1:-}
  local python=${PYTHON:-python3}
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { say "gate needs Python 3.11 or newer"; exit 1; }
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    need_debian_packages python3-venv
  fi
  [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
  local stamp
  stamp="$VENV/.gate-installed-$(cat "$ROOT/pyproject.toml" "$ROOT/hw-sim/pyproject.toml" | sha256sum | cut -c1-16)-${extras:-base}"
  if [ ! -f "$stamp" ]; then
    say "installing gate into $VENV ..."
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}" >&2
    "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT/hw-sim" >&2  # the simulator: its own distribution
    touch "$stamp"
  fi
}
