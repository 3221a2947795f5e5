import pytest

from streams.assignment import partitions_for_rank
from streams.errors import AssignmentError


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("partitions", [1, 2, 4, 5, 8, 16])
def test_assignment_is_disjoint_complete_and_balanced(partitions, size):
    if partitions < size:
        with pytest.raises(AssignmentError, match="every rank needs at least one partition"):
            partitions_for_rank(partitions, 0, size)
        return
    owned = [partitions_for_rank(partitions, r, size) for r in range(size)]
    flat = [p for ps in owned for p in ps]
    assert sorted(flat) == list(range(partitions))  # complete and disjoint
    sizes = [len(ps) for ps in owned]
    assert max(sizes) - min(sizes) <= 1
    for rank, ps in enumerate(owned):
        assert all(p % size == rank for p in ps)


def test_invalid_rank_is_rejected():
    with pytest.raises(AssignmentError, match="rank 2 is not valid in a world of 2"):
        partitions_for_rank(4, 2, 2)
