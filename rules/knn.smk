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
        mem_mb=lambda wc, threads, attempt: knn_resources(
            wc.dataset, wc.split, int(wc.k), wc.backend, threads, attempt
        )["mem_mb"],
        runtime=lambda wc, threads, attempt: knn_resources(
            wc.dataset, wc.split, int(wc.k), wc.backend, threads, attempt
        )["runtime"],
        # a GPU only at scale (knn_gpu_min_images); faiss picks it up when it sees one
        gpu=lambda wc: knn_gpu(wc.dataset, wc.split),
    params:
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        backend=lambda wc: BACKENDS[wc.backend],
        seed=config["seed"],
    script:
        "../workflow_scripts/knn.py"
