"""Public entry points: :func:`attribute` computes several methods in shared passes."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, ContextManager, Optional, Sequence, Union

import torch
from torch import nn

from lightning_saliency.attribution import integrated, perturbation
from lightning_saliency.attribution.context import AttributionConfig, AttributionContext
from lightning_saliency.attribution.evaluator import ForwardFn
from lightning_saliency.attribution.isolation import isolated_eval
from lightning_saliency.attribution.results import Attributions, MethodAttribution
from lightning_saliency.attribution.targets import TargetArg, TargetSpec
from lightning_saliency.attribution.tokens import SpecialTokens

METHODS = ("integrated_gradients", "gradient", "gradient_x_input", "smoothgrad", "occlusion", "attention")
_INPUT_GRADIENT_METHODS = ("gradient", "gradient_x_input")


def reduce_gradient(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """One score per token from a ``(..., hidden)`` gradient: L2 norm, L1 norm or signed sum."""
    if norm == "l2":
        return grad.norm(dim=-1)
    if norm == "l1":
        return grad.abs().sum(dim=-1)
    return grad.sum(dim=-1)


def _check_methods(methods: Union[str, Sequence[str]]) -> tuple[str, ...]:
    chosen = (methods,) if isinstance(methods, str) else tuple(methods)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise ValueError(f"Unknown attribution method(s) {unknown or chosen}; choose from {METHODS}.")
    return tuple(dict.fromkeys(chosen))


def attribute(
    model: nn.Module,
    inputs: Any,
    methods: Union[str, Sequence[str]] = ("integrated_gradients", "gradient"),
    *,
    tokenizer: Any = None,
    special_tokens: Optional[SpecialTokens] = None,
    embedding_layer: Union[str, nn.Module, None] = None,
    forward_fn: Optional[ForwardFn] = None,
    target: TargetArg = None,
    task: str = "classification",
    output: str = "logit",
    config: Optional[AttributionConfig] = None,
    forward_context: Optional[Callable[[], ContextManager]] = None,
    progress: Optional[Callable[[int], None]] = None,
    **options: Any,
) -> Attributions:
    """Attribute a model's prediction to its input tokens with one or more methods.

    Integrated Gradients, gradient saliency and gradient x input share one sweep of batched
    forward/backward passes. The model is put in eval mode with frozen parameters for the call and
    left exactly as it was (module modes, ``requires_grad``, ``.grad``, RNG state, autograd mode).

    Args:
        model: the model; called as ``forward_fn(model, inputs)`` (default ``model(**inputs)``).
        inputs: a mapping with ``input_ids`` ``(batch, seq)`` or ``(batch, choices, seq)``, optional
            ``attention_mask``, ``token_type_ids`` and other same-shaped inputs; or the ids alone.
        methods: any of ``integrated_gradients``, ``gradient``, ``gradient_x_input``,
            ``smoothgrad``, ``occlusion``, ``attention``.
        tokenizer: a Hugging Face tokenizer; gives special-token ids and the vocabulary size.
        special_tokens: explicit ids when there is no tokenizer.
        embedding_layer: the word-embedding module or its dotted path; found automatically otherwise.
        forward_fn: ``(model, inputs) -> output`` with logits, for custom modules.
        target: ``None`` (predicted class), an int, or one int per example.
        task: ``"classification"``, ``"multiple_choice"`` or ``"causal_lm"``.
        output: attribute the ``"logit"`` (default) or the ``"probability"``.
        config: :class:`AttributionConfig`; keyword ``options`` override its fields.
        forward_context: a context-manager factory entered around every forward pass (e.g. a
            Lightning ``precision_plugin.forward_context``).
        progress: called with the number of rows finished after each chunk.

    Raises:
        ValueError: on bad inputs (empty or all-special sequences, ids outside the vocabulary, an
            attention mask of the wrong shape, outputs without logits, targets out of range).
    """
    chosen = _check_methods(methods)
    config = replace(config or AttributionConfig(), **options)
    spec = TargetSpec(task=task, output=output)
    timings: dict[str, float] = {}
    with isolated_eval(model):
        ctx = AttributionContext(
            model, inputs, config=config, spec=spec, tokenizer=tokenizer, special_tokens=special_tokens,
            embedding_layer=embedding_layer, forward_fn=forward_fn, forward_context=forward_context,
            progress=progress,
        )
        ig_requested = "integrated_gradients" in chosen
        started = time.perf_counter()
        ctx.resolve(target, with_baseline=ig_requested)
        timings["resolve"] = time.perf_counter() - started
        results: dict[str, MethodAttribution] = {}
        input_gradients = None
        if ig_requested:
            started = time.perf_counter()
            if config.tolerance is None:
                path = integrated.fixed_path(ctx, any(m in chosen for m in _INPUT_GRADIENT_METHODS))
            else:
                path = integrated.adaptive_path(ctx)
            per_dimension = path.attributions(ctx)
            scores = ctx.scatter([a.sum(dim=-1) for a in per_dimension])
            delta = scores.flatten(1).sum(dim=1) - (ctx.target_score - ctx.baseline_score)
            results["integrated_gradients"] = MethodAttribution(
                "integrated_gradients", scores, ctx.scatter(per_dimension) if config.return_raw else None,
                delta=delta, steps=path.steps,
            )
            input_gradients = path.input_gradients
            timings["integrated_gradients"] = time.perf_counter() - started
        if any(m in chosen for m in _INPUT_GRADIENT_METHODS) and (input_gradients is None or None in input_gradients):
            started = time.perf_counter()
            input_gradients = integrated.gradient_at_input(ctx)
            timings["gradient"] = time.perf_counter() - started
        if "gradient" in chosen:
            results["gradient"] = _from_dimensions(ctx, "gradient", input_gradients, config.gradient_norm)
        if "gradient_x_input" in chosen:
            products = [g * x for g, x in zip(input_gradients, ctx.inputs)]
            results["gradient_x_input"] = _from_dimensions(ctx, "gradient_x_input", products, "sum")
        for name, run, per_dim in (
            ("smoothgrad", perturbation.smoothgrad, True),
            ("occlusion", perturbation.occlusion, False),
            ("attention", perturbation.attention, False),
        ):
            if name in chosen:
                started = time.perf_counter()
                values = run(ctx)
                if per_dim:
                    results[name] = _from_dimensions(ctx, name, values, config.gradient_norm)
                else:
                    results[name] = MethodAttribution(name, ctx.scatter(values))
                timings[name] = time.perf_counter() - started
    ordered = {m: results[m] for m in chosen}
    return Attributions(
        methods=ordered, target=ctx.targets, predicted=ctx.predicted, probability=ctx.probability,
        target_score=ctx.target_score, baseline_score=ctx.baseline_score,
        special_mask=ctx.batch.special_mask.cpu(), attention_mask=ctx.batch.attention_mask.bool().cpu(),
        timings=timings,
    )


def _from_dimensions(ctx: AttributionContext, name: str, per_dimension: list, norm: str) -> MethodAttribution:
    scores = ctx.scatter([reduce_gradient(v, norm) for v in per_dimension])
    raw = ctx.scatter(per_dimension) if ctx.config.return_raw else None
    return MethodAttribution(name, scores, raw)


def _single(method: str) -> Callable[..., MethodAttribution]:
    def run(model: nn.Module, inputs: Any, **kwargs: Any) -> MethodAttribution:
        return attribute(model, inputs, (method,), **kwargs)[method]

    run.__name__ = method
    run.__qualname__ = method
    run.__doc__ = f"Run :func:`attribute` with ``methods=('{method}',)`` and return its :class:`MethodAttribution`."
    return run


integrated_gradients = _single("integrated_gradients")
gradient = _single("gradient")
gradient_x_input = _single("gradient_x_input")
smoothgrad = _single("smoothgrad")
occlusion = _single("occlusion")
attention = _single("attention")
