"""The cross-validation DAG compiled: a ParallelFor over fold-plan's list, each iteration a GPU train task with
train's placement, collected into cross-validate, whose ensemble every later task takes."""

import yaml

from dermpipe.pipelines.compile import compile_pipeline
from dermpipe.pipelines.placement import Placement


def _documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_each_fold_iteration_is_a_placed_gpu_task(tmp_path):
    placement = Placement(gke_accelerator="nvidia-l4", train_accelerator_count=2)
    docs = _documents(compile_pipeline("training-cv", tmp_path / "cv.yaml", placement=placement,
                                       gpu_image="reg.example/gpu:t", base_image="reg.example/base:t"))
    tasks = docs[0]["root"]["dag"]["tasks"]
    assert "train" not in tasks and "prepare" not in tasks
    loop = tasks["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--fold-plan-Output"
    body = docs[0]["components"]["comp-for-loop-1"]["dag"]["tasks"]["train-fold"]
    assert body["inputs"]["parameters"]["iteration"]["componentInputParameter"] == \
        "pipelinechannel--fold-plan-Output-loop-item"
    executor = docs[0]["deploymentSpec"]["executors"]["exec-train-fold"]["container"]
    assert executor["resources"]["accelerator"]["resourceCount"] == "2" and executor["image"] == "reg.example/gpu:t"
    kubernetes = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-fold"]
    assert kubernetes["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert kubernetes["tolerations"][0]["key"] == "nvidia.com/gpu"
    collected = tasks["cross-validate"]["inputs"]["artifacts"]
    assert collected["models"]["taskOutputArtifact"] == {"outputArtifactKey": "pipelinechannel--train-fold-model",
                                                         "producerTask": "for-loop-1"}
    for name in ("evaluate", "profile", "explain", "gate"):
        assert tasks[name]["inputs"]["artifacts"]["model"]["taskOutputArtifact"] == {
            "outputArtifactKey": "ensemble", "producerTask": "cross-validate"}
    params = docs[0]["root"]["inputDefinitions"]["parameters"]
    assert params["ensemble_weighting"]["defaultValue"] == "uniform" and params["ensemble_top"]["defaultValue"] == 1
    assert body["inputs"]["parameters"]["sweep"]["componentInputParameter"] == "pipelinechannel--sweep"
    assert "leaderboard" in docs[0]["components"]["comp-cross-validate"]["outputDefinitions"]["artifacts"]


def test_vertex_places_each_iteration_on_its_accelerator(tmp_path):
    docs = _documents(compile_pipeline("training-cv", tmp_path / "v.yaml", placement=Placement.for_backend("vertex")))
    resources = docs[0]["deploymentSpec"]["executors"]["exec-train-fold"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
    assert docs[0]["deploymentSpec"]["executors"]["exec-cross-validate"]["container"].get("resources", {}).get(
        "accelerator") is None  # only the fold tasks hold a GPU
