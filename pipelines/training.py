"""The training DAG: ingest -> merge -> split -> prepare -> train -> profile -> evaluate -> explain, then the gate,
and deploy when blessed. Built with cross_validation=True, prepare -> train becomes fold-plan -> ParallelFor(train-fold)
-> cross-validate (pipelines/crossval.py), and profile, evaluate, explain, the gate and deploy take the ensemble.

resolve-champion reads the registry's current version and hands its version and digest to the gate and deploy as
parameters (so a changed champion re-runs the gate; an unchanged one keeps its cache hits, and evaluate, which
depends on the model and data only, is reused either way). resolve-champion and deploy read or change external
state, so they are never served from the cache, on any backend. resolve-champion also pins a frozen benchmark set
(name@vN) for the gate and deploy, as parameter values too: the one `benchmark_set` names (its file also goes to
split), else the champion's own, which deploy froze from its test split when it pushed it.

One factory for every backend. Placement (GPU, CPU/memory, toleration, retries) is decided here, never in the
stage logic; the local runner builds the same DAG without placement, since kfp.local ignores it.
"""

from kfp import dsl

from dermpipe import config
from dermpipe.components.deploy import deploy
from dermpipe.components.evaluate import evaluate
from dermpipe.components.explain import explain
from dermpipe.components.gate import gate
from dermpipe.components.ingest import ingest
from dermpipe.components.merge import merge
from dermpipe.components.prepare import prepare
from dermpipe.components.profile import profile
from dermpipe.components.resolve_champion import resolve_champion
from dermpipe.components.split import split
from dermpipe.components.train import train
from dermpipe.pipelines.crossval import cross_validation as cross_validation_tasks
from dermpipe.pipelines.placement import Placement, place_step, place_train

PIPELINE_NAME = "dermpipe-training"


