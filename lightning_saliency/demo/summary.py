"""The per-run summary the examples print at the end of a fit: one line per monitor run."""
from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Optional, Sequence


def _top_word(example: dict, method: str) -> Optional[str]:
    scores = [abs(s) if not special else -1.0 for s, special in zip(example["attributions"][method], example["special"])]
    return example["tokens"][scores.index(max(scores))] if scores and max(scores) >= 0 else None


def summary_lines(history: Sequence[dict[str, Any]], planted: Optional[str] = None,
                  method: str = "integrated_gradients") -> list[str]:
    """One line per epoch run: probe accuracy, mean |IG delta|, then either how often ``planted``
    is the top-1 token of the examples that contain it, or the most frequent top-1 word, the
    suspects, and the causal checks (verdict and removal flip rate)."""
    third = f"{planted} top-1 in" if planted else "most top-1 (IG)"
    lines = [f"{'run':>6} {'probe acc':>9} {'IG delta':>9} {third:>16} {'suspects (IG)':>20}  causal check"]
    for record in history:
        if record.get("step_run") or record.get("status", "ok") != "ok":
            continue
        examples = [e for e in record["examples"] if method in e["attributions"]]
        if planted:
            with_token = [e for e in examples if planted in e["tokens"]]
            top1 = sum(_top_word(e, method) == planted for e in with_token)
            column = f"{top1}/{len(with_token)} examples"
        else:
            counts = Counter(_top_word(e, method) for e in examples)
            word, count = counts.most_common(1)[0] if counts else ("-", 0)
            column = f"{word} ({count}/{len(examples)})"
        scalars = record["metrics"]["scalars"]
        suspects = [s["token"] for s in record["metrics"]["shortcut"].get(method, {}).get("suspects", [])]
        checks = [f"{c['token']}: {'confirmed' if c['confirmed'] else 'not confirmed'}, removal flips "
                  f"{c['deletion']['rate']:.0%}" for c in record["metrics"]["causal"] if c["deletion"]["rate"] is not None]
        lines.append(
            f"{record['label']:>6} {scalars.get('saliency/probe/accuracy', math.nan):>9.2f} "
            f"{scalars.get(f'saliency/{method}/delta_mean', math.nan):>9.1e} "
            f"{column:>16} {json.dumps(suspects):>20}  {'; '.join(checks) or '-'}"
        )
    return lines


def planted_precision(record: dict[str, Any], method: str, planted: set[str], k: int) -> tuple[float, int]:
    """Precision@k of ``method`` on the planted tokens (Bastings et al.'s measure): over the examples
    of ``record`` that contain every planted token, the share whose top-k regular tokens by
    |attribution| are planted ones (all of ``planted`` when ``k`` covers it); with that count."""
    hits = total = 0
    for e in record["examples"]:
        if not planted <= set(e["tokens"]):
            continue
        scores = e["attributions"][method]
        order = sorted((i for i in range(len(scores)) if not e["special"][i]), key=lambda i: -abs(scores[i]))
        top = {e["tokens"][i] for i in order[:k]}
        total += 1
        hits += len(top & planted) == min(k, len(planted))
    return (hits / total if total else math.nan), total
