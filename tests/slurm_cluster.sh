#!/usr/bin/env bash
# A throw-away one-node Slurm cluster on this machine, for the tests (run as root).
#   install  apt-get the Debian packages (only those missing), their daemons not enabled at boot
#   start    write a private slurm.conf, start munged (unless one runs), slurmctld and slurmd;
#            wait until the node is idle. Prints `export SLURM_CONF=...` for the callers.
#   stop     kill exactly the daemons `start` started (pid files) and remove the state
# Everything lives in $SLURM_CLUSTER_DIR (default /tmp/slurm-cluster): the config goes there and
# SLURM_CONF points to it, so a system-wide /etc/slurm is never touched. Every Slurm tool and
# daemon honours SLURM_CONF, and sbatch passes it on to the jobs in their environment.
set -euo pipefail
DIR=${SLURM_CLUSTER_DIR:-/tmp/slurm-cluster}
export SLURM_CONF=$DIR/slurm.conf
export PATH=$PATH:/usr/sbin:/sbin  # the daemons live there; not every root PATH has it
PACKAGES=(slurmctld slurmd slurm-client munge)

cmd_install() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # The packages' scripts enable their daemons at boot; the tests start and stop their own. Only
    # the ones installed here are disabled: a machine's own Slurm keeps its settings.
    for p in "${missing[@]}"; do
        [ "$p" = slurm-client ] && continue
        update-rc.d "$p" disable >/dev/null 2>&1 || true  # the rc links and, through systemctl, the units
    done
}

start_munge() {
    # One munged per machine serves everyone; reuse a running one rather than fight for its socket.
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    # Packages normally create the key; munged refuses a key that others can read.
    if [ ! -s /etc/munge/munge.key ]; then
        install -d -o munge -g munge -m 700 /etc/munge
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge  # no systemd here to create it
    # --force: a stale socket left by a killed munged would otherwise stop it.
    runuser -u munge -- munged --force
    cp /run/munge/munged.pid "$DIR/munged.pid"
}

write_conf() {
    local host cpus mem
    host=$(hostname)
    cpus=$(nproc)
    # What the node may promise the jobs: 90 % of the memory, in MB (more than it has = node DRAINED).
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    # linuxproc/none: no cgroups needed (containers seldom give a writable cgroup tree).
    # ReturnToService=2: a restarted slurmd comes back up on its own instead of staying DOWN.
    # batch_sched_delay=0: start batch jobs at once, not on the next 3-s tick.
    cat >"$SLURM_CONF" <<EOF
ClusterName=tests
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerParameters=batch_sched_delay=0
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

cmd_start() {
    [ ! -e "$DIR/slurmctld.pid" ] || { echo "slurm_cluster: already started in $DIR (run stop first)" >&2; exit 1; }
    # Ports 6817/6818 are fixed: a second cluster (or a real one) here would clash. Exit 3 = skip.
    if pgrep -x 'slurm(ctl)?d' >/dev/null; then
        echo "slurm_cluster: a Slurm daemon already runs here: $(pgrep -a -x 'slurm(ctl)?d' | tr '\n' ' ')" >&2
        exit 3
    fi
    mkdir -p "$DIR/ctld" "$DIR/d"
    write_conf
    start_munge
    slurmctld -i  # -i: ignore state a previous run may have left
    slurmd
    local state=""
    for _ in $(seq 1 60); do
        state=$(sinfo -h -N -o %t 2>/dev/null || true)
        [ "$state" = idle ] && { echo "export SLURM_CONF=$SLURM_CONF"; return; }
        sleep 0.5
    done
    echo "slurm_cluster: node not idle after 30 s (sinfo state: '${state:-no answer}'); logs:" >&2
    tail -n 20 "$DIR"/*.log >&2 || true
    exit 1
}

cmd_stop() {
    local name pid pids=()
    # Jobs still running would outlive slurmd in their slurmstepd; cancel them first.
    if [ -e "$DIR/slurmctld.pid" ] && [ -n "$(timeout 5 squeue -h 2>/dev/null)" ]; then
        timeout 5 scancel --partition=debug || true
        for _ in $(seq 1 50); do [ -z "$(timeout 5 squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
    fi
    for name in slurmd slurmctld munged; do
        pid=$(cat "$DIR/$name.pid" 2>/dev/null) && kill "$pid" 2>/dev/null && pids+=("$pid")
    done
    # Each takes 1-2 s to exit; wait, so that the next start finds the ports and the munge socket free.
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$DIR"
}

case "${1:-}" in
    install | start | stop) "cmd_$1" ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
