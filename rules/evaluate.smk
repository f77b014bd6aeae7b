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
        # two label vectors and their contingency: a few int64 arrays of length N
        mem_mb=lambda wc, attempt: gigabytes_mb(
            n_images(wc.dataset, wc.split) * 64, attempt
        ),
        runtime=lambda wc, attempt: int(
            (10 + n_images(wc.dataset, wc.split) / 1e6) * attempt
        ),
    script:
        "../workflow_scripts/evaluate.py"
