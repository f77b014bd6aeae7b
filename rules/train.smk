# One model per training ({model} = family + a hash of k, kNN backend, `train` block and
# train split): variants that differ only in clustering parameters share it.
rule train:
    input:
        unpack(train_inputs),
    output:
        "results/{dataset}/models/{model}.pt",
    log:
        "results/logs/train/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{model}.tsv"
    # trainings start the longest chains (train -> infer -> train -> cluster): first
    priority: 50
    conda:
        lambda wc: f"../envs/{spec_of(model_method(wc.dataset, wc.model)).conda_env}.yaml"
    threads: lambda wc: model_threads(wc.dataset, wc.model, train_split(wc.dataset))
    resources:
        mem_mb=lambda wc, threads, attempt: method_resources(
            wc.dataset,
            train_split(wc.dataset),
            model_method(wc.dataset, wc.model),
            threads,
            attempt,
            train=True,
        )["mem_mb"],
        runtime=lambda wc, threads, attempt: method_resources(
            wc.dataset,
            train_split(wc.dataset),
            model_method(wc.dataset, wc.model),
            threads,
            attempt,
            train=True,
        )["runtime"],
        gpu=lambda wc: int(spec_of(model_method(wc.dataset, wc.model)).gpu),
    params:
        method=lambda wc: model_method(wc.dataset, wc.model),
        method_cfg=lambda wc: train_cfg(wc.dataset, model_method(wc.dataset, wc.model)),
        split=lambda wc: train_split(wc.dataset),
        extra=lambda wc: extra_files(
            wc.dataset,
            train_split(wc.dataset),
            model_method(wc.dataset, wc.model),
            train=True,
        ),
        backends=lambda wc: train_backends(
            wc.dataset, model_method(wc.dataset, wc.model)
        ),
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/train.py"


# Released weights (a variant's `pretrained`: role -> checkpoint) mapped onto our names.
rule import_model:
    input:
        unpack(pretrained_inputs),
    output:
        "results/{dataset}/pretrained/{model}.pt",
    log:
        "results/logs/import_model/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/import_model/{dataset}/{model}.tsv"
    conda:
        lambda wc: f"../envs/{spec_of(model_method(wc.dataset, wc.model)).conda_env}.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        method=lambda wc: model_method(wc.dataset, wc.model),
        method_cfg=lambda wc: mcfg(wc.dataset, model_method(wc.dataset, wc.model)),
    script:
        "../workflow_scripts/import_model.py"


# A trained variant's inference on a split (GCN-V's confidences and GCN features), for the
# variants that read it as their `upstream` (GCN-E).
rule infer:
    input:
        unpack(infer_inputs),
    output:
        "results/{dataset}/{split}/infer/{model}.npz",
    log:
        "results/logs/infer/{dataset}/{split}/{model}.log",
    benchmark:
        "results/benchmarks/infer/{dataset}/{split}/{model}.tsv"
    priority: 40
    conda:
        lambda wc: f"../envs/{spec_of(model_method(wc.dataset, wc.model)).conda_env}.yaml"
    threads: lambda wc: model_threads(wc.dataset, wc.model, wc.split)
    resources:
        mem_mb=lambda wc, threads, attempt: method_resources(
            wc.dataset,
            wc.split,
            model_method(wc.dataset, wc.model),
            threads,
            attempt,
            False,
        )["mem_mb"],
        runtime=lambda wc, threads, attempt: method_resources(
            wc.dataset,
            wc.split,
            model_method(wc.dataset, wc.model),
            threads,
            attempt,
            False,
        )["runtime"],
        gpu=lambda wc: int(spec_of(model_method(wc.dataset, wc.model)).gpu),
    params:
        method=lambda wc: model_method(wc.dataset, wc.model),
        method_cfg=lambda wc: mcfg(wc.dataset, model_method(wc.dataset, wc.model)),
        backends=BACKENDS,
        dim=lambda wc: DATASETS[wc.dataset]["dim"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/infer.py"
