"""Data-parallel training: shards, rank context, DDP under torch's launcher, train(nproc=...), the CLI.

Every multi-process run is a subprocess with a timeout, on the loopback with free ports, so a hang
fails its test instead of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from llmasos import Dataset, distributed
from llmasos.errors import TrainingError

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import ddp_ranks  # noqa: E402  (the program every rank runs; its models and data serve the tests too)

ENV = {"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
       distributed.TIMEOUT_ENV: "60"}
TIMEOUT = 240


def _run(command: list[str], cwd: Path | str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TF_CONFIG"):
        env.pop(key, None)
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


# -- shards and ranks (one process) -----------------------------------------------------------------


def test_shards_split_every_global_batch_evenly_and_completely():
    for n in range(0, 70):
        for world in (1, 2, 3, 4):
            parts = [distributed.shard(n, rank, world) for rank in range(world)]
            assert parts[0].start == 0 and parts[-1].stop == n
            assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shards_over_two_epochs_are_disjoint_cover_the_data_and_change_order():
    n = 201                                     # 3 global batches of 64 and one of 9 (5 + 4)
    data = Dataset(np.arange(n, dtype=np.float32)[:, None], np.zeros(n, dtype=np.int64), mode="train")
    seen = {}
    for epoch in (1, 2):
        for rank in (0, 1):
            rows = [x[distributed.shard(len(x), rank, 2), 0] for x, _ in
                    data.batches(64, shuffle=True, seed=0, epoch=epoch)]
            seen[epoch, rank] = np.concatenate(rows).astype(int)
        assert not set(seen[epoch, 0]) & set(seen[epoch, 1])
        assert sorted([*seen[epoch, 0], *seen[epoch, 1]]) == list(range(n))
        assert len(seen[epoch, 0]) == 101 and len(seen[epoch, 1]) == 100
    assert set(seen[1, 0]) != set(seen[2, 0])           # another epoch, other rows on each rank
    assert list(seen[1, 1]) != list(seen[2, 1])


def test_rank_context_comes_from_the_launchers_environment(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TF_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.context() is None and distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.context() == distributed.Rank(3, 4, 1, "torch") and not distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "1")        # torchrun with one process: nothing to share
    assert distributed.context() is None
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, '
                                    '"task": {"type": "worker", "index": 1}}')
    assert distributed.context() == distributed.Rank(2, 3, 0, "tf")
    monkeypatch.setenv("TF_CONFIG", "cluster=a:1")
    with pytest.raises(TrainingError, match="TF_CONFIG is not the JSON"):
        distributed.context()


def test_nproc_is_refused_when_bad_or_when_already_a_rank(monkeypatch, digits):
    x, y = digits[0][:64], digits[1][:64]
    model = ddp_ranks.mlp("torch")
    with pytest.raises(TrainingError, match="nproc must be a positive int"):
        model.train(Dataset(x, y), epochs=1, nproc=0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainingError, match="already is one rank"):
        model.train(Dataset(x, y), epochs=1, nproc=2)


def test_a_callback_workers_cannot_rebuild_is_refused_before_any_worker_starts(digits):
    from llmasos.callbacks import Callback

    x, y = digits[0][:64], digits[1][:64]
    with pytest.raises(TrainingError, match="can rebuild EarlyStopping and Checkpoint callbacks but not Callback"):
        ddp_ranks.mlp("torch").train(Dataset(x, y), epochs=1, nproc=2, callbacks=[Callback()])


def test_callbacks_reach_the_workers_as_plain_data_with_their_settings(tmp_path):
    import json

    from llmasos.callbacks import Checkpoint, EarlyStopping
    from llmasos.launch import _callback_config, rebuild_callback

    stopper = EarlyStopping(patience=2, monitor="val_accuracy", min_delta=0.01, restore_best=False)
    again = rebuild_callback(json.loads(json.dumps(_callback_config(stopper))))
    assert type(again) is EarlyStopping
    assert (again.patience, again.monitor, again.mode, again.min_delta, again.restore_best) == \
        (2, "val_accuracy", "auto", 0.01, False)          # "auto" decides max for accuracy in the worker
    saver = rebuild_callback(json.loads(json.dumps(_callback_config(Checkpoint("ck-{epoch}.h5", every=3)))))
    assert (type(saver), saver.path, saver.every) == (Checkpoint, os.path.abspath("ck-{epoch}.h5"), 3)


# -- torch, several processes ----------------------------------------------------------------------------


@pytest.mark.torch
def test_ddp_ranks_equal_one_process_and_each_other_and_a_control_without_allreduce_does_not(tmp_path):
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
          str(HERE / "ddp_ranks.py"), str(tmp_path)])
    ddp_ranks.compare(tmp_path, "torch")


@pytest.mark.torch
def test_train_nproc_2_hands_back_weights_state_and_a_checkpoint_that_resumes_at_nproc_1(tmp_path):
    # one launch; in a subprocess so that a hang fails this test only
    script = textwrap.dedent(f"""
        import ddp_ranks
        flat = lambda m: ddp_ranks.flat(m.get_weights())
        whole = ddp_ranks.train(ddp_ranks.mlp(), 300, epochs=2)
        split = ddp_ranks.train(ddp_ranks.mlp(), 300, epochs=1, nproc=2, checkpoint={str(tmp_path / "ck.h5")!r})
        assert split.history["epoch"] == [1] and split._step == 5, (split.history, split._step)
        assert abs(split.history["loss"][0] - whole.history["loss"][0]) < 1e-6
        ddp_ranks.train(split, 300, epochs=1)              # goes on here from the state handed back
        resumed = ddp_ranks.train(ddp_ranks.mlp(), 300, epochs=2, resume={str(tmp_path / "ck.h5")!r})
        for other in (split, resumed):
            assert other.history["epoch"] == [1, 2]
            assert ddp_ranks.max_diff(flat(other), flat(whole)) <= 1e-5, ddp_ranks.max_diff(flat(other), flat(whole))
        print("ok")
    """)
    assert _run([sys.executable, "-c", script], cwd=tmp_path).stdout.strip().endswith("ok")


@pytest.mark.torch
def test_cli_train_with_training_nproc_2_end_to_end(tmp_path):
    import pandas as pd
    import yaml

    from llmasos import Model
    from llmasos.cli import main

    x, y = ddp_ranks.digits(250)
    frame = {f"p{i}": x[:, i] for i in range(64)}
    pd.DataFrame({**frame, "label": y}).to_csv(tmp_path / "train.csv", index=False)
    config = {"framework": "torch", "model": {"input_dim": 64, "output_dim": 10, "layers": [
        {"kind": "Dense", "size": 16, "activation": "relu"}, {"kind": "Dense", "size": 10, "activation": "softmax"}]},
        "data": {"train": "train.csv"}, "training": {"epochs": 2, "batch_size": 64, "nproc": 2},
        "output": "two.h5"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = _run([sys.executable, "-m", "llmasos", "train", "config.yaml"], cwd=tmp_path)
    assert "2 processes" in done.stdout and done.stdout.count("epoch 2/2:") == 1, done.stdout
    assert main(["train", str(tmp_path / "config.yaml"), "--nproc", "1", "--out", str(tmp_path / "one.h5")]) == 0
    two, one = Model.load(tmp_path / "two.h5"), Model.load(tmp_path / "one.h5")
    assert ddp_ranks.max_diff(ddp_ranks.flat(two.get_weights()), ddp_ranks.flat(one.get_weights())) <= 1e-5
    assert two.history["loss"] == pytest.approx(one.history["loss"], abs=1e-6)


@pytest.mark.torch
@pytest.mark.slow
def test_a_failing_worker_raises_its_error_here(tmp_path):
    from llmasos.errors import DataError

    x, y = ddp_ranks.digits(64)
    with pytest.raises(DataError, match=r"rank \d: .*label 1[0-2] is outside"):
        ddp_ranks.mlp().train(Dataset(x, y + 3), epochs=1, nproc=2, progress=False)
