"""Public entry points: :func:`attribute` computes several methods in shared passes."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, ContextManager, Optional, Sequence, Union

from torch import nn

from lightning_saliency.attribution.context import AttributionConfig, AttributionContext
from lightning_saliency.attribution.evaluator import ForwardFn
from lightning_saliency.attribution.isolation import isolated_eval
from lightning_saliency.attribution.lockstep import Lockstep
from lightning_saliency.attribution.methods import REGISTRY, SharedPasses, method_names
from lightning_saliency.attribution.results import Attributions, MethodAttribution
from lightning_saliency.attribution.targets import TargetArg, TargetSpec
from lightning_saliency.attribution.tokens import SpecialTokens


def check_methods(methods: Union[str, Sequence[str]]) -> tuple[str, ...]:
    """The requested method names, de-duplicated in order; ``ValueError`` naming the choices otherwise."""
    chosen = (methods,) if isinstance(methods, str) else tuple(methods)
    if not chosen:
        raise ValueError(f"No attribution method given; name at least one of {method_names()}.")
    unknown = [m for m in chosen if m not in REGISTRY]
    if unknown:
        raise ValueError(f"Unknown attribution method(s) {unknown}; choose from {method_names()}.")
    return tuple(dict.fromkeys(chosen))


# Fields every run reads, whatever its methods: the chunk budget, the baseline token (also the
# faithfulness and causal checks' replacement), the private seed, and the output options.
GENERAL_FIELDS = frozenset({"baseline", "seed", "max_tokens", "bucket", "return_raw"})


def check_options(config: AttributionConfig, methods: Sequence[str], *defaults: AttributionConfig) -> None:
    """``ValueError`` for an option set away from ``defaults`` that none of ``methods`` reads (e.g.
    ``smoothgrad_samples`` without SmoothGrad): a setting that silently does nothing is a bug.
    A value equal to any of ``defaults`` (default: ``AttributionConfig()``'s) counts as not set.
    A method's options are its registered ``config_fields``."""
    read = {f for name in methods for f in REGISTRY[name].config_fields} | GENERAL_FIELDS
    defaults = defaults + (AttributionConfig(),)
    for name in sorted(set(vars(config)) - read):
        if all(getattr(config, name) != getattr(default, name) for default in defaults):
            owners = [m for m in method_names() if name in REGISTRY[m].config_fields]
            raise ValueError(f"The attribution option {name}={getattr(config, name)!r} is read only by {owners}, and "
                             f"none of them is among the methods {tuple(methods)}. Add the method or drop the option.")


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
    lockstep: Optional[Lockstep] = None,
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
        methods: names from the method registry (:data:`METHODS`): ``integrated_gradients``,
            ``gradient``, ``gradient_x_input``, ``smoothgrad``, ``occlusion``, ``attention``.
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
        lockstep: for a model whose parameters are sharded across ranks (FSDP2): every rank calls
            ``attribute`` with the same methods and options, and the passes are kept in step
            (:class:`~lightning_saliency.attribution.lockstep.Lockstep`).

    Raises:
        ValueError: on bad inputs (empty or all-special sequences, ids outside the vocabulary, an
            attention mask of the wrong shape, outputs without logits, targets out of range).
    """
    chosen = check_methods(methods)
    config = replace(config or AttributionConfig(), **options)
    spec = TargetSpec(task=task, output=output)
    timings: dict[str, float] = {}
    methods_in_order = sorted((REGISTRY[name] for name in chosen), key=lambda m: m.order)
    with isolated_eval(model):
        ctx = AttributionContext(
            model, inputs, config=config, spec=spec, tokenizer=tokenizer, special_tokens=special_tokens,
            embedding_layer=embedding_layer, forward_fn=forward_fn, forward_context=forward_context,
            progress=progress, lockstep=lockstep,
        )
        started = time.perf_counter()
        ctx.resolve(target, with_baseline=any(m.needs_baseline_score for m in methods_in_order))
        timings["resolve"] = time.perf_counter() - started
        shared = SharedPasses(ctx, wants_input_gradient=any(m.uses_input_gradient for m in methods_in_order))
        results: dict[str, MethodAttribution] = {}
        for method in methods_in_order:
            started = time.perf_counter()
            results[method.name] = method.compute(ctx, shared)
            timings[method.name] = time.perf_counter() - started
    return Attributions(
        methods={name: results[name] for name in chosen}, target=ctx.targets, predicted=ctx.predicted,
        probability=ctx.probability, target_score=ctx.target_score, baseline_score=ctx.baseline_score,
        special_mask=ctx.batch.special_mask.cpu(), attention_mask=ctx.batch.attention_mask.bool().cpu(),
        timings=timings,
    )
