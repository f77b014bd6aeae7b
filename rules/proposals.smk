# Cluster proposals (GCN-D/S): one file per (dataset, split, proposal set), shared by every
# variant that names the set (facecluster/proposals.py).
rule proposals:
    input:
        unpack(proposals_inputs),
    output:
        "results/{dataset}/{split}/proposals/{proposal_set}.npz",
    log:
        "results/logs/proposals/{dataset}/{split}/{proposal_set}.log",
    benchmark:
        "results/benchmarks/proposals/{dataset}/{split}/{proposal_set}.tsv"
    priority: 30
    conda:
        "../envs/faiss.yaml"
    threads: lambda wc: proposals_threads(wc.dataset, wc.split)
    resources:
        mem_mb=lambda wc, attempt: proposals_resources(
            wc.dataset, wc.split, wc.proposal_set, attempt
        )["mem_mb"],
        runtime=lambda wc, attempt: proposals_resources(
            wc.dataset, wc.split, wc.proposal_set, attempt
        )["runtime"],
    params:
        # in key order: a config rewritten in another order is the same set to the rerun trigger
        spec=lambda wc: canonical(PROPOSALS[wc.proposal_set]),
        backends=BACKENDS,
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        seed=config["seed"],
    script:
        "../workflow_scripts/proposals.py"
