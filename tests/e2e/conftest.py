"""Fixtures shared by the end-to-end modules; each module brings its own `stack`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clipsearch_dev.outcomes import OutcomeCollector
from clipsearch_dev.stack import LocalStack


@pytest.fixture
def collector(stack: LocalStack) -> Iterator[OutcomeCollector]:
    """Reads every outcome (results and errors topics) as a subscriber would."""
    with OutcomeCollector(
        [stack.names.results_subscription, stack.names.errors_subscription]
    ) as running:
        yield running
