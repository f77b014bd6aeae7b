"""The workflow on a real SLURM: a single-node cluster on localhost (tests/slurm/cluster.sh),
the tiny config through ``--profile profiles/slurm`` plus the CI overlay, outputs compared
with a local run, GPU requests checked on the scheduler's side (the node has one GPU in
name only). The daemons are stopped also when the test fails.

Needs root and Debian's slurm-wlm and munge; ``.ci/run`` installs them. Skipped, saying so,
where they are missing.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
TIMEOUT = 600  # seconds; the run takes about 2-3 minutes

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

MISSING = [
    c for c in ("slurmctld", "slurmd", "sbatch", "munged", "mungekey") if not shutil.which(c)
]


def _skip_reason():
    if MISSING:
        return (
            f"SLURM is not installed ({', '.join(MISSING)} not found): run "
            "`apt-get install -y --no-install-recommends slurm-wlm munge` as root "
            "(.ci/run does) to test the SLURM profile"
        )
    if os.geteuid() != 0:
        return "the localhost SLURM cluster of tests/slurm/cluster.sh needs root"
    return None


def run_killable(cmd, cwd, timeout=TIMEOUT):
    """Run ``cmd``; on timeout kill it (the SLURM plugin ignores SIGTERM while polling)."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"{cmd} still running after {timeout} s:\n{out[-5000:]}") from None
    return proc.returncode, out


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    try:
        subprocess.run(
            [str(CLUSTER), "start", str(state)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.CalledProcessError as exc:
        subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True, timeout=120)
        logs = "\n".join(p.read_text() for p in (state / "log").glob("*.log"))
        raise AssertionError(f"SLURM did not start:\n{exc.stdout}\n{exc.stderr}\n{logs}") from None
    try:
        yield state
    finally:
        subprocess.run(["scancel", "--full", "--user", str(os.getuid())], capture_output=True)
        subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True, timeout=120)


def slurm_jobs():
    """The cluster's jobs (finished ones stay listed for MinJobAge = 300 s): rule comment,
    GPUs asked for, start and end time."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o"], check=True, capture_output=True, text=True
    ).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(
            re.findall(r"(?:^| )(JobId|Comment|TresPerJob|StartTime|EndTime)=(\S+)", line)
        )
        if fields.get("Comment", "").startswith("rule_"):
            jobs.append(fields)
    return jobs


def check_gpu_requests(jobs):
    """GCN training and clustering asked SLURM for a GPU, and ran one at a time on the
    node's one GPU; CDP, proposals and evaluation did not ask."""
    gpu = [j for j in jobs if j.get("TresPerJob") == "gres:gpu:1"]
    names = sorted(j["Comment"] for j in gpu)
    # gcnv and gcnv_tau share one trained model (one train job); GCN-D and STAR-FC have theirs
    assert names[:8] == [
        "rule_cluster_wildcards_synth_part1_gcnd_2",
        "rule_cluster_wildcards_synth_part1_gcnv",
        "rule_cluster_wildcards_synth_part1_gcnv_tau",
        "rule_cluster_wildcards_synth_part1_starfc",
        "rule_cluster_wildcards_synth_part3_gcnd_2",
        "rule_cluster_wildcards_synth_part3_gcnv",
        "rule_cluster_wildcards_synth_part3_gcnv_tau",
        "rule_cluster_wildcards_synth_part3_starfc",
    ], names
    assert len(names) == 11, names
    assert names[8].startswith("rule_train_wildcards_synth_gcnd_"), names
    assert names[9].startswith("rule_train_wildcards_synth_gcnv_"), names
    assert names[10].startswith("rule_train_wildcards_synth_starfc_"), names
    assert not any("gpu" in j.get("TresPerJob", "") for j in jobs if j not in gpu)
    spans = sorted((j["StartTime"], j["EndTime"]) for j in gpu)
    for (_, end), (start, _) in zip(spans[:-1], spans[1:], strict=True):
        assert end <= start, spans


def test_tiny_workflow_on_slurm_matches_local_run(slurm_cluster, tmp_path):
    """Also: every exact kNN of the SLURM run is searched in blocks of query rows, one SLURM
    job each (tests/slurm/sharded.yaml); the local run searches it whole, and the files are
    compared byte for byte below."""
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    common = ["--configfile", str(TINY)]
    cmd = [
        *SNAKEMAKE,
        "--directory",
        str(on_slurm),
        *common,
        str(ROOT / "tests" / "slurm" / "sharded.yaml"),
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--profile",
        str(ROOT / "tests" / "slurm" / "profile"),
        # the rules ask for up to 16 threads; this node has nproc CPUs
        "--max-threads",
        str(os.cpu_count()),
    ]
    try:
        rc, out = run_killable(cmd, cwd=tmp_path)
    finally:
        subprocess.run(
            [*SNAKEMAKE, "--directory", str(on_slurm), *common, "--unlock"],
            capture_output=True,
            timeout=300,
        )
    assert rc == 0, out[-10000:]
    assert "has been submitted with SLURM jobid" in out  # it really went through sbatch
    jobs = slurm_jobs()
    check_gpu_requests(jobs)
    blocks = [j["Comment"] for j in jobs if j["Comment"].startswith("rule_knn_block_")]
    assert len(blocks) >= 4, blocks  # part0, part1 and part3 are 1-4K items: 2-4 blocks each

    unsharded = str(ROOT / "tests" / "slurm" / "unsharded.yaml")
    subprocess.run(
        [*SNAKEMAKE, "--directory", str(local), *common, unsharded, "--cores", "2"],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    results = sorted(p.relative_to(local) for p in (local / "results" / "synth").rglob("*"))
    # kNN graphs (sharded on SLURM, whole here), the trained model and the labels: byte
    # for byte
    compared = [p for p in results if p.suffix in (".labels", ".npz", ".pt")]
    assert len(compared) >= 9
    merged = yaml.safe_load((on_slurm / "results/synth/part3/knn/flat_k50.json").read_text())
    assert merged["blocks"] >= 2, merged
    for rel in compared:
        assert (on_slurm / rel).read_bytes() == (local / rel).read_bytes(), rel
    cols = ["pairwise_f", "bcubed_f", "nmi", "n_pred_clusters"]
    a = pd.read_csv(on_slurm / "results" / "synth" / "part3" / "gcnv.tsv", sep="\t")
    b = pd.read_csv(local / "results" / "synth" / "part3" / "gcnv.tsv", sep="\t")
    pd.testing.assert_frame_equal(a[cols], b[cols])
