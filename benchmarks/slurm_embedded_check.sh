#!/usr/bin/env bash
# Manual check: FireWorks' embedded LaunchPad (MONGOMOCK_SERVERSTORE_FILE, no MongoDB) driven
# through a real single-node SLURM with qlaunch, as issue 12 item 7 reproduced it.
#
# Needs root (it starts munged, slurmctld and slurmd), Debian packages slurm-wlm, munge,
# libpmix-dev (for `srun --mpi=pmix`), quantum-espresso, and the project's .venv. It writes only
# under WORKDIR (SLURM config, state and spool, LaunchPad, store, job folders) plus munge's
# /run/munge, and stops every daemon it started (by PID) when it exits.
#
#   benchmarks/slurm_embedded_check.sh [WORKDIR]  2>&1 | tee benchmarks/output/slurm_embedded_check.txt
#
# Phases (each prints what it measured):
#   A  plain FireWorks `rlaunch`/`qlaunch` on the embedded LaunchPad are refused, nothing written
#   B  fcc Al EPC (test preset, one Firework per q-point) by `sc-inverse qlaunch` as SLURM jobs
#      (2 at a time on 2 CPUs); Ctrl-C on qlaunch mid-run; a second qlaunch finishes the QE jobs
#      and stops by itself, a CPU worker the flow's last job (no category); every Firework
#      launched once; one Al row in `query`
#   C  MPI launchers inside a SLURM job: `srun --mpi=pmix` and `mpirun -np 2` running pw.x
#   D  the inverse-design flow in the README's order: `sc-inverse rlaunch --until-idle` (jobs of
#      no category) and `sc-inverse qlaunch --until-idle -r` (QE jobs, reservation mode: one
#      SLURM job per Firework) started together
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV_BIN=${VENV_BIN:-$REPO/.venv/bin}
[ -x "$VENV_BIN/sc-inverse" ] || VENV_BIN=$(dirname "$(command -v sc-inverse)")
WORK=$(realpath -m "${1:-$(mktemp -d /tmp/slurm_embedded.XXXX)}")
mkdir -p "$WORK"
cd "$WORK"
PIDS=()
HOST=$(hostname -s)
NCPU=$(nproc)

stop_daemons() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped daemons: ${PIDS[*]}"
}
trap stop_daemons EXIT

say() { printf '\n== %s\n' "$*"; }
states() {  # Firework states of the LaunchPad file, counted
  "$VENV_BIN/python" - "$MONGOMOCK_SERVERSTORE_FILE" <<'PY'
import collections, sys, bson.json_util
db = bson.json_util.loads(open(sys.argv[1]).read()).get("sc_inverse", {})
fws = [d for _, d in db.get("fireworks", {}).get("documents", [])]
launches = [d for _, d in db.get("launches", {}).get("documents", [])]
per_fw = collections.Counter(la["fw_id"] for la in launches)
print(f"fireworks {dict(collections.Counter(f['state'] for f in fws))}; launches {len(launches)}"
      f" (fireworks launched more than once: {sorted(i for i, n in per_fw.items() if n > 1)})")
PY
}
completed() {
  "$VENV_BIN/python" -c "import sys, bson.json_util; db = bson.json_util.loads(open(sys.argv[1]).read()).get('sc_inverse', {}); print(sum(d['state'] == 'COMPLETED' for _, d in db.get('fireworks', {}).get('documents', [])))" "$MONGOMOCK_SERVERSTORE_FILE"
}

# ---------------------------------------------------------------------------------------------
say "SLURM $(slurmctld -V | cut -d' ' -f2) on $HOST ($NCPU CPUs), work dir $WORK"
mkdir -p /run/munge slurm/state slurm/spool && chown munge:munge /run/munge
setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
  --pid-file=/run/munge/check.pid --seed-file=/run/munge/check.seed > slurm/munged.log 2>&1 &
PIDS+=($!)
cat > slurm/slurm.conf <<EOF
ClusterName=check
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/slurm/state
SlurmdSpoolDir=$WORK/slurm/spool
SlurmctldPidFile=$WORK/slurm/slurmctld.pid
SlurmdPidFile=$WORK/slurm/slurmd.pid
SlurmctldLogFile=$WORK/slurm/slurmctld.log
SlurmdLogFile=$WORK/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
NodeName=$HOST CPUs=$NCPU State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$WORK/slurm/slurm.conf
sleep 1
/usr/sbin/slurmctld -D -i -f "$SLURM_CONF" > slurm/slurmctld.out 2>&1 &
PIDS+=($!)
sleep 2
/usr/sbin/slurmd -D -f "$SLURM_CONF" > slurm/slurmd.out 2>&1 &
PIDS+=($!)
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo

