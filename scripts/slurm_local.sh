#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests and trials of `--executor slurm`.
#   scripts/slurm_local.sh start DIR   installs slurm-wlm and munge when missing (Debian, as
#                                      root), writes DIR/slurm.conf, starts munged, slurmctld
#                                      and slurmd with every path under DIR, waits until the
#                                      node is idle, and prints `export SLURM_CONF=...`
#   scripts/slurm_local.sh stop DIR    stops the three daemons started for DIR (and only them)
# No cgroups (proctrack/linuxproc, task/none), SlurmUser=root, CPUs = the cores online; no accounting
# database, but a job-completion log (DIR/jobcomp.txt) that `sacct --completion` reads. Exits non-zero
# with a message saying why when the cluster cannot start.
set -euo pipefail
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf

stop() {
  for p in slurmd slurmctld munged; do
    if [ -f "$dir/$p.pid" ]; then
      pid=$(cat "$dir/$p.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$p.pid"
    fi
  done
}

fail() { echo "slurm_local: $*" >&2; [ -f "$dir/slurmctld.log" ] && tail -5 "$dir/slurmctld.log" >&2; stop; exit 1; }

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" = 0 ] || fail "slurm-wlm and munge are not installed, and installing them needs root"
  install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >>"$dir/apt.log" 2>&1; }
  install || { apt-get update -q >>"$dir/apt.log" 2>&1 && install; } \
    || fail "apt-get install slurm-wlm munge failed (see $dir/apt.log)"
fi
[ "$(id -u)" = 0 ] || fail "this one-node cluster runs its daemons as root (SlurmUser=root)"
host=$(hostname -s)
mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
chmod 700 "$dir/munge"

# munge with its own key and socket: nothing of the system's is touched.
[ -f "$dir/munge/munge.key" ] || { dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$dir/munge/munge.key"; }
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed" \
  || fail "munged did not start (see $dir/munged.log)"

# The cores online; not `nproc`, which answers OMP_NUM_THREADS when it is set (the tests set 1).
cpus=$(getconf _NPROCESSORS_ONLN)
cat >"$conf" <<CONF
ClusterName=simreg-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=$((6817 + RANDOM % 1000 * 2))
SlurmdPort=$((6818 + RANDOM % 1000 * 2))
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF=$conf
slurmctld -f "$conf" || fail "slurmctld did not start (see $dir/slurmctld.log)"
slurmd -f "$conf" || fail "slurmd did not start (see $dir/slurmd.log)"
for _ in $(seq 100); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "export SLURM_CONF=$conf"
    exit 0
  fi
  sleep 0.2
done
fail "the node did not become idle within 20 s ($(sinfo -h -o %t 2>&1 | head -1))"
