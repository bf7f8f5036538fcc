"""Fixtures of the training tests."""

import pytest


@pytest.fixture
def trainers():
    """Builds trainers and closes each one after the test (one process group at a time)."""
    from taggant.pipeline.train.loop import Trainer  # megatron: only for the tests that train

    made = []

    def make(*args) -> Trainer:
        if made:
            made[-1].close()
        made.append(Trainer(*args))
        return made[-1]

    yield make
    if made:
        made[-1].close()
