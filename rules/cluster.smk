rule cluster:
    input:
        unpack(cluster_inputs),
    output:
        labels="results/{dataset}/{split}/{method}.labels",
        run="results/{dataset}/{split}/{method}.run.json",
    log:
        "results/logs/cluster/{dataset}/{split}/{method}.log",
    benchmark:
        "results/benchmarks/cluster/{dataset}/{split}/{method}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 16
    resources:
        mem_mb=mem_mb(factor=8, base=2000),
        runtime=runtime_min(minutes_per_gb=60, base=15),
    params:
        method_cfg=lambda wc: METHODS[wc.method],
        backends=BACKENDS,
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/cluster.py"
