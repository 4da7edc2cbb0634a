import numpy as np

from lightning_saliency.presentation.render import HeatmapRow, escape_markdown, grid_and_row_images, markdown_table


def test_heatmap_images_are_rgb_and_wrap_long_texts():
    short = HeatmapRow(["[CLS]", "good", "[SEP]"], [0.0, 1.0, 0.0], "caption")
    long = HeatmapRow(["word"] * 80, list(np.linspace(-1, 1, 80)), "caption")
    grid, (a, b) = grid_and_row_images([short, long], "title")
    assert a.dtype == np.uint8 and a.shape[2] == 3
    assert b.shape[0] > a.shape[0] and b.shape[1] == a.shape[1]  # wrapped onto more lines, same width
    assert grid.shape[0] > b.shape[0]


def test_positive_tokens_are_green_and_negative_red():
    _, (image,) = grid_and_row_images([HeatmapRow(["AAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBB"], [1.0, -1.0], "x")], "t")
    pixels = image.reshape(-1, 3).astype(int)
    greenish = ((pixels[:, 1] - pixels[:, 0]) > 60).sum()
    reddish = ((pixels[:, 0] - pixels[:, 1]) > 60).sum()
    assert greenish > 500 and reddish > 500


def test_markdown_escaping():
    assert escape_markdown("a|b<img>") == "a\\|b\\<img\\>"
    table = markdown_table(["x", "y"], [[1, 2]])
    assert table.splitlines() == ["| x | y |", "|---|---|", "| 1 | 2 |"]


def test_per_example_images_are_cut_from_the_grid():
    from lightning_saliency.presentation.render import grid_and_row_images

    rows = [HeatmapRow(["a"] * n, [0.5] * n, f"#{n}") for n in (3, 40, 120)]
    grid, crops = grid_and_row_images(rows, "title")
    assert len(crops) == 3 and all(c.shape[1] == grid.shape[1] and c.dtype == grid.dtype for c in crops)
    assert crops[0].shape[0] < crops[1].shape[0] < crops[2].shape[0]  # longer examples wrap onto more lines
    assert (grid[-5:] == crops[0][-5:]).all()  # each ends with the grid's colorbar band
    assert sum(c.shape[0] for c in crops) < grid.shape[0] + 3 * 75


def _saturated(image):
    """Pixels far from the white background and the gray text (colored token boxes)."""
    pixels = image.reshape(-1, 3).astype(int)
    return (np.abs(pixels[:, 1] - pixels[:, 0]) > 60).sum()


def test_a_shared_scale_keeps_a_weak_example_pale_and_unsigned_scores_start_at_white():
    strong = HeatmapRow(["A" * 20, "B" * 20], [2.0, 1.0], "strong")
    weak = HeatmapRow(["A" * 20, "B" * 20], [3e-5, -2e-5], "weak")  # noise, 5 orders of magnitude smaller
    _, (_, own_scale) = grid_and_row_images([strong, weak], "t")
    _, (_, shared) = grid_and_row_images([strong, weak], "t", shared_limit=2.0)
    assert _saturated(own_scale[:-75]) > 500  # scaled to itself, noise looks like strong signal
    assert _saturated(shared[:-75]) == 0  # on the run's scale it is pale (the 75-pixel colorbar band left out)
    _, (magnitude,) = grid_and_row_images([HeatmapRow(["A" * 20], [0.0], "zero")], "t", signed=False, shared_limit=1.0)
    _, (signed_zero,) = grid_and_row_images([HeatmapRow(["A" * 20], [0.0], "zero")], "t", shared_limit=1.0)
    assert _saturated(magnitude[:-75]) == _saturated(signed_zero[:-75]) == 0  # 0 is white on both maps
    # The colorbar of an unsigned method runs from white to green: no red half for values it never takes.
    reddish = lambda image: ((image[-75:].reshape(-1, 3).astype(int)[:, 0] - image[-75:].reshape(-1, 3)[:, 1]) > 60).sum()
    assert reddish(magnitude) == 0 and reddish(signed_zero) > 100


