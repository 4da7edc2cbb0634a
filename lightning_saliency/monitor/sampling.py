"""The fixed example sets of a fit, sampled once: the probe set (attributed every run) and the
causal checks' validation slice. Both come from the validation loader's own dataset and collate
function, or from the given texts."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from lightning_saliency.monitor.chat import with_chat_roles
from lightning_saliency.monitor.model_access import ModelAccess
from lightning_saliency.monitor.notices import warn
from lightning_saliency.monitor.probe import attributable_rows, probe_from_dataloader, probe_from_texts
from lightning_saliency.probes import ProbeSet
from lightning_saliency.probes.answers import with_answer_classes
from lightning_saliency.settings import MonitorSettings
from lightning_saliency.tasks import get_task

# Fewer probe examples than this and a token seen in 3 of them (min_examples) is judged: common
# words get there by chance. 8 is the default; 16-24 give the rules more to go on.
SMALL_PROBE = 8
NO_LOADER = "SaliencyMonitor found no validation dataloader to sample the {what} from."


def warn_small_probe(settings: MonitorSettings) -> None:
    texts = settings.probe.texts
    count = len(texts) if texts is not None else settings.num_examples
    if count < SMALL_PROBE:
        warn(f"SaliencyMonitor: {count} probe examples is few for the shortcut rules: a token needs only "
             f"{settings.shortcut.min_count(count)} occurrences to be judged, which common words reach by chance. "
             f"Use num_examples >= {SMALL_PROBE}; 16-24 are better (the shortcut tests use 24).")


def sample_probe(settings: MonitorSettings, access: ModelAccess, loader: Any, max_length: int,
                 indices: Optional[list[int]] = None, speak: bool = True,
                 class_names: Optional[Sequence[str]] = None) -> ProbeSet:
    """The probe set: ``probe.texts``, else sampled from ``loader``'s dataset through its own
    collate function (``indices``: the stored ones after a resume). ``speak``: warn (rank zero).
    A completion's or target's prompt and scored text are kept apart (``Task.with_scored_texts``),
    and its few distinct answers become its classes (:func:`with_answer_classes`)."""
    probe = _sample(settings, access, loader, max_length, indices, speak, class_names)
    return with_answer_classes(get_task(settings.task).with_scored_texts(probe, access.tokenizer), access.tokenizer)


def _sample(settings: MonitorSettings, access: ModelAccess, loader: Any, max_length: int,
            indices: Optional[list[int]], speak: bool, class_names: Optional[Sequence[str]]) -> ProbeSet:
    s, tokenizer, task = settings.probe, access.tokenizer, get_task(settings.task)
    if s.texts is not None:
        labels = label_indices(s.labels, class_names) if s.labels is not None else None
        return with_chat_roles(probe_from_texts(list(s.texts), tokenizer, labels, max_length, task, s.completions),
                               tokenizer)
    if loader is None:
        raise ValueError(NO_LOADER.format(what="probe set"))
    options = dict(tokenizer=tokenizer, label_key=s.label_key, input_keys=s.input_keys, task=task,
                   tag_names=class_names)
    if indices is not None:  # resumed: the same examples as before
        return with_chat_roles(probe_from_dataloader(loader, indices=indices, **options), tokenizer)
    probe = with_chat_roles(probe_from_dataloader(loader, settings.num_examples, s.seed, **options), tokenizer)
    if speak and probe.labels is None and task.labels_from_column:
        warn(f"SaliencyMonitor: the validation batches have no {s.label_key!r} entry, so probe accuracy and label "
             "association are not computed (and target='label' cannot work). Name the labels' key with "
             "probe=ProbeSettings(label_key=...) (tuple batches: input_keys=...).")
    if speak and len(probe) < settings.num_examples:
        warn(f"SaliencyMonitor: num_examples={settings.num_examples}, but the validation set holds only "
             f"{len(probe)} examples: probing those {len(probe)}.")
    return probe


def label_indices(labels: Sequence[Union[int, str]], class_names: Optional[Sequence[str]]) -> list[int]:
    """``probe.labels`` as class indices: names are looked up in ``class_names``.

    Raises:
        ValueError: a name while the classes have no names, or a name that is not a class's.
    """
    if not any(isinstance(label, str) for label in labels):
        return [int(label) for label in labels]
    if class_names is None:
        raise ValueError(f"probe.labels holds class names ({labels[0]!r}, ...), but the model's classes have no "
                         "names: set output=OutputSettings(label_names=[...]) or the model config's id2label, or "
                         "give class indices.")
    names = [str(name) for name in class_names]
    unknown = sorted({str(label) for label in labels if isinstance(label, str) and label not in names})
    if unknown:
        raise ValueError(f"probe.labels names {unknown}, which are not among the classes {names}.")
    return [names.index(label) if isinstance(label, str) else int(label) for label in labels]


def sample_confirmation(settings: MonitorSettings, access: ModelAccess, loader: Any, probe: ProbeSet,
                        max_length: int, speak: bool = True) -> ProbeSet:
    """The causal checks' validation slice: up to ``evidence.confirm_examples`` examples sampled
    once with a private generator (the probe itself when the probe texts were given), without the
    examples no model pass can take (an empty text, one longer than the model takes): one of them
    would otherwise fail every run's checks."""
    if settings.probe.texts is not None:
        return probe
    if loader is None:
        raise ValueError(NO_LOADER.format(what="causal checks' examples"))
    s = settings.probe
    # Answer classes: the examples keep their token-level answers (the checks score prompts alone);
    # otherwise one class per example.
    reader = get_task(settings.task) if probe.answers is not None else None
    # A conversation's template is special here as in the probe: never edited, and its turns known.
    sample = with_chat_roles(probe_from_dataloader(loader, settings.evidence.confirm_examples, s.seed + 1,
                                                   tokenizer=access.tokenizer, label_key=s.label_key,
                                                   input_keys=s.input_keys, task=reader), access.tokenizer)
    rows, skipped = attributable_rows(sample, access.special_tokens, range(len(sample)), max_length)
    if skipped and speak:
        named = "; ".join(f"dataset index {sample.indices[row]}: {reason}" for row, reason in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warn(f"SaliencyMonitor: {len(skipped)} validation example(s) are left out of the causal checks "
             f"({named}{more}).")
    return sample.select(rows) if skipped else sample
