"""RNG state in checkpoints: per rank under DDP, weights-only loading."""

import json
import os
import pickle
import random
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sser_lobes.training.rng_state import RNGState


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _draw():
    return [torch.rand(3).tolist(), random.random(), float(np.random.rand())]


def _rank_worker(rank, world, port, folder):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        # Each rank has its own random state (as after different batches).
        torch.manual_seed(100 + rank)
        random.seed(200 + rank)
        np.random.seed(300 + rank)
        state = RNGState()
        state.gather()  # every rank, as SERBrain does before a checkpoint
        if rank == 0:  # SpeechBrain saves on the main process only
            state._save(os.path.join(folder, "rng.ckpt"))
        expected = _draw()
        dist.barrier()
        torch.manual_seed(7)
        random.seed(7)
        np.random.seed(7)
        state._recover(os.path.join(folder, "rng.ckpt"))
        with open(os.path.join(folder, f"rank{rank}.json"), "w") as handle:
            json.dump({"expected": expected, "restored": _draw()}, handle)
    finally:
        dist.destroy_process_group()


def test_each_rank_restores_its_own_state_under_ddp(tmp_path):
    # fork: the workers share the imported modules (no re-import of torch).
    mp.start_processes(
        _rank_worker,
        args=(2, _free_port(), str(tmp_path)),
        nprocs=2,
        start_method="fork",
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for result in ranks:
        assert result["restored"] == result["expected"]
    # The ranks' streams differ, so restoring rank 0's state on rank 1 (the
    # earlier behaviour) would fail the check above.
    assert ranks[0]["expected"] != ranks[1]["expected"]
    saved = torch.load(tmp_path / "rng.ckpt", weights_only=True)
    assert len(saved["ranks"]) == 2


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_rng_file_is_not_executed(tmp_path, caplog):
    marker = tmp_path / "pwned"
    path = tmp_path / "rng.ckpt"
    with open(path, "wb") as handle:
        pickle.dump({"ranks": [_Exploit(marker)]}, handle, protocol=2)
    before = torch.rand(1)
    torch.manual_seed(0)
    RNGState()._recover(path)
    assert not marker.exists()
    assert "not a weights-only RNG state" in caplog.text
    del before


def test_single_process_round_trip_is_weights_only(tmp_path):
    state = RNGState()
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    state.gather()
    state._save(tmp_path / "rng.ckpt")
    expected = _draw()
    torch.load(tmp_path / "rng.ckpt", weights_only=True)  # plain data only
    state._recover(tmp_path / "rng.ckpt")
    assert _draw() == expected
