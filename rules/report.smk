# Tables, plots and the pages of `snakemake --report`: each output the report shows is
# marked with report() (a category, the dataset as subcategory, a caption in report/).


rule table:
    input:
        dataset_cells,
    output:
        tsv="results/tables/{dataset}.tsv",
        md="results/tables/{dataset}.md",
        html=report(
            "results/tables/{dataset}.html",
            caption="../report/table.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"table": "{dataset}: every method and scale"},
        ),
    log:
        "results/logs/table/{dataset}.log",
    benchmark:
        "results/benchmarks/table/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        methods=lambda wc: DATASETS[wc.dataset]["methods"],
        splits=lambda wc: DATASETS[wc.dataset]["test_splits"],
        labelled=lambda wc: is_labelled(DATASETS[wc.dataset]),
    script:
        "../workflow_scripts/table.py"


rule table_scales:
    input:
        cells=dataset_cells,
        published=published_path(),
    output:
        tsv="results/tables/{dataset}_scales_{metric}.tsv",
        md="results/tables/{dataset}_scales_{metric}.md",
        html=report(
            "results/tables/{dataset}_scales_{metric}.html",
            caption="../report/table_scales.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"table": "{dataset}: {metric} by scale"},
        ),
    log:
        "results/logs/table_scales/{dataset}_{metric}.log",
    benchmark:
        "results/benchmarks/table_scales/{dataset}_{metric}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        methods=lambda wc: DATASETS[wc.dataset]["methods"],
        splits=lambda wc: DATASETS[wc.dataset]["test_splits"],
        with_published=lambda wc: with_published(wc.dataset),
    script:
        "../workflow_scripts/table_scales.py"


rule table_split:
    input:
        cells=split_cells,
        published=published_path(),
    output:
        tsv="results/tables/{dataset}_{split}_{view}.tsv",
        md="results/tables/{dataset}_{split}_{view}.md",
        html=report(
            "results/tables/{dataset}_{split}_{view}.html",
            caption="../report/table_split.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"table": "{dataset}: {split} {view}"},
        ),
    log:
        "results/logs/table_split/{dataset}_{split}_{view}.log",
    benchmark:
        "results/benchmarks/table_split/{dataset}_{split}_{view}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        methods=lambda wc: DATASETS[wc.dataset]["methods"],
        with_published=lambda wc: with_published(wc.dataset),
    script:
        "../workflow_scripts/table_split.py"


rule table_sweep:
    input:
        sweep_cells,
    output:
        tsv="results/tables/{dataset}_sweep_{method}.tsv",
        md="results/tables/{dataset}_sweep_{method}.md",
        html=report(
            "results/tables/{dataset}_sweep_{method}.html",
            caption="../report/table_sweep.rst",
            category="Sweeps",
            subcategory="{dataset}",
            labels={"sweep": "{method}", "file": "table"},
        ),
    log:
        "results/logs/table_sweep/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/table_sweep/{dataset}_{method}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        split=lambda wc: sweep_split(wc.dataset),
        points=lambda wc: sweep_points(config, wc.dataset)[wc.method],
        variants=lambda wc: sweep_variants(wc.dataset, wc.method),
    script:
        "../workflow_scripts/table_sweep.py"


rule plot_sweep:
    input:
        "results/tables/{dataset}_sweep_{method}.tsv",
    output:
        png=report(
            "results/plots/{dataset}_sweep_{method}.png",
            caption="../report/plot_sweep.rst",
            category="Sweeps",
            subcategory="{dataset}",
            labels={"sweep": "{method}", "file": "plot"},
        ),
        svg="results/plots/{dataset}_sweep_{method}.svg",
    log:
        "results/logs/plot_sweep/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/plot_sweep/{dataset}_{method}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        split=lambda wc: sweep_split(wc.dataset),
        setting=lambda wc: sweep_setting(wc.dataset, wc.method),
    script:
        "../workflow_scripts/plot_sweep.py"


rule plot_scales:
    input:
        cells=dataset_cells,
        published=published_path(),
    output:
        png=report(
            "results/plots/{dataset}_scales_f.png",
            caption="../report/plot_scales.rst",
            category="Plots",
            subcategory="{dataset}",
            labels={"plot": "F-score against scale"},
        ),
        svg="results/plots/{dataset}_scales_f.svg",
    log:
        "results/logs/plot_scales/{dataset}.log",
    benchmark:
        "results/benchmarks/plot_scales/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        methods=lambda wc: DATASETS[wc.dataset]["methods"],
        splits=lambda wc: DATASETS[wc.dataset]["test_splits"],
        with_published=lambda wc: with_published(wc.dataset),
    script:
        "../workflow_scripts/plot_scales.py"


rule plot_precision_recall:
    input:
        dataset_cells,
    output:
        png=report(
            "results/plots/{dataset}_precision_recall.png",
            caption="../report/plot_precision_recall.rst",
            category="Plots",
            subcategory="{dataset}",
            labels={"plot": "precision against recall"},
        ),
        svg="results/plots/{dataset}_precision_recall.svg",
    log:
        "results/logs/plot_precision_recall/{dataset}.log",
    benchmark:
        "results/benchmarks/plot_precision_recall/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        methods=lambda wc: DATASETS[wc.dataset]["methods"],
        splits=lambda wc: DATASETS[wc.dataset]["test_splits"],
    script:
        "../workflow_scripts/plot_precision_recall.py"


rule plot_time:
    input:
        dataset_cells,
    output:
        png=report(
            "results/plots/{dataset}_time_vs_items.png",
            caption="../report/plot_time.rst",
            category="Plots",
            subcategory="{dataset}",
            labels={"plot": "wall time against items"},
        ),
        svg="results/plots/{dataset}_time_vs_items.svg",
    log:
        "results/logs/plot_time/{dataset}.log",
    benchmark:
        "results/benchmarks/plot_time/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        methods=lambda wc: DATASETS[wc.dataset]["methods"],
    script:
        "../workflow_scripts/plot_time.py"


# the cells (cluster jobs) wrote the labels; a labelled split's true sizes in grey
rule plot_cluster_sizes:
    input:
        unpack(cluster_sizes_inputs),
    output:
        png=report(
            "results/plots/{dataset}_{split}_cluster_sizes.png",
            caption="../report/plot_cluster_sizes.rst",
            category="Plots",
            subcategory="{dataset}",
            labels={"plot": "cluster sizes, {split}"},
        ),
        svg="results/plots/{dataset}_{split}_cluster_sizes.svg",
    log:
        "results/logs/plot_cluster_sizes/{dataset}_{split}.log",
    benchmark:
        "results/benchmarks/plot_cluster_sizes/{dataset}_{split}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: gigabytes_mb(
            n_images(wc.dataset, wc.split) * 8 * 4, attempt
        ),
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        methods=lambda wc: DATASETS[wc.dataset]["methods"],
    script:
        "../workflow_scripts/plot_cluster_sizes.py"


rule software:
    output:
        config=report(
            "results/report/config.html",
            caption="../report/config.rst",
            category="Run",
            labels={"page": "configuration"},
        ),
        software=report(
            "results/report/software.html",
            caption="../report/software.rst",
            category="Run",
            labels={"page": "software versions"},
        ),
    log:
        "results/logs/software/software.log",
    benchmark:
        "results/benchmarks/software/software.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        config=config,
        packages=SOFTWARE,
    script:
        "../workflow_scripts/software.py"
