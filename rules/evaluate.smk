rule evaluate:
    input:
        gt=lambda wc: labels_path(wc.dataset, wc.split),
        pred="results/{dataset}/{split}/{method}.labels",
        run="results/{dataset}/{split}/{method}.run.json",
    output:
        "results/{dataset}/{split}/{method}.tsv",
    log:
        "results/logs/evaluate/{dataset}/{split}/{method}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{split}/{method}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=mem_mb(factor=10, base=1000),
        runtime=runtime_min(minutes_per_gb=10),
    script:
        "../workflow_scripts/evaluate.py"


rule table:
    input:
        dataset_cells,
    output:
        tsv="results/tables/{dataset}.tsv",
        md="results/tables/{dataset}.md",
    log:
        "results/logs/table/{dataset}.log",
    benchmark:
        "results/benchmarks/table/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        methods=lambda wc: DATASETS[wc.dataset]["methods"],
        splits=lambda wc: DATASETS[wc.dataset]["test_splits"],
    script:
        "../workflow_scripts/table.py"
