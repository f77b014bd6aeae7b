rule cluster:
    input:
        unpack(cluster_inputs),
    output:
        labels="results/{dataset}/{split}/{method}.labels",
        run="results/{dataset}/{split}/{method}.run.json",
        # per item: id (or row), cluster, the method's score (confidence, density)
        clusters="results/{dataset}/{split}/{method}.clusters.tsv",
        # the cell: scored against the split's labels in the same job (an unlabelled
        # split's: cluster counts and sizes)
        cell="results/{dataset}/{split}/{method}.tsv",
    log:
        "results/logs/cluster/{dataset}/{split}/{method}.log",
    benchmark:
        "results/benchmarks/cluster/{dataset}/{split}/{method}.tsv"
    conda:
        # each method family names its env (CDP needs no torch)
        lambda wc: f"../envs/{spec_of(wc.method).conda_env}.yaml"
    threads: lambda wc: method_threads(wc.method, wc.dataset, wc.split)
    resources:
        mem_mb=lambda wc, threads, attempt: method_resources(
            wc.dataset, wc.split, wc.method, threads, attempt, train=False
        )["mem_mb"],
        runtime=lambda wc, threads, attempt: method_resources(
            wc.dataset, wc.split, wc.method, threads, attempt, train=False
        )["runtime"],
        gpu=lambda wc: int(spec_of(wc.method).gpu),
    params:
        method_cfg=lambda wc: mcfg(wc.dataset, wc.method),
        limits=lambda wc: method_limits(config, wc.method, wc.dataset),
        extra=lambda wc: extra_files(wc.dataset, wc.split, wc.method),
        backends=BACKENDS,
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/cluster.py"


# A method's thresholds chosen on a labelled split (datasets.<name>.calibrate): every point
# of the grid is a cell there (results/<on dataset>/<on split>/<method>/<param>~<value>.tsv);
# the best one is written for the method's cluster jobs on the dataset.
rule calibrate:
    input:
        calibration_cells,
    output:
        "results/{dataset}/calibration/{method}.json",
    log:
        "results/logs/calibrate/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/calibrate/{dataset}/{method}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        calibration=lambda wc: calibration_of(config, wc.dataset, wc.method),
        variants=lambda wc: [
            sweep_variant(wc.method, p)
            for p in calibration_of(config, wc.dataset, wc.method)["points"]
        ],
    script:
        "../workflow_scripts/calibrate.py"
