"""The train task's placement and parameters in the compiled IR YAML."""

import yaml

from dermpipe.pipelines.compile import compile_training
from dermpipe.pipelines.placement import Placement


def test_train_task_gets_node_selector_and_the_training_parameters(tmp_path):
    placement = Placement(gke_accelerator="nvidia-l4", train_accelerator_count=2)
    docs = [d for d in yaml.safe_load_all(compile_training(tmp_path / "t.yaml", placement=placement).read_text()) if d]
    train = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert train["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert train["tolerations"][0]["key"] == "nvidia.com/gpu"
    resources = docs[0]["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == "2"
    params = docs[0]["root"]["inputDefinitions"]["parameters"]
    assert params["class_balance"]["defaultValue"] == "weights"
    assert params["monitor"]["defaultValue"] == "val_balanced_accuracy"
    assert params["mixed_precision"]["defaultValue"] == "auto" and params["jit_compile"]["defaultValue"] is False
    train_inputs = docs[0]["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert train_inputs["loss"]["componentInputParameter"] == "loss"
    assert train_inputs["cache"]["componentInputParameter"] == "train_cache"
    assert "curves" in docs[0]["components"]["comp-train"]["outputDefinitions"]["artifacts"]


def test_no_node_selector_by_default(tmp_path):
    docs = [d for d in yaml.safe_load_all(compile_training(tmp_path / "t.yaml").read_text()) if d]
    assert "nodeSelector" not in docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
