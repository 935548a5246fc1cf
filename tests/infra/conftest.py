"""The functional tier's harness (the real functions-framework app around in-memory fakes),
so infra tests can evaluate filters against the log lines the function really writes."""

from tests.functional.conftest import make_harness  # noqa: F401
