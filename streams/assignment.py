"""Which rank reads which partition: rank r owns every partition p with p % size == r.

Deterministic from (partitions, size) alone, so every rank computes the same answer without
talking, and a restart with another world size re-assigns cleanly.

>>> partitions_for_rank(4, rank=1, size=2)
[1, 3]
>>> partitions_for_rank(1, rank=0, size=2)
Traceback (most recent call last):
...
streams.errors.AssignmentError: topic has 1 partition(s) but 2 ranks: every rank needs at least one partition; add partitions or run fewer ranks (-np)
"""

from streams.errors import AssignmentError


def partitions_for_rank(num_partitions: int, rank: int, size: int) -> list[int]:
    if size < 1 or not 0 <= rank < size:
        msg = f"rank {rank} is not valid in a world of {size}"
        raise AssignmentError(msg)
    if num_partitions < size:
        msg = (
            f"topic has {num_partitions} partition(s) but {size} ranks: every rank needs at "
            "least one partition; add partitions or run fewer ranks (-np)"
        )
        raise AssignmentError(msg)
    return [p for p in range(num_partitions) if p % size == rank]