def test_unconverged_examples_are_flagged_and_do_not_set_the_run_scale_alone():
    """The demo's run 004: 8 of 12 IG rows were blank against a scale set by 4 rows whose |delta|
    was as large as their attributions. Those rows are flagged and the scale comes from the others."""
    from lightning_saliency.monitor.publishing import heatmap_row
    from lightning_saliency.presentation.render import run_scale
    from lightning_saliency.schema.records import ExampleRecord, RunRecord
    from lightning_saliency.schema.records import completeness_error

    def example(index, scores, delta, probability=0.9):
        return ExampleRecord(index, "t", ["[CLS]", "a", "b", "[SEP]"], [None, 0, 1, None], [True, False, False, True],
                             1, "pos", 1, "pos", probability, 1, 1.0, {"integrated_gradients": scores},
                             {"integrated_gradients": delta})

    # Converged, small: a prediction at p 0.5001 (margin 4e-4), so the small change explains it all.
    good = example(0, [0.0, 2e-4, 1e-4, 0.0], 1e-7, probability=0.5001)
    wrong = example(1, [0.0, 4.2, -1.0, 0.0], 1.2)         # sum 3.2 = F(x) - F(x') + 1.2: error 60%
    assert completeness_error(good.attributions["integrated_gradients"], 1e-7) == 0.0
    assert abs(completeness_error(wrong.attributions["integrated_gradients"], 1.2) - 0.6) < 1e-9
    record = RunRecord("004", "fit", 4, 40, {"attribution": {"tolerance": None}}, ["integrated_gradients"],
                       [good, wrong])
    assert run_scale(record, "integrated_gradients") == 2e-4  # not 4.2
    assert heatmap_row(wrong, "integrated_gradients", 1).warning == "not converged: |delta| is 60% of F(x) - F(x')"
    assert heatmap_row(good, "integrated_gradients", 0).warning is None
    # Drawn in red beside the caption.
    _, (plain,) = grid_and_row_images([HeatmapRow(["A"], [0.0], "caption")], "t", shared_limit=1.0)
    _, (flagged,) = grid_and_row_images([HeatmapRow(["A"], [0.0], "caption", "not converged")], "t", shared_limit=1.0)
    red = lambda image: ((image[:40].reshape(-1, 3).astype(int)[:, 0] - image[:40].reshape(-1, 3)[:, 1]) > 100).sum()
    assert red(plain) == 0 and red(flagged) > 20


def test_colorbar_ticks_are_real_units_and_each_example_shows_its_own_max():
    from lightning_saliency.presentation.render import colorbar_ticks, row_caption

    assert [label for _, label in colorbar_ticks(True, 4.2)] == ["-4.2", "-2.1", "0", "2.1", "4.2"]
    assert [label for _, label in colorbar_ticks(False, 0.5)] == ["0", "0.12", "0.25", "0.38", "0.5"]
    assert [label for _, label in colorbar_ticks(True, None)] == ["-1", "-0.5", "0", "0.5", "1"]  # per-example scale
    row = HeatmapRow(["a", "b"], [0.3, -0.05], "#0")
    assert row_caption(row, 4.2, shared=True) == "#0 | max ±0.3"
    assert row_caption(row, 0.3, shared=False) == "#0 | scale ±0.3"


def test_an_example_whose_baseline_already_predicts_it_is_not_coloured_as_an_explanation():
    """F(x) - F(x') is 3% of the prediction's log-odds margin: the baseline predicts what the input
    does, and IG's scores explain next to nothing. The row says so and is drawn uncoloured."""
    import pytest

    from lightning_saliency.monitor.publishing import heatmap_row
    from lightning_saliency.schema.records import ExampleRecord
    from lightning_saliency.schema.records import explained_share

    def example(scores, delta, probability):
        return ExampleRecord(0, "t", ["[CLS]", "a", "b", "[SEP]"], [None, 0, 1, None], [True, False, False, True],
                             0, "neg", 0, "neg", probability, 0, 0.94, {"integrated_gradients": scores},
                             {"integrated_gradients": delta}, baseline_score=0.88)

    flat = example([0.0, 0.5, -0.44, 0.0], 0.0, 0.876)             # F(x) - F(x') = 0.06, margin log(0.876/0.124) = 1.96
    assert explained_share(flat.attributions["integrated_gradients"], 0.0, 0.876) == pytest.approx(0.06 / 1.955, rel=1e-3)
    row = heatmap_row(flat, "integrated_gradients", 0)
    assert row.warning == "baseline not neutral: IG has little to explain (F(x) - F(x') is 3% of the margin)"
    assert list(row.scores) == [0.0] * 4
    explained = example([0.0, 1.5, 0.5, 0.0], 0.0, 0.876)           # F(x) - F(x') = 2.0: more than the margin
    assert heatmap_row(explained, "integrated_gradients", 0).warning is None
    assert explained_share([0.0, 0.1], 0.0, 0.3) is None            # not a class decision: no claim
