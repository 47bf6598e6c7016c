#!/usr/bin/env bash
# Install anamnesis on a Debian or Raspberry Pi OS host: the program, its user, its
# directories, the systemd units, the installation key. Run as root from a checkout:
#
#   sudo deploy/install.sh --role hub   --interface 192.168.1.10 --config my-piece.toml
#   sudo deploy/install.sh --role agent --interface 192.168.1.23 --key-from hub:/etc/anamnesis/installation.key
#
# Options:
#   --role hub|agent     what this host runs (both: run it twice)
#   --interface IP       this host's LAN address (zeroconf, OSC, RTP and the dashboard bind to it)
#   --config FILE        (hub) the installation config, copied to /etc/anamnesis/installation.toml
#   --key FILE           an existing installation key to copy (agents: the hub's); default:
#                        keep the one there, or (hub) create one with `anamnesis keygen`
#   --prefix DIR         install under DIR instead of / (a throwaway root for a rehearsal
#                        of the install, and the tests); implies --no-user --no-systemctl
#   --venv DIR           use this virtual environment instead of making one (it must hold anamnesis)
#   --no-user            do not create the system user `anamnesis`
#   --no-systemctl       write the units, do not run systemctl
#
# It never starts anything on its own: it prints the `systemctl enable --now ...` to run.
set -euo pipefail

role="" interface="" config="" key="" prefix="" venv="" make_user=1 run_systemctl=1
source_dir="$(cd "$(dirname "$0")/.." && pwd)"
die() { echo "install.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --role) role="${2:-}"; shift 2 ;;
    --interface) interface="${2:-}"; shift 2 ;;
    --config) config="${2:-}"; shift 2 ;;
    --key) key="${2:-}"; shift 2 ;;
    --prefix) prefix="${2:-}"; make_user=0; run_systemctl=0; shift 2 ;;
    --venv) venv="${2:-}"; shift 2 ;;
    --no-user) make_user=0; shift ;;
    --no-systemctl) run_systemctl=0; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$role" in hub|agent) ;; *) die "--role hub or --role agent" ;; esac
[ -n "$interface" ] || die "--interface IP (this host's LAN address) is needed"
python3 -c "import ipaddress,sys; ipaddress.IPv4Address(sys.argv[1])" "$interface" 2>/dev/null \
  || die "--interface must be an IPv4 address; got $interface"
[ "$role" = hub ] && [ -z "$config" ] && [ ! -f "$prefix/etc/anamnesis/installation.toml" ] \
  && die "--config FILE: the hub needs the installation config"
if [ -z "$prefix" ] && [ "$(id -u)" != 0 ]; then die "run as root (or rehearse with --prefix DIR)"; fi

opt="$prefix/opt/anamnesis" etc="$prefix/etc/anamnesis" state="$prefix/var/lib/anamnesis"
units="$prefix/etc/systemd/system"
mkdir -p "$opt" "$etc" "$state" "$units"

# The program: a virtual environment of its own (or the one given).
if [ -n "$venv" ]; then
  [ -x "$venv/bin/anamnesis" ] || die "--venv $venv holds no anamnesis (bin/anamnesis)"
  ln -sfn "$(cd "$venv" && pwd)" "$opt/.venv"
elif [ ! -x "$opt/.venv/bin/anamnesis" ]; then
  echo "installing anamnesis into $opt/.venv"
  python3 -m venv "$opt/.venv"
  "$opt/.venv/bin/pip" install --quiet "$source_dir"
fi
bin="$opt/.venv/bin/anamnesis"

# The user the services run as (audio group: the sound card).
owner=root
if [ "$make_user" = 1 ]; then
  groups=""; getent group audio >/dev/null && groups="--groups audio"
  # shellcheck disable=SC2086
  id -u anamnesis >/dev/null 2>&1 || useradd --system --home-dir /var/lib/anamnesis \
    --shell /usr/sbin/nologin $groups anamnesis
  owner=anamnesis
fi

# The key: copied, kept, or (hub) made. Mode 0600, the service user's.
if [ -n "$key" ]; then
  install -m 0600 "$key" "$etc/installation.key"
elif [ ! -f "$etc/installation.key" ]; then
  if [ "$role" = hub ]; then
    "$bin" keygen "$etc/installation.key" >/dev/null
  else
    echo "install.sh: no installation key yet: copy the hub's to $etc/installation.key (mode 0600)" >&2
  fi
fi
[ -f "$etc/installation.key" ] && chmod 0600 "$etc/installation.key" && chown "$owner" "$etc/installation.key"

# The units, with this host's paths and address.
render() {   # template -> unit
  sed -e "s#/opt/anamnesis/.venv/bin/anamnesis#$bin#g" \
      -e "s#/etc/anamnesis/#$etc/#g" -e "s#/var/lib/anamnesis/#$state/#g" \
      -e "s#192\.168\.1\.10#$interface#g" -e "s#^User=anamnesis#User=$owner#" "$1" > "$2"
}
if [ "$role" = hub ]; then
  [ -n "$config" ] && install -m 0644 "$config" "$etc/installation.toml"
  "$bin" doctor "$etc/installation.toml" --interface "$interface" --zeroconf-s 1 \
    --state-dir "$state/hub" --http "$interface:0" --osc off --oscquery off >/dev/null 2>&1 \
    || echo "install.sh: \`anamnesis doctor\` reports a problem; run it to see which" >&2
  render "$source_dir/deploy/systemd/anamnesis-hub.service" "$units/anamnesis-hub.service"
  next="systemctl enable --now anamnesis-hub"
else
  render "$source_dir/deploy/systemd/anamnesis-agent@.service" "$units/anamnesis-agent@.service"
  [ -f "$etc/agent-example.env" ] || cat > "$etc/agent-example.env" <<EOF
# Copy to agent-ID.env (e.g. agent-a3.env), then: systemctl enable --now anamnesis-agent@ID
AGENT_ARGS=--preset sine200 --in-channel 1 --out-channel 1 --interface $interface --installation anamnesis
EOF
  next="cp $etc/agent-example.env $etc/agent-a1.env && systemctl enable --now anamnesis-agent@a1"
fi
chown -R "$owner" "$state"
if [ "$run_systemctl" = 1 ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
fi
echo "installed the $role of anamnesis under ${prefix:-/}; next: $next"
