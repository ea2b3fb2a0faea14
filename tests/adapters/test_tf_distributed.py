"""TensorFlow data-parallel training: MultiWorkerMirroredStrategy (RING on CPU) over TF_CONFIG with
llmasos' own tf.function step — Keras 3's fit is not involved (keras-team/keras#20585).

Two worker processes on loopback ports, each in a subprocess with a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmasos import distributed
from llmasos.launch import free_ports

TESTS = Path(__file__).parent.parent
sys.path.insert(0, str(TESTS))
import ddp_ranks  # noqa: E402

pytestmark = pytest.mark.tf
TIMEOUT = 300


def test_mwms_ranks_equal_one_process_and_each_other_and_a_control_without_allreduce_does_not(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]), "OMP_NUM_THREADS": "1",
           distributed.TIMEOUT_ENV: "60"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    workers = [subprocess.Popen([sys.executable, str(TESTS / "ddp_ranks.py"), str(tmp_path), "tf"],
                                env={**env, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                                     "task": {"type": "worker", "index": i}})},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    try:
        outputs = [worker.communicate(timeout=TIMEOUT)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-4000:] for o in outputs)
    ddp_ranks.compare(tmp_path, "tf")


def test_a_strategy_asked_for_after_tensorflow_ran_says_what_to_do(tmp_path):
    code = ("import json, os, sys\n"
            "from llmasos.adapters.tf.distributed import join\n"
            "from llmasos.distributed import Rank\n"
            "from llmasos.errors import TrainingError\n"
            "import tensorflow as tf\n"
            "tf.constant(1.0) + 1.0\n"
            "try:\n"
            "    join(Rank(0, 2, 0, 'tf'), 5)\n"
            "except TrainingError as err:\n"
            "    print('refused:', err)\n")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert "refused: TensorFlow sets up its collectives before its first op" in done.stdout, done.stderr[-3000:]
