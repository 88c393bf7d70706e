"""Contact sheets (meshdream.images): the bench scripts' pictures for a person to look at."""

import numpy as np
from meshdream.images import contact_sheet


def test_a_contact_sheet_tiles_the_images_and_labels_each_row_on_its_left():
    tiles = [np.full((8, 10, 3), v, np.float32) for v in (0.0, 0.2, 0.4, 0.6, 0.8)]
    plain = contact_sheet(tiles, columns=2, gap=2)
    assert plain.shape == (3 * 8 + 2 * 2, 2 * 10 + 2, 3)
    assert plain[0, 0, 0] == 0.0 and plain[10, 12, 0] == np.float32(0.6) and plain[-1, -1, 0] == 1.0  # gap, no tile
    labelled = contact_sheet(tiles, columns=2, gap=2, row_labels=["first", "second", "third"], label_width=40)
    assert labelled.shape == (plain.shape[0], plain.shape[1] + 40, 3)
    assert np.allclose(labelled[:, 40:], plain, atol=1 / 255)  # the sheet itself, 8 bits
    column = labelled[:, :40].min(axis=-1)
    assert all((column[r * 10 : r * 10 + 8] < 0.5).any() for r in range(3))  # a label's ink in every row
