"""`llmasos train CONFIG --kubeflow JOB`: the Kubeflow PyTorchJob / TFJob it writes, parsed back."""

from __future__ import annotations

import pytest
import yaml

from llmasos.cli import main
from llmasos.errors import ConfigError
from llmasos.kubeflow import job_name, manifest


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "framework": "torch", "model": {"input_dim": 4, "output_dim": 3, "name": "Iris_MLP",
                                        "layers": [{"kind": "Dense", "size": 3, "activation": "softmax"}]},
        "data": {"train": "train.csv"}, "training": {"epochs": 2, "nproc": 3}}))
    (tmp_path / "train.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n")
    return path


def test_pytorchjob_runs_llmasos_train_on_the_config_with_the_configs_nproc(config, tmp_path, capsys):
    out = tmp_path / "job.yaml"
    assert main(["train", str(config), "--kubeflow", str(out), "--image", "reg.example/llmasos:1", "--gpus", "1",
                 "--pvc", "training-data"]) == 0
    assert "PyTorchJob" in capsys.readouterr().out
    text = out.read_text()
    assert "&id" not in text and "*id" not in text         # plain YAML, no anchors for kubectl's sake
    job = yaml.safe_load(text)
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == ("kubeflow.org/v1", "PyTorchJob", "iris-mlp")
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert (specs["Master"]["replicas"], specs["Worker"]["replicas"]) == (1, 2)       # training.nproc: 3
    for replica in specs.values():
        pod = replica["template"]["spec"]
        container = pod["containers"][0]
        assert container["name"] == "pytorch"                   # the operator looks for this name
        assert container["image"] == "reg.example/llmasos:1"
        assert container["command"] == ["python", "-m", "llmasos", "train", str(config), "--framework", "torch"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container["volumeMounts"][0]["mountPath"] == container["workingDir"] == "/workspace"
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "training-data"


def test_tfjob_for_tensorflow_has_n_workers_and_nproc_overrides_the_config(config, tmp_path):
    out = tmp_path / "tfjob.yaml"
    assert main(["train", str(config), "--framework", "tf", "--nproc", "4", "--kubeflow", str(out),
                 "--job-name", "digits-tf"]) == 0
    job = yaml.safe_load(out.read_text())
    assert (job["kind"], job["metadata"]["name"]) == ("TFJob", "digits-tf")
    assert list(job["spec"]["tfReplicaSpecs"]) == ["Worker"]    # worker 0 leads: no chief needed
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 4
    container = worker["template"]["spec"]["containers"][0]
    assert container["name"] == "tensorflow" and container["command"][-1] == "tf"
    assert "resources" not in container and "volumes" not in worker["template"]["spec"]


def test_one_replica_is_a_master_alone_and_bad_names_are_refused():
    job = manifest("torch", "c.yaml", name="one", replicas=1)
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    assert job_name("My Model_v2!") == "my-model-v2" and job_name("___") == "llmasos-train"
    with pytest.raises(ConfigError, match="DNS label"):
        manifest("torch", "c.yaml", name="Not_A_Label", replicas=2)
    with pytest.raises(ConfigError, match="torch .PyTorchJob. or tf .TFJob."):
        manifest("jax", "c.yaml", name="x", replicas=2)
