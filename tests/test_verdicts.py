"""The verdict sentences, case by case (presentation/verdicts.py's table), and the confirmation rule's
effect floor."""
import pytest

from lightning_saliency.monitor.evidence.causal import flip_test, judged, shift_test
from lightning_saliency.presentation import verdicts
from lightning_saliency.schema.findings import CausalCheck


def check(deletion=(), control_deletion=(), insertion=(), control_insertion=(), drops=(), control_drops=(),
          rises=(), control_rises=(), min_effect=0.05, label_name="positive"):
    """A causal check as confirm_suspects builds it: flips per edit, and the class-probability shifts
    toward reliance (a drop on removal, a rise on insertion)."""
    made = CausalCheck("zorbly", ["zorbly"], 1, label_name, 200, deletion=flip_test(deletion),
                       control_deletion=flip_test(control_deletion), insertion=flip_test(insertion),
                       control_insertion=flip_test(control_insertion), deletion_shift=shift_test(drops, control_drops),
                       insertion_shift=shift_test(rises, control_rises), min_effect=min_effect)
    return judged(made)


RANDOM = [0.001 * (k % 5) for k in range(128)]  # random words move P(class) by 0-0.004


def test_confirmed_by_removal_flips():
    c = check(deletion=[True] * 62 + [False] * 6, control_deletion=[False] * 128, drops=[0.7] * 68, control_drops=RANDOM)
    assert verdicts.case(c) == "removal_flips"
    assert verdicts.headline(c) == ("'zorbly' drives positive: removing it changes 91% of 68 predictions "
                                    "(random words: 0% of 128).")


def test_confirmed_by_insertion_flips_alone():
    c = check(deletion=[False] * 10, control_deletion=[False] * 128, drops=[0.01] * 10, control_drops=RANDOM,
              insertion=[True] * 40, control_insertion=[False] * 128, rises=[0.6] * 40, control_rises=RANDOM)
    assert c.confirmed_by == ["insertion flips", "insertion shift"]
    assert verdicts.headline(c).startswith("'zorbly' drives positive: inserting it turns 100% of 40 other predictions "
                                           "to positive (random words: 0% of 128)")


def test_confirmed_by_the_shift_alone_says_a_drop_is_a_drop():
    drops = [0.08 + 0.001 * k for k in range(49)]
    c = check(deletion=[False] * 49, control_deletion=[False] * 128, drops=drops, control_drops=RANDOM)
    assert c.confirmed_by == ["removal shift"] and verdicts.case(c) == "shift_only"
    text = verdicts.headline(c)
    assert text.startswith("'zorbly' pushes predictions toward positive before any flips: removing it lowers "
                           "P(positive) by 0.104 on average over 49 examples (random words: -0.002; z "), text


def test_a_rise_on_removal_is_called_a_rise_and_never_confirms():
    c = check(deletion=[False] * 30, control_deletion=[False] * 128, drops=[-0.2] * 30, control_drops=RANDOM)
    assert not c.confirmed
    assert "removing it raises P(positive) by 0.200" in verdicts.details(c)


def test_a_consistent_but_tiny_shift_is_suspected_not_confirmed():
    """The bug: on a model at chance, 3e-5 against 2e-6 ranks perfectly (z about 10)."""
    c = check(deletion=[False] * 49, control_deletion=[False] * 128, drops=[2.7e-5] * 49,
              control_drops=[1.7e-6] * 64 + [1.6e-6] * 64)
    assert c.deletion_shift.significant and c.deletion_shift.z > 8  # strong...
    assert not c.confirmed and verdicts.case(c) == "below_floor"  # ...but no effect
    assert verdicts.headline(c).startswith("'zorbly' is suspected, not confirmed: removing it lowers P(positive) by "
                                           "0.000 on average over 49 examples")
    assert "below the 0.050 that counts (evidence.min_effect)" in verdicts.headline(c)
    assert check(deletion=[False] * 49, control_deletion=[False] * 128, drops=[2.7e-5] * 49,
                 control_drops=[1.7e-6] * 128, min_effect=0.0).confirmed  # the rule before the floor


def test_flips_are_an_effect_of_their_own():
    """A prediction that changes is an effect; the floor is on probability shifts, which move
    without any prediction changing."""
    c = check(deletion=[True] * 40, control_deletion=[False] * 128, drops=[0.01] * 40, control_drops=RANDOM)
    assert c.confirmed_by == ["removal flips"] and verdicts.case(c) == "removal_flips"


