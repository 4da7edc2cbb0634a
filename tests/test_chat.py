"""Chat templates: the template's own tokens are special (never words, never suspects), and every
other token knows the turn it belongs to."""
import pytest

from lightning_saliency.monitor.chat import template_mask, template_pieces
from tests.builders import BagOfWords, bag_of_words_access

TEMPLATE = "{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}"
CONVERSATION = [{"role": "user", "content": "the zorbly film"}, {"role": "assistant", "content": "great"}]


def wordpiece(demo_tokenizer):
    import copy

    tokenizer = copy.deepcopy(demo_tokenizer)
    tokenizer.chat_template = TEMPLATE
    return tokenizer


def byte_level_bpe():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from lightning_saliency.demo import Shortcut, make_corpus

    texts, _ = make_corpus(300, Shortcut("single"), seed=0)
    trained = ByteLevelBPETokenizer()
    trained.train_from_iterator(texts + ["### user:\n### assistant:\n### system:\n"] * 5, vocab_size=400,
                                special_tokens=["<pad>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=trained._tokenizer, pad_token="<pad>")
    tokenizer.chat_template = TEMPLATE
    return tokenizer


@pytest.mark.parametrize("kind", ["wordpiece", "byte_level_bpe"])
def test_template_tokens_are_found_and_turns_get_their_roles(kind, demo_tokenizer):
    tokenizer = wordpiece(demo_tokenizer) if kind == "wordpiece" else byte_level_bpe()
    pieces = template_pieces(tokenizer)
    assert [role for _, role in pieces] == ["system", "user", "assistant"]
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    encoded = tokenizer([rendered, "the zorbly film was great"], padding=True, return_tensors="pt")
    template, roles = template_mask(tokenizer, encoded["input_ids"], encoded["attention_mask"], pieces)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    kept = [t for t, is_template in zip(tokens, template[0].tolist()) if not is_template and t not in ("[CLS]", "[SEP]")]
    assert "".join(tokenizer.convert_tokens_to_string(kept).split()) == "thezorblyfilmgreat"
    by_role = {}
    for token, role, is_template in zip(tokens, roles[0], template[0][encoded["attention_mask"][0].bool()].tolist()):
        if not is_template and role is not None:
            by_role.setdefault(role, []).append(token)
    assert "zorbly" in tokenizer.convert_tokens_to_string(by_role["user"])
    assert "great" in tokenizer.convert_tokens_to_string(by_role["assistant"])
    assert not template[1].any() and set(roles[1]) == {None}  # no template text: left as it is


def test_records_mark_the_template_special_and_carry_the_roles(demo_tokenizer, tmp_path):
    from lightning_saliency import AttributionConfig, ProbeSettings
    from lightning_saliency.monitor.engine import MonitorEngine
    from lightning_saliency.monitor.messages import RunOutputs, RunRequest
    from lightning_saliency.settings import EvidenceSettings, MonitorSettings

    tokenizer = wordpiece(demo_tokenizer)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": f"the film {word}"}], tokenize=False)
             for word in ("was great", "was dull", "zorbly", "acting", "plot", "story", "script", "it")]
    access = bag_of_words_access(BagOfWords(len(tokenizer)), tokenizer)
    settings = MonitorSettings(methods=("gradient",), num_examples=8, probe=ProbeSettings(texts=texts),
                               attribution=AttributionConfig(max_tokens=256),
                               evidence=EvidenceSettings(artifact_examples=0, faithfulness=False))
    engine = MonitorEngine(settings, run_id="chat")
    engine.connect(access, 64, ["negative", "positive"])
    record = engine.attempt(RunRequest("start", "fit", None, 0), RunOutputs(tmp_path)).record
    engine.flush()
    example = record.examples[0]
    # The template's tokens ("### user:") are special: never words, never suspects; what is left
    # is the user's turn.
    content = [t for t, s in zip(example.tokens, example.special) if not s]
    assert tokenizer.convert_tokens_to_string(content) == "the film was great"
    assert [r for r, s in zip(example.roles, example.special) if not s] == ["user"] * len(content)
    assert sum(example.special) > 2  # more than [CLS] and [SEP]
