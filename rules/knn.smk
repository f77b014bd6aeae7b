# One kNN graph per (dataset, split, backend) at the largest k its methods need
# (common.smk: knn_k); methods with a smaller k cut it.
rule knn:
    input:
        unpack(knn_inputs),
    output:
        knn="results/{dataset}/{split}/knn/{backend}_k{k}.npz",
        # the index, its parameters, and an approximate graph's recall on a sample
        report="results/{dataset}/{split}/knn/{backend}_k{k}.json",
    log:
        "results/logs/knn/{dataset}/{split}/{backend}_k{k}.log",
    benchmark:
        "results/benchmarks/knn/{dataset}/{split}/{backend}_k{k}.tsv"
    priority: 20
    conda:
        "../envs/faiss.yaml"
    threads: lambda wc: knn_threads(wc.dataset, wc.split)
    resources:
        mem_mb=lambda wc, threads, attempt: knn_resources(
            wc.dataset,
            wc.split,
            int(wc.k),
            wc.backend,
            threads,
            attempt,
            knn_part(wc.dataset, wc.split, wc.backend),
        )["mem_mb"],
        runtime=lambda wc, threads, attempt: knn_resources(
            wc.dataset,
            wc.split,
            int(wc.k),
            wc.backend,
            threads,
            attempt,
            knn_part(wc.dataset, wc.split, wc.backend),
        )["runtime"],
        # a GPU only at scale (knn_gpu_min_images), and not to merge blocks; faiss picks it
        # up when it sees one
        gpu=lambda wc: knn_gpu(wc.dataset, wc.split)
        * (knn_part(wc.dataset, wc.split, wc.backend) == "whole"),
    params:
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        backend=lambda wc: BACKENDS[wc.backend],
        seed=config["seed"],
    script:
        "../workflow_scripts/knn.py"


# One block of query rows of a sharded exact kNN (a backend's `block_rows`): every block is
# its own job (on SLURM its own allocation, a GPU at scale), all searching the whole split;
# the knn rule above merges them into the one file, equal to the unsharded search.
rule knn_block:
    input:
        unpack(lambda wc: split_inputs(wc.dataset, wc.split)),
    output:
        temp("results/{dataset}/{split}/knn/{backend}_k{k}.blocks/{block}.npz"),
    log:
        "results/logs/knn/{dataset}/{split}/{backend}_k{k}.blocks/{block}.log",
    benchmark:
        "results/benchmarks/knn/{dataset}/{split}/{backend}_k{k}.blocks/{block}.tsv"
    priority: 20
    conda:
        "../envs/faiss.yaml"
    threads: lambda wc: knn_threads(wc.dataset, wc.split)
    resources:
        mem_mb=lambda wc, threads, attempt: knn_resources(
            wc.dataset, wc.split, int(wc.k), wc.backend, threads, attempt, "block"
        )["mem_mb"],
        runtime=lambda wc, threads, attempt: knn_resources(
            wc.dataset, wc.split, int(wc.k), wc.backend, threads, attempt, "block"
        )["runtime"],
        gpu=lambda wc: knn_gpu(wc.dataset, wc.split),
    params:
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        backend=lambda wc: BACKENDS[wc.backend],
        n_blocks=lambda wc: knn_blocks(wc.dataset, wc.split, wc.backend),
        seed=config["seed"],
    script:
        "../workflow_scripts/knn_block.py"


# The same for a committee member's features of the split (CDP vote / mediator).
use rule knn as committee_knn with:
    input:
        features=lambda wc: committee_features_path(wc.dataset, wc.split, wc.member),
        labels=lambda wc: labels_path(wc.dataset, wc.split),
    output:
        knn="results/{dataset}/{split}/committee/{member}/knn/{backend}_k{k}.npz",
        report="results/{dataset}/{split}/committee/{member}/knn/{backend}_k{k}.json",
    log:
        "results/logs/knn/{dataset}/{split}/committee_{member}_{backend}_k{k}.log",
    benchmark:
        "results/benchmarks/knn/{dataset}/{split}/committee_{member}_{backend}_k{k}.tsv"
    resources:
        # a committee member's graph is searched whole (never in blocks)
        mem_mb=lambda wc, threads, attempt: knn_resources(
            wc.dataset, wc.split, int(wc.k), wc.backend, threads, attempt
        )["mem_mb"],
        runtime=lambda wc, threads, attempt: knn_resources(
            wc.dataset, wc.split, int(wc.k), wc.backend, threads, attempt
        )["runtime"],
        gpu=lambda wc: knn_gpu(wc.dataset, wc.split),
