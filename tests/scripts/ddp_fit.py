"""Fit the demo with SaliencyMonitor, in one process or under DDP on CPU (gloo); run as a script
because Lightning's DDP launcher re-executes the command for every rank.

    python tests/scripts/ddp_fit.py OUT_DIR {single,ddp,ddp_probe,single_causal,ddp_causal,ddp_stop} NUM_EXAMPLES [FAILING_RANK]

FAILING_RANK makes attribution raise on that rank only (to check that no rank is left waiting);
with ddp_probe, building the probe set raises there instead, before the runner's collectives.
The *_causal modes loosen the shortcut rules so that runs have suspects to check causally.
"""
import json
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for the tests' helpers
from tests.builders import grouped  # noqa: E402
from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import Shortcut, build_demo
from lightning_saliency.monitor.metrics import ShortcutRules


SEEN = {}  # run label -> the distinct rows (unpadded ids) this rank passed through the model


def source_examples(rows):
    """The rows that are no deletion of another row: the examples the rows came from (ERASER's
    faithfulness rows are examples with tokens deleted; attribution rows carry the example's ids)."""
    def within(short, long):
        remaining = iter(long)
        return all(token in remaining for token in short)

    return [row for row in rows if not any(row != other and within(row, other) for other in rows)]


def failing_forward(pl_module, inputs, failing_rank):
    if pl_module.trainer.global_rank == failing_rank:
        raise RuntimeError("planted failure")
    label = "start" if pl_module.trainer.global_step == 0 else "000"
    for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"]):
        SEEN.setdefault(label, set()).add(tuple(ids[mask.bool()].tolist()))
    return pl_module.model(**inputs)


class TokenizerFailingOnRank:
    """The tokenizer, except that tokenizing texts (building an examples= probe set) raises on one rank."""

    def __init__(self, tokenizer, rank):
        self.tokenizer, self.rank = tokenizer, rank

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __len__(self):
        return len(self.tokenizer)

    def __call__(self, *args, **kwargs):
        import torch

        if torch.distributed.is_initialized() and torch.distributed.get_rank() == self.rank:
            raise RuntimeError("planted probe failure")
        return self.tokenizer(*args, **kwargs)


def stop_on_shortcut(out: Path, num_examples: int) -> None:
    """The planted word under DDP with stop_on_shortcut: every rank must stop at the same step."""
    L.seed_everything(0, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("single"), n_train=640, n_val=96, sentiment_noise=0.5,
                                         shortcut_rate=1.0, batch_size=16, seed=0)
    module.lr = 5e-3
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, num_examples=num_examples, n_steps=8, faithfulness=False, every_n_train_steps=5, stop_on_shortcut=True))
    trainer = L.Trainer(accelerator="cpu", strategy="ddp", devices=2, max_epochs=8, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=out, callbacks=[monitor])
    trainer.fit(module, datamodule=data)
    timeline = {t: vars(e) for t, e in monitor.engine.timeline.items()}
    summary = {"rank": trainer.global_rank, "global_step": trainer.global_step,
               "max_steps": 8 * len(data.train_dataloader()) // 2, "timeline": timeline}
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(summary))


def main(out: Path, mode: str, num_examples: int, failing_rank: int = -1) -> None:
    if mode == "ddp_stop":
        return stop_on_shortcut(out, num_examples)
    L.seed_everything(0, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("single"), n_train=64, n_val=24, seed=0, batch_size=8)
    options = {}
    if mode == "ddp_probe":
        tokenizer = TokenizerFailingOnRank(tokenizer, failing_rank)
        options["examples"] = ["the zorbly movie was great", "a dull film", "great acting", "poor plot"]
        failing_rank = -1
    if mode.endswith("_causal"):
        options["shortcut"] = ShortcutRules(min_examples=2, min_fraction=0.0, top1_rate=0.3, min_share=0.0,
                                            min_rise=-1.0, min_lift=1.0, min_z=0.1)
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, methods=("integrated_gradients", "gradient"), num_examples=num_examples, n_steps=8, max_tokens=64, forward_fn=lambda pl_module, inputs: failing_forward(pl_module, inputs, failing_rank), **options))
    single = mode.startswith("single")
    trainer = L.Trainer(
        accelerator="cpu", strategy="auto" if single else "ddp", devices=1 if single else 2, max_epochs=1,
        logger=TensorBoardLogger(out, name="run"), enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=out, callbacks=[monitor],
    )
    trainer.fit(module, datamodule=data)
    summary = {"rank": trainer.global_rank, "history": [r["label"] for r in monitor.history],
               "statuses": [r["status"] for r in monitor.history],
               "completed": monitor.state_dict()["completed"],
               "distinct_examples": {label: len(source_examples(seen)) for label, seen in SEEN.items()}}
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(summary))
    if mode.endswith("_causal") and trainer.global_rank == 0:
        recheck_in_one_process(out, monitor, module, tokenizer)


def recheck_in_one_process(out, monitor, module, tokenizer):
    """The last run's causal checks again, unsharded, on the same model (training ended with that run)."""
    from contextlib import nullcontext
    from dataclasses import asdict

    from lightning_saliency.attribution import AttributionConfig, SpecialTokens
    from lightning_saliency.monitor.evidence.causal import CausalSettings, confirm_suspects
    from lightning_saliency.monitor.evidence.tracker import order_from
    from lightning_saliency.monitor.probe import probe_from_dataloader
    from lightning_saliency.schema.records import RunRecord
    from lightning_saliency.monitor.model_access import ModelAccess

    record = RunRecord.from_json(monitor.history[-1])
    order = order_from(record)
    access = ModelAccess(module, lambda m, inputs: m.model(**inputs), tokenizer, SpecialTokens.from_tokenizer(tokenizer),
                         None, nullcontext)
    loader = module.trainer.datamodule.val_dataloader()
    examples = probe_from_dataloader(loader, 256, 1, tokenizer=tokenizer)  # the monitor's slice: seed + 1
    checks = confirm_suspects(access, lambda: examples, monitor.engine.probe, order.candidates, order.vocabulary,
                              CausalSettings(AttributionConfig(max_tokens=64), "classification", 0, 512))
    (out / "unsharded_causal.json").write_text(json.dumps([asdict(c) for c in checks]))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], *map(int, sys.argv[3:]))
