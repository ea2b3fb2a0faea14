"""One worker process of ``train(nproc=N)`` (:mod:`llmasos.launch` starts N of them):
``python -m llmasos.worker FOLDER`` trains the job in ``FOLDER`` as this process's rank.

A worker that fails writes ``error-RANK.json`` (its error type, message and traceback) beside the
job, from which the launching process raises the same llmasos error.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from . import distributed
from .launch import open_dataset, rebuild_callback
from .model import Model
from .optim import Optimizer


def work(folder: Path) -> None:
    """One worker: train the job in ``folder`` as this process's rank, rank 0 saving the result."""
    job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    distributed.join(job["framework"])   # before the model is built: TensorFlow needs its strategy first
    model = Model.load(folder / "model.h5", framework=job["framework"], max_elements=None)
    optimizer = None if job["optimizer"] is None else Optimizer.from_config(job["optimizer"])
    options = dict(job["options"])
    if options.get("adversarial") is not None:   # plain data in job.json: the attack is built here
        from .robust.training import attack_from_config

        options["adversarial"] = attack_from_config(options["adversarial"])
    model.train(open_dataset(job["train"]), optimizer, validation=open_dataset(job["validation"]),
                callbacks=[rebuild_callback(c) for c in job["callbacks"]], **options)
    model.save(folder / "result.h5")


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    try:
        work(folder)
    except BaseException as err:
        rank = distributed.context()
        report = {"rank": 0 if rank is None else rank.rank, "type": type(err).__name__, "message": str(err),
                  "traceback": traceback.format_exc()}
        (folder / f"error-{report['rank']}.json").write_text(json.dumps(report), encoding="utf-8")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
