rule synthesize:
    output:
        features="resources/{dataset}/full/features.bin",
        labels="resources/{dataset}/full/labels.meta",
    log:
        "results/logs/synthesize/{dataset}.log",
    benchmark:
        "results/benchmarks/synthesize/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        spec=lambda wc: {
            **DATASETS[wc.dataset]["synthetic"],
            "dim": DATASETS[wc.dataset]["dim"],
            "seed": config["seed"],
        },
    script:
        "../workflow_scripts/synthesize.py"


# One job per split: each re-derives the seeded identity shuffle from the full label file
# and copies its own rows, so splits are written in parallel and identically every time.
rule partition:
    input:
        unpack(lambda wc: full_set(wc.dataset)),
    output:
        features="resources/{dataset}/features/{split}.bin",
        labels="resources/{dataset}/labels/{split}.meta",
    log:
        "results/logs/partition/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/partition/{dataset}/{split}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=mem_mb(factor=0.1, base=1000),
        runtime=runtime_min(minutes_per_gb=2),
    params:
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        n_parts=lambda wc: DATASETS[wc.dataset]["n_parts"],
        seed=config["seed"],
    script:
        "../workflow_scripts/partition.py"
