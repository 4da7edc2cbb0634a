"""Batched forward (and backward) passes over rows built in word-embedding space.

A *job* is one row to evaluate: an example index and a method-specific parameter (an alpha on the
IG path, a noise sample, an occluded position). Jobs of all examples are sorted by example length
and cut into chunks whose padded token count stays under ``max_tokens`` so the steps x batch
expansion never exceeds a memory budget; each chunk is padded only to its own longest example.
The word-embedding layer's output is replaced by the rows' embeddings through a forward hook, so
position and token-type embeddings (added after it) are those of the real input.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional, Sequence

import torch
from torch import nn

from lightning_saliency.attribution.lockstep import Lockstep, LockstepAborted
from lightning_saliency.attribution.targets import TargetSpec, extract_logits
from lightning_saliency.attribution.tokens import TokenBatch

ForwardFn = Callable[[nn.Module, dict], Any]
PADDING_SHARE = 0.125  # the most of a chunk's tokens that may be padding (more rows start a new chunk)
SMALL_CHUNK = 512  # below this many tokens a pass costs about the same whatever its padding: fill it
Builder = Callable[[int, list], torch.Tensor]


@dataclass
class Job:
    example: int
    param: Any


@dataclass
class RowGroup:
    """Consecutive rows of one example inside a chunk, handed to a consumer."""

    example: int
    params: list
    rows: slice
    length: int


def default_forward(model: nn.Module, inputs: dict) -> Any:
    return model(**inputs)


def direct_forward(model: nn.Module, inputs: dict) -> Any:
    """The Hugging Face model held inside ``model`` (or ``model`` itself), called directly."""
    from lightning_saliency.attribution.embedding import find_hf_model

    return (find_hf_model(model) or model)(**inputs)


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    """Whether the Hugging Face model inside ``model`` takes ``logits_to_keep`` (transformers >= 4.50)."""
    import inspect

    from lightning_saliency.attribution.embedding import find_hf_model

    found = find_hf_model(model)
    try:
        return found is not None and "logits_to_keep" in inspect.signature(found.forward).parameters
    except (TypeError, ValueError):
        return False


class PathEvaluator:
    """Evaluates jobs in token-budgeted chunks on a model already in isolated eval mode."""

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module,
        batch: TokenBatch,
        spec: TargetSpec,
        pad_id: int,
        forward_fn: Optional[ForwardFn] = None,
        forward_context: Optional[Callable[[], ContextManager]] = None,
        max_tokens: int = 4096,
        progress: Optional[Callable[[int], None]] = None,
        lockstep: Optional[Lockstep] = None,
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}.")
        self.model, self.layer, self.batch, self.spec = model, layer, batch, spec
        self.pad_id = pad_id
        self.lockstep = lockstep  # sharded parameters: every rank makes the same passes (see lockstep.py)
        self.target_keys = spec.task_object.target_keys  # read by the head, not given to the model
        self.forward_fn = forward_fn or default_forward
        self.forward_context = forward_context or nullcontext
        self.max_tokens = max_tokens
        self.progress = progress
        self.examples = [batch.example(i) for i in range(batch.size)]
        self.lengths = [int(n) for n in batch.lengths()]
        self.choices = int(batch.input_ids[0, ..., 0].numel())
        self.targets: Optional[torch.Tensor] = None
        weight = getattr(layer, "weight", None)
        # A causal LM's head over every position is most of the work (rows x length x vocabulary
        # logits, and their backward) when only the attributed position counts: ask the model for
        # the logits at the chunk's attributed positions alone where it accepts `logits_to_keep`.
        self.keep_logits = spec.task_object.last_logits_only and _accepts_logits_to_keep(model)
        self.device = weight.device if weight is not None else batch.input_ids.device
        self.dtype = weight.dtype if weight is not None and weight.is_floating_point() else torch.float32

    def over(self, batch: TokenBatch) -> "PathEvaluator":
        """An evaluator with these settings (model, layer, forward, budget, progress) over ``batch``."""
        return PathEvaluator(self.model, self.layer, batch, self.spec, self.pad_id, self.forward_fn,
                             self.forward_context, self.max_tokens, self.progress, self.lockstep)

    def embedding_access(self) -> ContextManager:
        """Entered around word-embedding lookups: with sharded parameters, the embedding's FSDP unit
        is gathered for the block (once per block on every rank)."""
        return self.lockstep.unsharded(self.model, self.layer) if self.lockstep is not None else nullcontext()

    def agree_any(self, flag: bool) -> bool:
        """``flag``, or under lockstep whether it holds on any rank (a loop of passes goes on while
        some rank still needs it, the others running empty batches of passes)."""
        return self.lockstep.any(flag) if self.lockstep is not None else flag

    def embed(self, example: int, ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Word embeddings (float32) of an example's tokens, or of ``ids`` shaped like them."""
        ids = self.examples[example]["input_ids"] if ids is None else ids
        with torch.no_grad():
            return self.layer(ids.to(self.device)).float()

    def chunks(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """Length-sorted chunks of jobs whose padded token count stays within ``max_tokens`` and
        whose padding stays under ``PADDING_SHARE`` of it (chunks under ``SMALL_CHUNK`` tokens
        excepted). Without the second bound, rows of very different lengths (ERASER's 10%
        sufficiency rows next to its 90% comprehensiveness rows) would share a chunk and be padded
        to the longest: a fifth of the faithfulness work, measured on MiniLM, was padding."""
        ordered = sorted(jobs, key=lambda job: (self.lengths[job.example], job.example))
        chunks: list[list[Job]] = []
        current: list[Job] = []
        real = 0
        for job in ordered:
            row_tokens = self.lengths[job.example] * self.choices
            padded = (len(current) + 1) * row_tokens  # rows are sorted: this row is the widest
            wasteful = padded > SMALL_CHUNK and padded - real - row_tokens > PADDING_SHARE * padded
            if current and (padded > self.max_tokens or wasteful):
                chunks.append(current)
                current, real = [], 0
            current.append(job)
            real += row_tokens
        if current:
            chunks.append(current)
        return chunks

    def _collate(self, chunk: list[Job], build: Builder) -> tuple[torch.Tensor, dict, list[RowGroup]]:
        width = max(self.lengths[job.example] for job in chunk)
        groups: list[RowGroup] = []
        for job in chunk:
            if groups and groups[-1].example == job.example:
                groups[-1].params.append(job.param)
            else:
                groups.append(RowGroup(job.example, [job.param], slice(0, 0), self.lengths[job.example]))
        embeddings, inputs = [], {key: [] for key in self.examples[0]}
        # Targets of their own length (a seq2seq target) are padded to the chunk's longest.
        sequence_width = {key: max(int(self.examples[job.example][key].shape[-1]) for job in chunk)
                          for key in self.batch.sequences}
        offset = 0
        for group in groups:
            count = len(group.params)
            group.rows = slice(offset, offset + count)
            offset += count
            pad = width - group.length
            rows = build(group.example, group.params)
            embeddings.append(nn.functional.pad(rows, (0, 0, 0, pad)))
            for key, value in self.examples[group.example].items():
                fill = self.pad_id if key == "input_ids" else (-100 if key in self.target_keys else 0)
                extra = sequence_width[key] - value.shape[-1] if key in sequence_width else pad
                padded = nn.functional.pad(value, (0, extra), value=fill)
                inputs[key].append(padded.unsqueeze(0).expand(count, *padded.shape))
        stacked = {key: torch.cat(values).to(self.device) for key, values in inputs.items()}
        return torch.cat(embeddings), stacked, groups

    def _last_positions(self, groups: list[RowGroup]) -> torch.Tensor:
        return torch.cat([torch.full((len(g.params),), g.length - 1, dtype=torch.long) for g in groups])

    def run(
        self,
        jobs: Sequence[Job],
        build: Builder,
        consume: Callable[..., None],
        need_grad: bool,
        extra_inputs: Optional[dict] = None,
    ) -> None:
        """Evaluate ``jobs``; ``consume(group, head, scores, grads, output)`` receives each example's rows.

        ``head`` is the per-row score vector ``(k, classes)``, ``scores`` the attributed scalar
        (only when targets are set), ``grads`` the float32 gradient of ``scores`` with respect to
        the rows' word embeddings (when ``need_grad``), ``output`` the raw model output of the chunk.
        """
        chunks = self.chunks(jobs)
        if self.lockstep is None:
            for chunk in chunks:
                self._pass(chunk, build, consume, need_grad, extra_inputs, [])
            return
        self._run_in_step(chunks, build, consume, need_grad, extra_inputs)

    def _run_in_step(self, chunks: list[list[Job]], build: Builder, consume: Callable[..., None], need_grad: bool,
                     extra_inputs: Optional[dict]) -> None:
        """:meth:`run` when every forward is a collective: as many passes as the rank that needs
        most, padding passes for the rest, and one failure agreement before each pass. A pass
        that fails before the model ran is replaced by a padding pass (its collectives), and every
        rank then raises :class:`LockstepAborted` at the next agreement."""
        total, failed = self.lockstep.agree(len(chunks), False)
        failure: Optional[BaseException] = None
        for k in range(total):
            if k:
                _, failed = self.lockstep.agree(0, failure is not None)
            if failed:
                break
            started: list[int] = []
            try:
                if k < len(chunks) and failure is None:
                    self._pass(chunks[k], build, consume, need_grad, extra_inputs, started)
                else:
                    self._padding_pass(need_grad, extra_inputs)
            except Exception as error:
                failure = error
                if not started:  # the model was not reached: make its collectives with a padding pass
                    self._padding_pass(need_grad, extra_inputs)
        _, failed = self.lockstep.agree(0, failure is not None)
        if failed:
            raise LockstepAborted(f"{type(failure).__name__}: {failure}" if failure is not None
                                  else "a model pass failed on another rank") from failure

    def _padding_pass(self, need_grad: bool, extra_inputs: Optional[dict]) -> None:
        """One row of zero embeddings shaped like example 0, through the same forward (and
        backward): the collectives of a pass, none of its results. When the forward function
        itself fails here before reaching the model (it failed on this rank), the model is called
        directly (the Hugging Face model inside): the same units, so the same collectives."""
        hidden = int(self.layer.weight.shape[-1])
        shape = tuple(self.examples[0]["input_ids"].shape) + (hidden,)

        def zeros(example: int, params: list) -> torch.Tensor:
            return torch.zeros((len(params),) + shape)

        started: list[int] = []
        try:
            self._pass([Job(0, None)], zeros, lambda *results: None, need_grad, extra_inputs, started, progress=False)
        except Exception:
            if started:  # failed inside the model: its collectives cannot be evened out
                raise
            self._pass([Job(0, None)], zeros, lambda *results: None, need_grad, extra_inputs, [], progress=False,
                       forward_fn=direct_forward)

    def _pass(self, chunk: list[Job], build: Builder, consume: Callable[..., None], need_grad: bool,
              extra_inputs: Optional[dict], started: list[int], progress: bool = True,
              forward_fn: Optional[ForwardFn] = None) -> None:
        """One chunk: forward (and backward when ``need_grad``), then ``consume``. ``started``
        gets an entry once the model's embedding ran (its collectives have begun)."""
        embeddings, inputs, groups = self._collate(chunk, build)
        if self.spec.task_object.model_takes_targets:
            targets = {key: inputs[key] for key in self.target_keys if key in inputs}
        else:
            targets = {key: inputs.pop(key) for key in self.target_keys if key in inputs}
        if extra_inputs:
            inputs.update(extra_inputs)
        positions = self._last_positions(groups)
        kept = torch.unique(positions) if self.keep_logits else None  # sorted
        if kept is not None:
            inputs["logits_to_keep"] = kept.to(self.device)
        leaf = embeddings.to(self.dtype).detach().requires_grad_(need_grad)
        calls = []

        def substitute(module: nn.Module, args: Any, output: torch.Tensor) -> Optional[torch.Tensor]:
            # Only the first call embeds input_ids; later calls in the same forward (GPT-2 embeds
            # token_type_ids with the same table) are left alone.
            if calls:
                return None
            if output.numel() != leaf.numel():
                raise ValueError(
                    f"The embedding layer {type(module).__name__} produced {tuple(output.shape)}, which does not "
                    f"match the attributed tokens {tuple(leaf.shape)}; pass embedding_layer= for the word embeddings."
                )
            calls.append(1)
            started.append(1)
            return leaf.reshape(output.shape)

        handle = self.layer.register_forward_hook(substitute)
        try:
            with torch.set_grad_enabled(need_grad), self.forward_context():
                output = (forward_fn or self.forward_fn)(self.model, inputs)
                logits = extract_logits(output)
                if kept is not None and logits.dim() == 3 and logits.shape[1] == kept.numel():
                    positions = torch.searchsorted(kept, positions)  # columns of the kept positions
                head = self.spec.head(logits, positions, targets)
                scores = None
                if self.targets is not None:
                    row_targets = torch.cat([self.targets[g.example].repeat(len(g.params)) for g in groups])
                    scores = self.spec.score(head, row_targets)
        finally:
            handle.remove()
        if not calls:
            raise ValueError(
                f"The embedding layer {type(self.layer).__name__} was not called by the model's forward; "
                "pass embedding_layer= naming the layer that embeds input_ids."
            )
        grads = None
        if need_grad:
            if scores is None:
                raise RuntimeError("Gradients need targets; resolve targets before a gradient pass.")
            (grads,) = torch.autograd.grad(scores.sum(), leaf)
            grads = grads.float()
        head = head.detach().float()
        for group in groups:
            consume(
                group,
                head[group.rows],
                None if scores is None else scores.detach()[group.rows],
                None if grads is None else grads[group.rows][..., : group.length, :],
                output,
            )
        if self.progress is not None and progress:
            self.progress(len(chunk))
