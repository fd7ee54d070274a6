"""The OpenAPI examples (handlers/examples.py) are what the models accept."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from handlers.examples import ERROR_MESSAGES, EXAMPLES, error_example
from handlers.schemas import ErrorOut


@pytest.mark.parametrize("model, example", list(EXAMPLES.items()),
                         ids=[model.__name__ for model in EXAMPLES])
def test_each_example_validates_against_its_model(model: type[BaseModel], example: Any) -> None:
    parsed = model.model_validate_json(orjson.dumps(example))
    # Nothing is dropped or rewritten on the way (a request body is taken as written).
    assert orjson.loads(parsed.model_dump_json(exclude_unset=True)) == example


@pytest.mark.parametrize("status", sorted(ERROR_MESSAGES))
def test_error_examples(status: int) -> None:
    assert ErrorOut.model_validate(error_example(status)).error.status == status