# ---------------------------------------------------------------------------------------------
export PATH=$VENV_BIN:$PATH OMP_NUM_THREADS=1
export MONGOMOCK_SERVERSTORE_FILE=$WORK/fw_state.json SC_INVERSE_DATA_DIR=$WORK/data
echo '{}' > "$MONGOMOCK_SERVERSTORE_FILE"
cat > my_launchpad.yaml <<EOF
host: localhost
port: 27017
name: sc_inverse
EOF
cat > my_fworker.yaml <<EOF
name: qe_worker
category: qe
query: '{}'
EOF
cat > my_fworker_cpu.yaml <<EOF
name: cpu_worker
category: __none__
query: '{}'
EOF
write_qadapter() {  # the queue adapter of the current LaunchPad file and store
  cat > my_qadapter.yaml <<EOF
_fw_name: "{{sc_inverse.execution.ScInverseQueueAdapter}}"
_fw_q_type: SLURM
rocket_launch: sc-inverse rlaunch -l $WORK/my_launchpad.yaml -w $WORK/my_fworker.yaml singleshot
nodes: 1
ntasks: 1
walltime: "01:00:00"
job_name: sc_inverse_qe
pre_rocket: |
  # FireWorks' SLURM template runs \`bash -l\`: a login shell resets PATH, so it is set here
  export PATH=$VENV_BIN:/usr/bin:/bin
  export MONGOMOCK_SERVERSTORE_FILE=$MONGOMOCK_SERVERSTORE_FILE
  export SC_INVERSE_DATA_DIR=$SC_INVERSE_DATA_DIR
  export OMP_NUM_THREADS=1 ${PYTHONPATH:+PYTHONPATH=$PYTHONPATH}
post_rocket: null
EOF
}
write_qadapter
mkdir -p launches
sc-inverse submit epc "$REPO/examples/al_fcc/Al.pwi" --preset test --fanout --launchpad my_launchpad.yaml

say "A: plain FireWorks scripts on the embedded LaunchPad"
before=$(md5sum < "$MONGOMOCK_SERVERSTORE_FILE")
set +e
(cd launches && qlaunch -l "$WORK/my_launchpad.yaml" -w "$WORK/my_fworker.yaml" -q "$WORK/my_qadapter.yaml" rapidfire -m 2 > ../plain_qlaunch.log 2>&1)
echo "plain qlaunch exit status $?: $(grep sc-inverse plain_qlaunch.log)"
(cd launches && rlaunch -l "$WORK/my_launchpad.yaml" -w "$WORK/my_fworker.yaml" singleshot > ../plain_rlaunch.log 2>&1)
echo "plain rlaunch exit status $?: $(grep sc-inverse plain_rlaunch.log)"
set -e
[ "$before" = "$(md5sum < "$MONGOMOCK_SERVERSTORE_FILE")" ] && echo "LaunchPad file unchanged; SLURM jobs submitted: $(squeue -h | wc -l)"

