#!/usr/bin/env bash
# `make slurm-up`: a real single-node Slurm on this machine (Debian's slurm-wlm + munge, one node,
# linuxproc process tracking, no cgroups), for the `slurm` tests and for trying the cluster path.
# Needs root. `make slurm-down` stops everything this started (by the pids in its pid files).
set -euo pipefail
STATE=${PIREC_SLURM_STATE:-/var/lib/pirec-slurm}
CONF=/etc/slurm/slurm.conf
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "error: make slurm-up needs root (it installs packages and starts system daemons)" >&2
    exit 2
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "installing slurm-wlm and munge (apt-get)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge
fi
if timeout 10 scontrol ping 2>/dev/null | grep -q UP; then
    echo "slurm is already up:"
    sinfo
    exit 0
fi

mkdir -p "$STATE/slurmctld" "$STATE/slurmd" /etc/slurm
# the node line as slurmd sees this machine, so the controller does not drain it
NODE=$(slurmd -C | head -n 1)
HOST=$(hostname -s)
sed -e "s|@HOST@|$HOST|" -e "s|@STATE@|$STATE|g" -e "s|@NODE@|$NODE State=UNKNOWN|" \
    "$HERE/slurm.conf.in" > "$CONF"
echo "wrote $CONF ($NODE)"

# munge: the authentication daemon, as its own user
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
[ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
if ! (munge -n 2>/dev/null | unmunge >/dev/null 2>&1); then
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
munge -n | unmunge >/dev/null || { echo "error: munged did not start" >&2; exit 1; }

/usr/sbin/slurmctld
/usr/sbin/slurmd
for _ in $(seq 60); do
    state=$(timeout 5 sinfo -h -N -o %T 2>/dev/null | head -n 1 || true)
    case "$state" in
        idle*|mix*|alloc*) break ;;
        down*|drain*) timeout 5 scontrol update nodename="$HOST" state=resume || true ;;
    esac
    sleep 1
done
case "$state" in
    idle*|mix*|alloc*) ;;
    *) echo "error: the node did not become idle (state '$state'); see $STATE/slurmd.log and $STATE/slurmctld.log" >&2
       exit 1 ;;
esac
echo "slurm is up:"
sinfo
