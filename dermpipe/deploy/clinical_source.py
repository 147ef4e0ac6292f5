"""Where a model's clinical calibration (clinical.json + embedding_pca.npz) is, for `dermpipe predict --model`.

The profile stage writes them into its own artifact, and deploy copies them beside model.keras in the registry
version; a run's model artifact (train/model, or a cross-validated ensemble) has none beside it. The operating
points and the OOD calibration still belong to that model, so they are found through the lineage store
($DERMPIPE_HOME/lineage.sqlite, written by every local run): the profile task that read this model artifact, or,
for `--model RUN_ID`, that run's profile task and the model it read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dermpipe import storage
from dermpipe.lineage.store import Store

CLINICAL_FILE = "clinical.json"
PROFILE_TASK = "profile"
WHAT_TO_RUN = ("run the pipeline through its profile step (`dermpipe run`, whose profile task calibrates the model) "
               "or deploy the model and pass --model VERSION")


@dataclass(frozen=True)
class ClinicalSource:
    folder: str  # holds clinical.json (and embedding_pca.npz); '' when none was found
    origin: str  # in words: where it came from, or why there is none and what to run


def _profile_output(store: Store, task_id: int) -> ClinicalSource | None:
    """The profile task's `profile` output when it holds clinical.json, named by the run that wrote it (a cached
    profile task of a later run outputs the same folder)."""
    for name, artifact in store.io(task_id, "output"):
        if name == "profile" and storage.exists(storage.join(artifact.uri, CLINICAL_FILE)):
            writer = store.producers(artifact.id)[0].run_id
            return ClinicalSource(artifact.uri, f"the profile of run {writer} ({artifact.uri})")
    return None


def for_model_folder(folder: str, store: Store | None = None) -> ClinicalSource:
    """The calibration beside model.keras, else that of the profile task that read this model artifact."""
    if storage.exists(storage.join(folder, CLINICAL_FILE)):
        return ClinicalSource(folder, f"{CLINICAL_FILE} beside the model")
    store = store or Store()
    if not store.exists():
        return ClinicalSource("", f"no {CLINICAL_FILE} beside the model and no lineage store at {store.path} to find "
                               f"its profile; {WHAT_TO_RUN}")
    uri = str(Path(folder).resolve()) if not storage.is_gcs(folder) else folder
    artifact = store.artifact_by_uri(uri)
    if artifact is None:
        return ClinicalSource("", f"no {CLINICAL_FILE} beside the model, and {uri} is not a model artifact recorded in "
                               f"the lineage store {store.path} (set DERMPIPE_HOME to the run's home); {WHAT_TO_RUN}")
    profiles = [t for t in reversed(store.consumers(artifact.id)) if t.name == PROFILE_TASK]
    for task in profiles:  # newest first: a model profiled again with other parameters answers with the latest
        found = _profile_output(store, task.id)
        if found:
            return found
    why = "its profile task wrote no clinical.json" if profiles else "no profile task has read this model"
    return ClinicalSource("", f"no {CLINICAL_FILE} beside the model, and {why}; {WHAT_TO_RUN}")


def run_model(run_id: str, store: Store | None = None) -> tuple[str, ClinicalSource] | None:
    """(model folder, calibration) of a recorded run: the model its profile task read (else its train task's
    model) and that profile's clinical.json; None when the store has no such run."""
    store = store or Store()
    if not store.exists() or store.run(run_id) is None:
        return None
    tasks = {t.name: t for t in store.tasks(run_id)}
    for name, output in ((PROFILE_TASK, "input"), ("train", "output")):
        task = tasks.get(name)
        models = [a.uri for n, a in store.io(task.id, output) if n == "model"] if task else []
        if models:
            found = _profile_output(store, tasks[PROFILE_TASK].id) if PROFILE_TASK in tasks else None
            return models[0], found or for_model_folder(models[0], store)
    return None
