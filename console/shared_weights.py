"""Weight snapshots from the training process to the console process, through shared memory.

Two slots and a sequence number (a seqlock): the writer fills the slot not in use, then
flips `active`, bumping `seq` before and after (odd while writing). A reader copies the
active slot and keeps the copy only if `seq` was even and unchanged around it; otherwise
it tries again. So a reader never keeps half-updated weights, and the writer never waits.
(x86 keeps stores in program order; the header is written last and read first.)

>>> import numpy as np
>>> writer = SharedWeights.create([((2, 2), "float32"), ((3,), "float32")])
>>> reader = SharedWeights.attach(writer.name, writer.layout)
>>> reader.read() is None  # nothing published yet
True
>>> writer.publish(7, [np.ones((2, 2), np.float32), np.arange(3, dtype=np.float32)])
>>> step, arrays = reader.read()
>>> step, arrays[1].tolist()
(7, [0.0, 1.0, 2.0])
>>> reader.close(); writer.close()
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from multiprocessing import shared_memory

import numpy as np

#: (shape, dtype name) of each weight array, in model order
Layout = list[tuple[tuple[int, ...], str]]
SEQ, ACTIVE, STEP0, STEP1 = range(4)
HEADER_BYTES = 4 * 8


class SharedWeights:
    def __init__(self, memory: shared_memory.SharedMemory, layout: Layout, owner: bool) -> None:
        self._memory = memory
        self.layout = [(tuple(shape), str(dtype)) for shape, dtype in layout]
        self._owner = owner
        buffer = memory.buf
        assert buffer is not None, "an open shared memory segment has a buffer"
        self._buffer: memoryview = buffer
        self._header = np.ndarray((4,), np.int64, self._buffer[:HEADER_BYTES])
        self._slots = [self._views(slot) for slot in (0, 1)]

    @property
    def name(self) -> str:
        return self._memory.name

    @staticmethod
    def slot_bytes(layout: Layout) -> int:
        return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in layout)

    @classmethod
    def create(cls, layout: Layout) -> SharedWeights:
        size = HEADER_BYTES + 2 * cls.slot_bytes(layout)
        shared = cls(shared_memory.SharedMemory(create=True, size=size), layout, owner=True)
        shared._header[:] = (0, 0, -1, -1)
        return shared

    @classmethod
    def attach(cls, name: str, layout: Layout) -> SharedWeights:
        # (Python < 3.13 registers an attached segment with the resource tracker too: harmless
        # here, the console process shares its parent's tracker, and the parent unlinks it)
        return cls(shared_memory.SharedMemory(name=name), layout, owner=False)

    def _views(self, slot: int) -> list[np.ndarray]:
        offset = HEADER_BYTES + slot * self.slot_bytes(self.layout)
        views = []
        for shape, dtype in self.layout:
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            views.append(np.ndarray(shape, dtype, self._buffer[offset : offset + nbytes]))
            offset += nbytes
        return views

    def publish(self, step: int, arrays: Sequence[np.ndarray]) -> None:
        """Writer only (one thread)."""
        header = self._header
        slot = 1 - int(header[ACTIVE])
        header[SEQ] += 1  # odd: a write is under way
        for view, array in zip(self._slots[slot], arrays, strict=True):
            view[...] = array
        header[STEP0 + slot] = step
        header[ACTIVE] = slot
        header[SEQ] += 1

    def published_step(self) -> int:
        """The step of the active slot (-1: none yet); cheap, for polling."""
        return int(self._header[STEP0 + int(self._header[ACTIVE])])

    def read(self, attempts: int = 100) -> tuple[int, list[np.ndarray]] | None:
        """A consistent copy of the newest snapshot, or None if there is none yet."""
        header = self._header
        for _ in range(attempts):
            seq = int(header[SEQ])
            if not seq % 2:
                slot = int(header[ACTIVE])
                step = int(header[STEP0 + slot])
                copies = [view.copy() for view in self._slots[slot]]
                if int(header[SEQ]) == seq:
                    return None if step < 0 else (step, copies)
            time.sleep(0.0005)  # a write is under way: it takes well under a millisecond
        return None

    def close(self) -> None:
        del self._header, self._slots, self._buffer  # views go before the buffer can close
        self._memory.close()
        if self._owner:
            self._memory.unlink()
