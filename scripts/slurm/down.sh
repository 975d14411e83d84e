#!/usr/bin/env bash
# `make slurm-down`: cancel every job of the local Slurm and stop the daemons `make slurm-up`
# started, by the pids in their pid files. Safe to run when nothing is up.
set -uo pipefail
STATE=${PIREC_SLURM_STATE:-/var/lib/pirec-slurm}

if command -v scancel >/dev/null && timeout 10 scontrol ping 2>/dev/null | grep -q UP; then
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        echo "cancelling jobs: $(echo $jobs)"
        # shellcheck disable=SC2086
        timeout 20 scancel $jobs || true
        for _ in $(seq 30); do
            [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 1
        done
    fi
fi

stop() {  # stop <name> <pid file>: SIGTERM, then SIGKILL after 15 s
    local name=$1 file=$2 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        echo "stopping $name ($pid)"
        kill "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$file"
}
stop slurmd "$STATE/slurmd.pid"
stop slurmctld "$STATE/slurmctld.pid"
stop munged /run/munge/munged.pid
echo "slurm is down"