def test_zero_flips_and_no_shift_is_no_evidence():
    c = check(deletion=[False] * 49, control_deletion=[False] * 128, drops=[0.0] * 49, control_drops=[0.0] * 128)
    assert verdicts.case(c) == "no_evidence"
    assert verdicts.headline(c) == ("'zorbly' is suspected, not confirmed: its edits change predictions no more than "
                                    "random words' do (removal 0% of 49 against 0% of 128; insertion none tested "
                                    "against none tested).")


def test_no_trials_at_all():
    c = check()
    assert verdicts.case(c) == "no_trials"
    assert "no validation example could be edited" in verdicts.headline(c)


def test_no_insertion_trials_is_said_plainly():
    c = check(deletion=[True] * 62 + [False] * 6, control_deletion=[False] * 128, drops=[0.7] * 68, control_drops=RANDOM)
    details = verdicts.details(c)
    assert "Insertion: nothing to test, every example is predicted positive already or contains it." in details
    assert "flips no examples to test" not in verdicts.verdict(c)  # the old garbled sentence


def test_a_model_at_chance_says_it_has_not_learned():
    c = check(deletion=[False] * 49, control_deletion=[False] * 128, drops=[2.7e-5] * 49, control_drops=RANDOM)
    text = verdicts.headline(c, at_chance=True, accuracy=0.5, majority=0.5)
    assert text.startswith("The model has not learned yet (probe accuracy 0.50, majority class 0.50): 'zorbly' is "
                           "suspected, not confirmed"), text


def test_every_case_of_the_table_is_reached():
    assert set(verdicts.CASES) == {"removal_flips", "insertion_flips", "shift_only", "below_floor", "no_evidence",
                                   "no_trials"}


def test_the_table_prints_changes_with_their_sign():
    from lightning_saliency.presentation.tables import causal_table
    from lightning_saliency.schema.records import RunMetrics

    c = check(deletion=[True] * 62 + [False] * 6, control_deletion=[False] * 128, drops=[0.741] * 68,
              control_drops=[0.0] * 128)
    header, rows = causal_table(RunMetrics(causal=[c]))
    cell = rows[0][header.index("class p change, removal / insertion (control)")]
    assert cell.startswith("-0.741 (-0.000, z"), cell  # removal lowered P(positive): a minus sign
    assert rows[0][header.index("effect floor")] == "0.050"


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_the_floor_is_checked(bad):
    from lightning_saliency import EvidenceSettings

    with pytest.raises(ValueError, match="min_effect"):
        EvidenceSettings(min_effect=bad)


def test_a_probe_of_one_class_is_never_called_at_chance():
    from lightning_saliency.presentation.verdicts import is_at_chance

    assert is_at_chance(0.5, 0.5) and is_at_chance(0.4, 0.75)
    assert not is_at_chance(0.8, 0.5)
    assert not is_at_chance(1.0, 1.0) and not is_at_chance(0.5, 1.0)  # one class: chance cannot be told
    assert not is_at_chance(None, 0.5) and not is_at_chance(0.5, None)


@pytest.mark.parametrize("token, subject, control, holding, part", [
    ("segment:last", "the last segment", "the first segment", "pairs", "segment"),
    ("template:system", "the system turn", "the user turn", "conversations", "turn"),
])
def test_a_swap_check_is_worded_as_the_swap_it_is(token, subject, control, holding, part):
    from dataclasses import replace

    c = check(deletion=[True] * 64, control_deletion=[False] * 60 + [True] * 4, drops=[0.6] * 64, control_drops=RANDOM)
    c = replace(c, token=token, members=[token], label=None, label_name=None)
    assert c.kind == token.split(":")[0]
    assert verdicts.headline(c) == (f"{subject} alone drives the predicted class: swapping it for that of an "
                                    f"example predicted otherwise changes 100% of 64 predictions (swapping {control} "
                                    "instead: 6% of 64).")
    details = verdicts.details(c)
    assert f"flips 100% (94%-100%) of 64 examples that are {holding}" in details
    assert f"Insertion: nothing to test, the swap removes one example's {part} and inserts another's." in details
