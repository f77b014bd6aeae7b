rule train:
    input:
        unpack(train_inputs),
    output:
        "results/{dataset}/models/{method}.pt",
    log:
        "results/logs/train/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{method}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 16
    resources:
        mem_mb=mem_mb(factor=8, base=2000),
        runtime=runtime_min(minutes_per_gb=240, base=30),
    params:
        method_cfg=lambda wc: METHODS[wc.method],
        backends=BACKENDS,
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/train.py"
