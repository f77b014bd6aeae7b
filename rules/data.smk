# Downloaded datasets: each archive is fetched once (resumed, md5-checked) and the files of
# the splits it provides are extracted into a folder in learn-to-cluster's layout.
rule download:
    output:
        "resources/{dataset}/archives/{archive}.tar.gz",
    log:
        "results/logs/download/{dataset}/{archive}.log",
    benchmark:
        "results/benchmarks/download/{dataset}/{archive}.tsv"
    retries: 2
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        source=lambda wc: DATASETS[wc.dataset]["archives"][wc.archive],
    script:
        "../workflow_scripts/download.py"


rule extract:
    input:
        "resources/{dataset}/archives/{archive}.tar.gz",
    output:
        directory("resources/{dataset}/archives/{archive}"),
    log:
        "results/logs/extract/{dataset}/{archive}.log",
    benchmark:
        "results/benchmarks/extract/{dataset}/{archive}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        files=lambda wc: archive_files(wc.dataset, wc.archive),
    script:
        "../workflow_scripts/extract.py"


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
        spec=lambda wc: synthetic_spec(wc.dataset),
    script:
        "../workflow_scripts/synthesize.py"


# One job per split. A full set (synthetic or labelled) is split by identity: each job
# re-derives the seeded identity shuffle from the full label file and copies its own rows,
# so splits are written in parallel and identically every time. A downloaded split is
# checked (lengths, dimension, finite values) and linked into place.
rule partition:
    input:
        unpack(partition_inputs),
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
        mem_mb=partition_mem_mb,
        runtime=partition_runtime,
    params:
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        n_parts=lambda wc: DATASETS[wc.dataset]["n_parts"],
        stem=lambda wc: split_stem(wc.dataset, wc.split),
        seed=config["seed"],
    script:
        "../workflow_scripts/partition.py"


# The mean row a `normalise: centre` dataset subtracts before L2-normalising: of its train
# split (one file for every split), or of the split itself where it has none.
rule centre:
    input:
        features=lambda wc: features_path(wc.dataset, wc.split),
    output:
        "results/{dataset}/centre/{split}.npy",
    log:
        "results/logs/centre/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/centre/{dataset}/{split}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: int(
            (10 + n_images(wc.dataset, wc.split) / 1e6 * 2) * attempt
        ),
    params:
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
    script:
        "../workflow_scripts/centre.py"


# Committee members of a synthetic dataset: the same images seen through other (perturbed)
# embedding models, for CDP vote / mediator. Each member is generated on its own (it
# replays the seeded base draws) and partitioned with the base labels.
rule synthesize_member:
    output:
        "resources/{dataset}/full/committee/{member}.bin",
    log:
        "results/logs/synthesize/{dataset}_{member}.log",
    benchmark:
        "results/benchmarks/synthesize/{dataset}_{member}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        spec=lambda wc: synthetic_spec(wc.dataset),
        member=lambda wc: DATASETS[wc.dataset]["committee"].index(wc.member) + 1,
    script:
        "../workflow_scripts/synthesize_member.py"


rule partition_member:
    input:
        features="resources/{dataset}/full/committee/{member}.bin",
        labels="resources/{dataset}/full/labels.meta",
    output:
        "resources/{dataset}/committee/{member}/{split}.bin",
    log:
        "results/logs/partition/{dataset}/{split}_{member}.log",
    benchmark:
        "results/benchmarks/partition/{dataset}/{split}_{member}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=partition_mem_mb,
        runtime=partition_runtime,
    params:
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        n_parts=lambda wc: DATASETS[wc.dataset]["n_parts"],
        seed=config["seed"],
    script:
        "../workflow_scripts/partition_member.py"
