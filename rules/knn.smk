rule knn:
    input:
        features=lambda wc: features_path(wc.dataset, wc.split),
        labels=lambda wc: labels_path(wc.dataset, wc.split),
    output:
        "results/{dataset}/{split}/knn/{backend}_k{k}.npz",
    log:
        "results/logs/knn/{dataset}/{split}/{backend}_k{k}.log",
    benchmark:
        "results/benchmarks/knn/{dataset}/{split}/{backend}_k{k}.tsv"
    conda:
        "../envs/faiss.yaml"
    threads: 16
    resources:
        # features, plus nbrs/sims (N x k x 8 bytes: about 2 * k / D of the features' size)
        mem_mb=lambda wc, input, attempt: int(
            (
                1000
                + input.size_mb * (2.5 + 4 * int(wc.k) / DATASETS[wc.dataset]["dim"])
            )
            * attempt
        ),
        runtime=runtime_min(minutes_per_gb=30),
    params:
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        backend=lambda wc: BACKENDS[wc.backend],
        seed=config["seed"],
    script:
        "../workflow_scripts/knn.py"
