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
        lambda wc: f"../envs/{family_of(wc.method).CONDA_ENV}.yaml"
    threads: 16
    resources:
        mem_mb=lambda wc, threads, attempt: method_resources(
            wc.dataset,
            train_split(wc.dataset),
            wc.method,
            threads,
            attempt,
            train=True,
        )["mem_mb"],
        runtime=lambda wc, threads, attempt: method_resources(
            wc.dataset,
            train_split(wc.dataset),
            wc.method,
            threads,
            attempt,
            train=True,
        )["runtime"],
        gpu=lambda wc: int(family_of(wc.method).GPU),
    params:
        method_cfg=lambda wc: METHODS[wc.method],
        backends=BACKENDS,
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/train.py"