def build_training_pipeline(placement: Placement | None = Placement(), *, cross_validation: bool = False):
    """The training pipeline function; `placement=None` leaves out cluster placement (local runs).
    `cross_validation`: the DAG trains `folds` fold models in a ParallelFor and evaluates, gates and deploys their
    ensemble (needs folds >= 2 at run time) instead of one train task."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Train, evaluate, explain and deploy an ISIC 2019 classifier")
    def training_pipeline(
        source: str = "demo",
        source_fingerprint: str = "",
        demo_images: int = 400,
        feedback_log_root: str = "",
        feedback_retention_days: int = 365,
        feedback_fingerprint: str = "",
        invalid_images: str = "drop",
        test_size: float = 0.1,
        val_size: float = 0.1,
        split_seed: int = 42,
        folds: int = 0,
        split_method: str = "hash",
        split_file: str = "",
        split_file_sha256: str = "",
        benchmark_set: str = "",
        shard_size_mb: float = 150.0,
        backbone: str = "efficientnet_b0",
        weights: str = "none",
        image_size: int = 224,
        batch_size: int = 32,
        epochs: int = 10,
        fine_tune_epochs: int = 0,
        fine_tune_layers: int = 20,
        learning_rate: float = 1e-3,
        fine_tune_learning_rate: float = 1e-4,
        patience: int = 3,
        class_balance: str = "weights",
        loss: str = "crossentropy",
        focal_gamma: float = 2.0,
        monitor: str = "val_balanced_accuracy",
        lr_schedule: str = "plateau",
        jit_compile: bool = False,
        mixed_precision: str = "auto",
        train_cache: str = "auto",
        deterministic: bool = False,
        train_quiet: bool = False,
        train_seed: int = 42,
        metadata_fusion: bool = False,
        ensemble_weighting: str = "uniform",
        ensemble_temperature: bool = False,
        sweep: str = "",
        ensemble_top: int = 1,
        min_balanced_accuracy: float = 0.5,
        max_bma_drop: float = 0.02,
        require_beat_baseline: bool = False,
        tta: bool = True,
        melanoma_target_sensitivity: float = 0.95,
        melanoma_min_specificity: float = 0.2,
        ood_pass_rate: float = 0.95,
        ood_near_folder: str = "",
        explain_per_class: int = 2,
        registry_root: str = "",
        model_name: str = config.MODEL_NAME,
        deploy_target: str = "local",
        gcp_project: str = "",
        gcp_region: str = "us-central1",
        traffic_percentage: int = 100,
        kserve_namespace: str = "default",
    ):
        ingested = place_step(
            ingest(source=source, source_fingerprint=source_fingerprint, demo_images=demo_images,
                   feedback_log_root=feedback_log_root, feedback_retention_days=feedback_retention_days,
                   feedback_fingerprint=feedback_fingerprint), placement
        ).set_display_name("ingest")
        merged = place_step(merge(raw=ingested.outputs["dataset"], invalid_images=invalid_images),
                             placement).set_display_name("merge")
        champion = place_step(resolve_champion(registry_root=registry_root, model_name=model_name,
                                               benchmark_set=benchmark_set), placement)
        champion.set_display_name("resolve-champion").set_caching_options(False)
        splits = place_step(
            split(merged=merged.outputs["merged"], test_size=test_size, val_size=val_size, seed=split_seed,
                  folds=folds, method=split_method, benchmark_uri=champion.outputs["benchmark_uri"], file=split_file,
                  file_sha256=split_file_sha256), placement
        ).set_display_name("split")
        train_params = dict(
            backbone=backbone, weights=weights, image_size=image_size, batch_size=batch_size, epochs=epochs,
            fine_tune_epochs=fine_tune_epochs, fine_tune_layers=fine_tune_layers, learning_rate=learning_rate,
            fine_tune_learning_rate=fine_tune_learning_rate, patience=patience, class_balance=class_balance,
            seed=train_seed, loss=loss, focal_gamma=focal_gamma, monitor=monitor, lr_schedule=lr_schedule,
            jit_compile=jit_compile, mixed_precision=mixed_precision, cache=train_cache, deterministic=deterministic,
            quiet=train_quiet, metadata_fusion=metadata_fusion,
        )
        if cross_validation:  # k fold models in a ParallelFor, exported as one ensemble (pipelines/crossval.py)
            model = cross_validation_tasks(ingested.outputs["dataset"], splits.outputs["train"],
                                           splits.outputs["val"], folds, train_params,
                                           dict(ensemble_weighting=ensemble_weighting,
                                                ensemble_temperature=ensemble_temperature, sweep=sweep,
                                                ensemble_top=ensemble_top), placement).outputs["ensemble"]
        else:
            # TFRecord shards at the training resolution: train reads them instead of the full-size originals.
            prepared = place_step(
                prepare(raw=ingested.outputs["dataset"], train_split=splits.outputs["train"],
                        val_split=splits.outputs["val"], test_split=splits.outputs["test"], image_size=image_size,
                        shard_size_mb=shard_size_mb, seed=split_seed),
                placement,
            ).set_display_name("prepare")
            model = place_train(
                train(raw=ingested.outputs["dataset"], train_split=splits.outputs["train"],
                      val_split=splits.outputs["val"], shards=prepared.outputs["shards"], **train_params),
                placement,
            ).set_display_name("train").outputs["model"]
        profiled = place_step(
            profile(raw=ingested.outputs["dataset"], model=model,
                    train_split=splits.outputs["train"], val_split=splits.outputs["val"],
                    test_split=splits.outputs["test"], melanoma_target_sensitivity=melanoma_target_sensitivity,
                    melanoma_min_specificity=melanoma_min_specificity, ood_pass_rate=ood_pass_rate,
                    ood_near_folder=ood_near_folder),
            placement,
        ).set_display_name("profile")
        evaluated = place_step(
            evaluate(raw=ingested.outputs["dataset"], model=model,
                     test_split=splits.outputs["test"], profile=profiled.outputs["profile"], tta=tta),
            placement,
        ).set_display_name("evaluate")
        gated = place_step(
            gate(raw=ingested.outputs["dataset"], model=model, test_split=splits.outputs["test"],
                 train_split=splits.outputs["train"], predictions=evaluated.outputs["predictions"],
                 profile=profiled.outputs["profile"], min_balanced_accuracy=min_balanced_accuracy,
                 max_bma_drop=max_bma_drop, require_beat_baseline=require_beat_baseline,
                 registry_root=registry_root, model_name=model_name, champion_version=champion.outputs["version"],
                 champion_digest=champion.outputs["digest"], benchmark=champion.outputs["benchmark"]),
            placement,
        ).set_display_name("gate")
        place_step(
            explain(raw=ingested.outputs["dataset"], model=model,
                    predictions=evaluated.outputs["predictions"], per_class=explain_per_class),
            placement,
        ).set_display_name("explain")
        with dsl.If(gated.outputs["Output"] == True, name="blessed"):  # noqa: E712 (KFP condition syntax)
            place_step(
                deploy(model=model, evaluation=evaluated.outputs["metrics"],
                       profile=profiled.outputs["profile"], registry_root=registry_root, model_name=model_name,
                       deploy_target=deploy_target, gcp_project=gcp_project, gcp_region=gcp_region,
                       traffic_percentage=traffic_percentage, kserve_namespace=kserve_namespace,
                       champion_version=champion.outputs["version"], benchmark=champion.outputs["benchmark"],
                       test_split=splits.outputs["test"], raw=ingested.outputs["dataset"]),
                placement,
            ).set_display_name("deploy").set_caching_options(False)

    return training_pipeline
