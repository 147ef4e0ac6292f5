"""retrain: the retraining the monitoring pipeline starts when its trigger fired, on drift or a performance drop
(local | kfp | vertex | none;
see dermpipe.orchestration.retrain, which submits through the same Backend interface as `dermpipe submit`)."""

from kfp.dsl import Markdown, Output

from dermpipe.componentkit import stage_component


@stage_component()
def retrain(
    request: Output[Markdown], backend: str = "local", training_params: str = "{}", reason: str = "drift detected",
    kfp_host: str = "", template_path: str = "", project: str = "", location: str = "", pipeline_root: str = "",
    feedback_log_root: str = "",
):
    """Start a training run (local / kfp / vertex / none); runs only when the trigger task fired (drift or a
    performance drop).
    feedback_log_root (<serve --log-root>/<model name>): the run also trains on the labelled, logged images."""
    from dermpipe.orchestration.retrain import run  # inside: the body is shipped as source

    run(request, backend, training_params, reason, kfp_host=kfp_host, template_path=template_path, project=project,
        location=location, pipeline_root=pipeline_root, feedback_log_root=feedback_log_root)
