#!/usr/bin/env bash
# A throwaway one-node SLURM cluster on this machine, from Debian's packages (slurm-wlm, munge), for trying the
# study's job array and for the tests: munged, slurmctld and slurmd, all with their files in one folder.
# Usage: scripts/slurm/cluster.sh start | stop | env
#   start  writes the folder's munge key and slurm.conf and starts the three daemons (as root)
#   env    the `export SLURM_CONF=...` line every sbatch/squeue/scancel needs: eval "$(scripts/slurm/cluster.sh env)"
# Folder: SLURM_DIR (default .slurm/ at the repository root, ignored by git). Ports: SLURMCTLD_PORT (default 56817)
# and SLURMD_PORT (default 56818). The node offers this machine's cores and memory; no cgroups, no accounting.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIR="${SLURM_DIR:-$ROOT/.slurm}"
CTLD_PORT="${SLURMCTLD_PORT:-56817}"
SLURMD_PORT="${SLURMD_PORT:-56818}"
NODE="$(hostname -s)"

die() { echo "slurm cluster: $*" >&2; exit 1; }

write_config() {
  local cpus memory
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  cat > "$DIR/slurm.conf" <<CONF
ClusterName=mnist-study
SlurmctldHost=$NODE
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
# A cancelled or timed-out task gets SIGTERM, then SIGKILL this many seconds later.
KillWait=10
NodeName=$NODE CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
}

start() {
  command -v slurmctld >/dev/null || die "SLURM is not installed; fix: apt-get install slurm-wlm munge"
  [ "$(id -u)" = 0 ] || die "run as root (slurmd starts jobs as their users)"
  mkdir -p "$DIR/state" "$DIR/spool"
  if [ ! -f "$DIR/munge.key" ]; then
    (umask 077 && mungekey --create --keyfile="$DIR/munge.key" >/dev/null)
  fi
  write_config
  if ! [ -f "$DIR/munged.pid" ] || ! kill -0 "$(cat "$DIR/munged.pid")" 2>/dev/null; then
    munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" --pid-file="$DIR/munged.pid" \
      --log-file="$DIR/munged.log" --seed-file="$DIR/munged.seed" || die "munged did not start; see $DIR/munged.log"
  fi
  slurmctld -f "$DIR/slurm.conf" || die "slurmctld did not start; see $DIR/slurmctld.log"
  slurmd -f "$DIR/slurm.conf" -N "$NODE" || die "slurmd did not start; see $DIR/slurmd.log"
  for _ in $(seq 1 60); do
    if SLURM_CONF="$DIR/slurm.conf" sinfo -h -n "$NODE" -o %T 2>/dev/null | grep -q -E '^(idle|mixed|allocated)'; then
      echo "one-node SLURM cluster up (node $NODE, partition debug); for sbatch, squeue and scancel:"
      echo "  eval \"\$(scripts/slurm/cluster.sh env)\""
      return
    fi
    sleep 1
  done
  die "the node never became idle; see $DIR/slurmctld.log and $DIR/slurmd.log"
}

stop() {
  for daemon in slurmd slurmctld munged; do
    if [ -f "$DIR/$daemon.pid" ]; then
      local pid; pid=$(cat "$DIR/$daemon.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      rm -f "$DIR/$daemon.pid"
    fi
  done
  echo "slurm cluster stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$DIR/slurm.conf" ;;
  *) die "usage: scripts/slurm/cluster.sh start | stop | env" ;;
esac
