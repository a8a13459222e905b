"""Record validation edge cases found by property testing."""

from decimal import Decimal

import pytest

from baserepo._model import model_info
from baserepo._records import RecordPreparer
from baserepo.exceptions import RecordValidationError
from tests.models import Article


@pytest.mark.parametrize("score", [1e26, Decimal("1e40"), -1e30])
def test_a_number_too_large_to_round_is_refused_not_crashed_on(score: object) -> None:
    # round(Decimal(1e26), 2) raises decimal.InvalidOperation at the default precision.
    preparer = RecordPreparer(model_info(Article))
    with pytest.raises(RecordValidationError, match=r"score.*does not fit NUMERIC\(10, 2\)"):
        preparer.for_create({"title": "t", "score": score})


def test_a_number_that_fits_after_rounding_is_accepted() -> None:
    preparer = RecordPreparer(model_info(Article))
    assert preparer.for_create({"title": "t", "score": Decimal("99999999.994")})["score"]
