from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/knn.smk"
include: "rules/proposals.smk"
include: "rules/train.smk"
include: "rules/cluster.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_tables(),
