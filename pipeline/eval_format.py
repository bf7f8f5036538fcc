"""The values of the store's ``eval_format`` column: which rendering of an item a probe row
measured. Plain Python, so the probe registry names formats without loading Parquet.

* ``CANONICAL``: the item's own text (the manifest's ``text``): what fits and reports read;
* ``variant(k)``: its ``k``-th per-copy variant (manifest ``variants``, Hubble's paraphrased copies);
* any other value: a format the item was rendered in for probing only (a test set's
  ``eval_templates`` entry, named by its key).
"""

CANONICAL = "canonical"


def variant(k: int) -> str:
    """The ``eval_format`` of rows measured on an item's ``k``-th variant."""
    return f"variant:{k}"
