#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, for the real-SLURM integration test.
#
#   tests/slurm/cluster.sh start DIR   bring up munged, slurmctld and slurmd with all their
#                                      state under DIR; prints DIR/slurm.conf
#   tests/slurm/cluster.sh stop DIR    stop them by their pid files (safe to call twice)
#
# Needs Debian's slurm-wlm and munge (`apt-get install -y --no-install-recommends slurm-wlm
# munge`) and root. While the cluster is up, /etc/slurm/slurm.conf links to DIR/slurm.conf:
# the SLURM executor plugin strips SLURM_CONF before its nested srun, which then reads only
# the default path. `stop` removes the link again if it is ours.
set -euo pipefail

cmd=${1:?usage: cluster.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: cluster.sh start|stop DIR}")
conf="$dir/slurm.conf"
link=/etc/slurm/slurm.conf

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2
  shift 2
  for _ in $(seq $((limit * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "cluster.sh: timed out waiting for $what" >&2
  return 1
}

stop_pid() {  # stop_pid PIDFILE: SIGTERM, then SIGKILL after 10 s
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "$cmd" in
start)
  mkdir -p "$dir"/{munge,state,spool,log}
  chmod 700 "$dir/munge"
  mungekey --create --force --keyfile="$dir/munge/munge.key"
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munge.seed"
  wait_for 10 munged test -S "$dir/munge/munge.socket"

  cpus=$(nproc)
  mem_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
  real_mb=$((mem_kb / 1024 * 9 / 10))
  cat >"$conf" <<CONF
ClusterName=facecluster-ci
SlurmctldHost=localhost
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
DefMemPerCPU=1000
MinJobAge=300
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  # one GPU in name only (no device file): jobs that ask for --gpus=1 are scheduled on it,
  # one at a time, as on a GPU node; the job itself sees no CUDA device and runs on the CPU
  echo "NodeName=localhost Name=gpu File=/dev/null Count=1" >"$dir/gres.conf"
  mkdir -p /etc/slurm
  # a link left by a run that was killed points to a deleted folder: replace it
  if [ -L "$link" ] && [ ! -e "$link" ]; then rm -f "$link"; fi
  if [ -e "$link" ] && [ "$(readlink "$link" || true)" != "$conf" ]; then
    echo "cluster.sh: $link exists and is not ours; refusing to replace it" >&2
    exit 1
  fi
  ln -sfn "$conf" "$link"
  export SLURM_CONF=$conf
  slurmctld -f "$conf" -c -i
  wait_for 20 "slurmctld (scontrol ping)" scontrol ping
  slurmd -f "$conf" -N localhost
  wait_for 30 "node idle" bash -c "sinfo -h -N -o %T | grep -qx idle"
  echo "$conf"
  ;;
stop)
  stop_pid "$dir/slurmd.pid"
  stop_pid "$dir/slurmctld.pid"
  stop_pid "$dir/munge/munged.pid"
  if [ "$(readlink "$link" 2>/dev/null || true)" = "$conf" ]; then rm -f "$link"; fi
  ;;
*)
  echo "usage: cluster.sh start|stop DIR" >&2
  exit 2
  ;;
esac
