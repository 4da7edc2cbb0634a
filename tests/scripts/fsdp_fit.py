"""Fits of the demo under Lightning's ModelParallelStrategy (FSDP2, ``fully_shard``) on CPU over
gloo with 2 processes; run as a script because the launcher re-executes the command per rank.

    python tests/scripts/fsdp_fit.py OUT_DIR MODE

MODE:
    monitored   the planted shortcut, trained with SaliencyMonitor; rank 0 saves the full weights
    plain       the same training without the callback (its weights must be bitwise the same)
    failing     attribution raises on rank 1 only (its forward function): no rank may hang
    uneven      5 probe examples on 2 ranks, then 1 (one rank's share is empty)
Each rank writes ``rank<r>.json``; only rank 0 writes records.
"""
import json
import os
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import ModelParallelStrategy

from lightning_saliency import AttributionConfig, EvidenceSettings, ModelIO, OutputSettings, SaliencyMonitor
from lightning_saliency.demo import Shortcut, TextClassifier, build_demo


class ShardedClassifier(TextClassifier):
    """The demo classifier with FSDP2: every encoder layer and then the whole model sharded."""

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        for layer in self.model.bert.encoder.layer:
            fully_shard(layer, mesh=mesh)
        fully_shard(self.model, mesh=mesh)


def failing_on_rank_one(pl_module, inputs):
    if pl_module.trainer.global_rank == 1:
        raise RuntimeError("planted failure on rank 1")
    return pl_module.model(**inputs)


def full_weights(module):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def fit(out: Path, mode: str) -> None:
    L.seed_everything(0, verbose=False)
    n_train, epochs = (480, 4) if mode in ("monitored", "plain") else (64, 1)
    demo, data, tokenizer = build_demo(Shortcut("single"), n_train=n_train, n_val=64, seed=0, batch_size=16,
                                       shortcut_rate=1.0, sentiment_noise=0.5)
    module = ShardedClassifier(demo.model, lr=5e-3)
    callbacks = []
    monitor = None
    if mode != "plain":
        forward = failing_on_rank_one if mode == "failing" else None  # None: the model's own forward
        monitor = SaliencyMonitor(
            tokenizer=tokenizer, num_examples={"uneven": 5}.get(mode, 16),
            attribution=AttributionConfig(n_steps=8, max_tokens=96),  # several chunks per shard
            evidence=EvidenceSettings(artifact_examples=0 if mode != "monitored" else 20_000),
            output=OutputSettings(example_images=False), model_io=ModelIO(forward_fn=forward))
        callbacks.append(monitor)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        max_epochs=epochs, logger=TensorBoardLogger(out, name="run"), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out, callbacks=callbacks,
        use_distributed_sampler=True)
    trainer.fit(module, datamodule=data)
    summary = {"rank": trainer.global_rank}
    if monitor is not None:
        summary["history"] = [r["label"] for r in monitor.history]
        summary["statuses"] = [r["status"] for r in monitor.history]
    weights = full_weights(module)
    if trainer.global_rank == 0:
        torch.save(weights, out / "weights.pt")
        tokenizer.save_pretrained(out / "tokenizer")
    if mode == "uneven":  # the same fit with one probe example: rank 1's share is empty
        L.seed_everything(0, verbose=False)
        fresh, data, tokenizer = build_demo(Shortcut("single"), n_train=n_train, n_val=64, seed=0, batch_size=16)
        one = SaliencyMonitor(tokenizer=tokenizer, num_examples=1, attribution=AttributionConfig(n_steps=8),
                              evidence=EvidenceSettings(artifact_examples=0),
                              output=OutputSettings(example_images=False, dirpath=str(out / "one")))
        L.Trainer(accelerator="cpu", devices=2,
                  strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1), max_epochs=1,
                  logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  default_root_dir=out, callbacks=[one]).fit(ShardedClassifier(fresh.model, lr=5e-3), datamodule=data)
        summary["one"] = [r["status"] for r in one.history]
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(summary))
    # Everything is written. Torch 2.13's gloo teardown at interpreter exit sometimes aborts
    # ("terminate called without an active exception", SIGABRT: 1 fresh-clone CI run in 8), even
    # after destroy_process_group(); so once both ranks are here, leave without the teardown.
    torch.distributed.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    fit(Path(sys.argv[1]), sys.argv[2])
