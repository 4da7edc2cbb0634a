import numpy as np

from lightning_saliency.render import HeatmapRow, escape_markdown, grid_and_row_images, markdown_table


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
    from lightning_saliency.render import grid_and_row_images

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