say "B: Al EPC (test preset, --fanout) as SLURM jobs through sc-inverse qlaunch (-m 2)"
t0=$(date +%s)
(cd launches && exec sc-inverse qlaunch -l "$WORK/my_launchpad.yaml" -w "$WORK/my_fworker.yaml" -q "$WORK/my_qadapter.yaml" rapidfire -m 2 --sleep 5 > ../qlaunch1.log 2>&1) &
QL=$!
until [ "$(completed)" -ge 3 ]; do sleep 2; done
echo "before Ctrl-C on qlaunch (t=$(( $(date +%s) - t0 )) s): $(states)"
kill -INT "$QL"; wait "$QL" || true
sleep 1
echo "after Ctrl-C:                    $(states)  (SLURM jobs still queued/running: $(squeue -h | wc -l))"
(cd launches && sc-inverse qlaunch -l "$WORK/my_launchpad.yaml" -w "$WORK/my_fworker.yaml" -q "$WORK/my_qadapter.yaml" rapidfire -m 2 --sleep 5 > ../qlaunch2.log 2>&1)
t_stop=$(date +%s)
for _ in $(seq 120); do [ "$(squeue -h | wc -l)" -eq 0 ] && break; sleep 1; done
echo "second qlaunch stopped by itself at t=$(( t_stop - t0 )) s: $(states)"
(cd launches && sc-inverse rlaunch -l "$WORK/my_launchpad.yaml" -w "$WORK/my_fworker_cpu.yaml" rapidfire > ../rlaunch_b.log 2>&1)
echo "after a CPU worker ran the flow's last job (build_collections, no category): $(states)"
jobs_total=$(cat qlaunch1.log qlaunch2.log | grep -c "Job submission was successful" || true)
empty=$(grep -l "No FireWorks are ready to run and match query" launches/block_*/launcher_*/*.out 2>/dev/null | wc -l || true)
echo "SLURM jobs submitted: $jobs_total, of which found nothing to run: $empty"
sc-inverse build > /dev/null 2>&1
sc-inverse query --format json | "$VENV_BIN/python" -c "import json, sys; rows = json.load(sys.stdin); print('query rows:', [(r['formula'], round(r['lambda'], 3), round(r['tc_K'], 2)) for r in rows])"
"$VENV_BIN/python" - <<'PY'
from sc_inverse.stores import get_job_store
with get_job_store() as store:
    keys = [(d["uuid"], d["index"]) for d in store.query({}, properties=["uuid", "index"])]
print(f"job outputs stored: {len(keys)}, distinct (uuid, index): {len(set(keys))}")
PY

say "C: MPI launchers inside a SLURM job (pw.x scf of fcc Al)"
mkdir -p mpi && cd mpi
# the structure file only lacks what a metal needs for pw.x on its own
sed -e "s/ecutwfc = 15.0/ecutwfc = 15.0, occupations = 'smearing', smearing = 'mv', degauss = 0.05/" \
  "$REPO/examples/al_fcc/Al.pwi" > al.pwi
cat > mpi.sbatch <<'EOF'
#!/bin/bash
#SBATCH --ntasks=2
#SBATCH --output=mpi-%j.out
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export ESPRESSO_PSEUDO=/usr/share/espresso/pseudo
for launcher in "srun --mpi=pmix" "srun --mpi=none" "mpirun -np 2"; do
  start=$(date +%s.%N)
  if $launcher pw.x -in al.pwi > "pw.$(echo $launcher | tr ' =' '__').out" 2>&1 &&
     grep -q "JOB DONE" "pw.$(echo $launcher | tr ' =' '__').out"; then
    procs=$(grep -m1 -o "running on *[0-9]*" "pw.$(echo $launcher | tr ' =' '__').out" | grep -o "[0-9]*$")
    echo "$launcher: pw.x OK, MPI processes per run: $procs, $(echo "$(date +%s.%N) - $start" | bc) s"
  else
    echo "$launcher: FAILED ($(grep -m1 -i "error\|abort" "pw.$(echo $launcher | tr ' =' '__').out" | head -c 160))"
  fi
done
EOF
jid=$(sbatch --parsable mpi.sbatch)
for _ in $(seq 300); do squeue -h -j "$jid" 2>/dev/null | grep -q . || break; sleep 1; done
cat "mpi-$jid.out"
cd "$WORK"

say "D: inverse-design flow, README order: rlaunch --until-idle (no category) + qlaunch --until-idle -r (qe)"
export MONGOMOCK_SERVERSTORE_FILE=$WORK/fw_state_d.json SC_INVERSE_DATA_DIR=$WORK/data_d
echo '{}' > "$MONGOMOCK_SERVERSTORE_FILE"
write_qadapter
mkdir -p pseudo_d launches_d && ln -sf /usr/share/espresso/pseudo/Al.pz-vbc.UPF pseudo_d/
echo '[{"key": "tc_K", "comparison": ">", "threshold": -100.0}, {"predictor": "mlip", "key": "e_form_eV_per_atom", "comparison": "<", "threshold": 1.0}]' > crit.json
sc-inverse submit inverse-design --n 4 --top 1 --preset test --include "$REPO/examples/al_fcc/Al.pwi" \
  --pseudo-dir "$WORK/pseudo_d" --criteria crit.json --keep-known --elements all \
  --launchpad my_launchpad.yaml --run-name slurm_check
t0=$(date +%s)
(cd launches_d && exec sc-inverse qlaunch --until-idle -l "$WORK/my_launchpad.yaml" -w "$WORK/my_fworker.yaml" -q "$WORK/my_qadapter.yaml" -r rapidfire -m 2 --sleep 5 > ../qlaunch_d.log 2>&1) &
QL=$!
(cd launches_d && exec sc-inverse rlaunch --until-idle -l "$WORK/my_launchpad.yaml" -w "$WORK/my_fworker_cpu.yaml" rapidfire --sleep 5 > ../rlaunch_d.log 2>&1) &
RL=$!
wait "$RL"; echo "rlaunch (no category) stopped by itself after $(( $(date +%s) - t0 )) s"
wait "$QL"; echo "qlaunch (qe) stopped by itself after $(( $(date +%s) - t0 )) s"
for _ in $(seq 120); do [ "$(squeue -h | wc -l)" -eq 0 ] && break; sleep 1; done
echo "$(states)"
n_qe=$("$VENV_BIN/python" -c "import sys, bson.json_util; db = bson.json_util.loads(open(sys.argv[1]).read())['sc_inverse']; print(sum(d['spec'].get('_category') == 'qe' for _, d in db['fireworks']['documents']))" "$MONGOMOCK_SERVERSTORE_FILE")
echo "SLURM jobs submitted: $(grep -c "Job submission was successful" qlaunch_d.log || true) for $n_qe Fireworks of category qe"
"$VENV_BIN/python" -c "import json; from sc_inverse.runs import runs_root; print('funnel:', json.load(open(runs_root() / 'slurm_check' / 'funnel.json'))['counts'])"
sc-inverse query --format json | "$VENV_BIN/python" -c "import json, sys; print('query rows:', [(r['formula'], r['lambda'] and round(r['lambda'], 3)) for r in json.load(sys.stdin)])"
